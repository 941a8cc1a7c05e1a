# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# Part 7 of `make bench` (sourced by tests/bench/run.sh; uses its helpers):
# enrichment cost and memory (docs/BENCHMARKS.md, "Enrichment").
#
#  a) tests/bench/bench_enrich.c, ENRICH_REPS times: a fake /proc of
#     ENRICH_PROCS processes each in its own kubepods cgroup, a pod store of
#     ENRICH_PODS pods; ns per cache hit (identity lookup), ns per span
#     (resource reference + peer attributes), RSS growth for the pods and
#     for the cached processes.
#  b) tests/bench/identity_mem.sh: the real agent's resident memory at
#     steady state with ENRICH_PODS pods (made from pods recorded from real
#     clusters, served by tests/peers/py/fake_apiserver.py) and
#     ENRICH_PROCS real processes cached, with a breakdown; then pod churn,
#     1000 pods created and deleted a minute for ENRICH_CHURN_MINUTES.
# Knobs: ENRICH_PROCS (10000), ENRICH_PODS (10000), ENRICH_SECONDS (2),
# ENRICH_REPS (3), ENRICH_CHURN_MINUTES (QUICK=1: 1, else 3; 0: none).

ENRICH_PROCS=${ENRICH_PROCS:-10000}
ENRICH_PODS=${ENRICH_PODS:-10000}
ENRICH_SECONDS=${ENRICH_SECONDS:-2}
ENRICH_REPS=${ENRICH_REPS:-3}
ENRICH_CHURN_MINUTES=${ENRICH_CHURN_MINUTES:-$([ "${QUICK:-0}" = 1 ] && echo 1 || echo 3)}

enrich_part() {
	local i
	log "part 7: enrichment micro-benchmark ($ENRICH_PROCS processes, $ENRICH_PODS pods, $ENRICH_REPS runs)"
	cc -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter \
		-Iinclude -Iagent -Ibuild -Ibuild/gen tests/bench/bench_enrich.c build/libwirespan.a \
		$(pkg-config --cflags --libs libbpf json-c libxxhash libprotobuf-c libnats yaml-0.1 libcrypto libcurl) \
		-lelf -lz -o "$OUT/bench_enrich" 2>"$RAW/cc-enrich.err" ||
		{ cat "$RAW/cc-enrich.err" >&2; die "could not build tests/bench/bench_enrich.c"; }
	: >"$RAW/enrich.jsonl"
	for i in $(seq 1 "$ENRICH_REPS"); do
		awk '{print $1}' /proc/loadavg >>"$RAW/enrich_loadavg"
		"$OUT/bench_enrich" "$ENRICH_PROCS" "$ENRICH_PODS" "$ENRICH_SECONDS" >>"$RAW/enrich.jsonl" ||
			die "bench_enrich failed"
	done
	log "part 7: the real agent's memory with $ENRICH_PODS pods and $ENRICH_PROCS processes (tests/bench/identity_mem.sh)"
	MEM_PODS=$ENRICH_PODS MEM_PROCS=$ENRICH_PROCS MEM_CHURN_MINUTES=$ENRICH_CHURN_MINUTES MEM_OUT=$RAW/identity-mem \
		bash tests/bench/identity_mem.sh >"$RAW/identity-mem.md" 2>"$RAW/identity-mem.err" ||
		{ tail -n 20 "$RAW/identity-mem.err" >&2; die "tests/bench/identity_mem.sh failed"; }
}

enrich_report() {
	echo
	echo "### 7. Enrichment: identity cache hits, per-span cost, memory with 10k processes and 10k pods"
	echo
	echo "bench_enrich ($ENRICH_REPS runs; median, min–max): a fake /proc of $ENRICH_PROCS processes, each in"
	echo "its own kubepods cgroup, and $ENRICH_PODS pods in the store; 1-min load average at the runs:"
	echo "$(sort -n "$RAW/enrich_loadavg" | tr '\n' ' ')(2 cores, shared)."
	echo
	echo "| measure | median | min–max | target |"
	echo "|---|---:|---:|---|"
	jq -rs "$JQ_MEDIAN"'
		def row($k; $lab; $unit; $target):
			([.[][$k]] | median) as $m | ([.[][$k]] | min) as $lo | ([.[][$k]] | max) as $hi |
			"| \($lab) | \($m * 10 | round / 10) \($unit) | \($lo * 10 | round / 10)–\($hi * 10 | round / 10) | \($target) |";
		row("hit_ns"; "identity lookup, cache hit (per connection)"; "ns"; "≤ 1000 ns: " + (if ([.[].hit_ns] | median) <= 1000 then "met" else "**missed**" end)),
		row("span_enrich_ns"; "per span: resource reference + 5 peer attributes"; "ns"; "≤ 1000 ns: " + (if ([.[].span_enrich_ns] | median) <= 1000 then "met" else "**missed**" end)),
		row("miss_ns"; "identity lookup, miss (reads the fake /proc, cgroup, pod)"; "ns"; "–"),
		row("rss_pods_kb"; "RSS growth: \(.[0].pods) pods in the store"; "kB"; "–"),
		row("rss_procs_kb"; "RSS growth: \(.[0].procs) cached process resources"; "kB"; "–")
	' "$RAW/enrich.jsonl"
	cat "$RAW/identity-mem.md"
}
