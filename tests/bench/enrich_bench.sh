# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# Part 5 of `make bench` (sourced by tests/bench/run.sh; uses its helpers):
# enrichment cost and memory (docs/BENCHMARKS.md, "Enrichment").
#
#  a) tests/bench/bench_enrich.c, ENRICH_REPS times: a fake /proc of
#     ENRICH_PROCS processes each in its own kubepods cgroup, a pod store of
#     ENRICH_PODS pods; ns per cache hit (identity lookup), ns per span
#     (resource reference + peer attributes), RSS growth for the pods and
#     for the cached processes.
#  b) the real agent against tests/peers/py/fake_apiserver.py --synth
#     ENRICH_PODS (list in pages of WS_K8S_PAGE_LIMIT pods, then watch): its RSS once the store
#     holds every pod, and the same agent with --no-k8s.
# Knobs: ENRICH_PROCS (10000), ENRICH_PODS (10000), ENRICH_SECONDS (2),
# ENRICH_REPS (3).

ENRICH_PROCS=${ENRICH_PROCS:-10000}
ENRICH_PODS=${ENRICH_PODS:-10000}
ENRICH_SECONDS=${ENRICH_SECONDS:-2}
ENRICH_REPS=${ENRICH_REPS:-3}

# agent_rss NAME ARGS...: start the agent, wait for ready (and, with the
# k8s API, for every pod in its store), record VmRSS/RssAnon/RssFile.
enrich_agent_rss() {
	local name=$1 d i pid want=0
	shift
	d=$RAW/$name
	mkdir -p "$d"
	case " $* " in *" --k8s-api "*) want=$ENRICH_PODS ;; esac
	"$WS" agent --output stdout --port "$(free_port)" "$@" >/dev/null 2>"$d/agent.err" &
	pid=$!
	PIDS+=("$pid")
	for i in $(seq 1 1200); do
		if grep -q ready "$d/agent.err" 2>/dev/null; then
			[ "$want" = 0 ] && break
			kill -USR1 "$pid" 2>/dev/null
			sleep 0.2
			grep '"type":"agent_metrics"' "$d/agent.err" | tail -n1 |
				jq -e --argjson n "$want" '.k8s.pods == $n' >/dev/null 2>&1 && break
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	sleep 2
	jq -n --argjson rss "$(proc_kb "$pid" VmRSS)" --argjson anon "$(proc_kb "$pid" RssAnon)" \
		--argjson file "$(proc_kb "$pid" RssFile)" --argjson hwm "$(proc_kb "$pid" VmHWM)" \
		'{rss_kb: $rss, anon_kb: $anon, file_kb: $file, hwm_kb: $hwm}' >"$d/rss.json"
	kill -INT "$pid" 2>/dev/null
	wait "$pid"
	echo $? >"$d/agent.rc"
	forget_pid "$pid"
	grep '"type":"agent_metrics"' "$d/agent.err" | tail -n1 >"$d/agent_metrics.json"
}

enrich_part() {
	local i fa port
	log "part 5: enrichment micro-benchmark ($ENRICH_PROCS processes, $ENRICH_PODS pods, $ENRICH_REPS runs)"
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
	log "part 5: agent RSS with $ENRICH_PODS pods from the fake API server"
	mkdir -p "$RAW/fake-apiserver"
	python3 tests/peers/py/fake_apiserver.py --synth "$ENRICH_PODS" --node worker-2 \
		>"$RAW/fake-apiserver/out" 2>"$RAW/fake-apiserver/err" &
	fa=$!
	PIDS+=("$fa")
	for i in $(seq 1 600); do
		grep -q ready "$RAW/fake-apiserver/out" 2>/dev/null && break
		sleep 0.1
	done
	port=$(jq -r .port "$RAW/fake-apiserver/out") || die "fake API server did not start"
	enrich_agent_rss enrich-agent-k8s --k8s-api "http://127.0.0.1:$port" --k8s-token "" --node-name worker-2
	enrich_agent_rss enrich-agent-nok8s --no-k8s
	kill -TERM "$fa" 2>/dev/null
	wait "$fa" 2>/dev/null
	forget_pid "$fa"
}

enrich_report() {
	echo
	echo "### 5. Enrichment: identity cache hits, per-span cost, memory with 10k processes and 10k pods"
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
	echo
	echo "The real agent (\`wirespan agent --output stdout\`), idle, once its store holds every pod of"
	echo "the fake API server (--synth $ENRICH_PODS), and with --no-k8s:"
	echo
	echo "| agent | pods in store | VmRSS | RssAnon | RssFile (ring buffer, maps, libraries) | exit |"
	echo "|---|---:|---:|---:|---:|---|"
	for n in enrich-agent-k8s enrich-agent-nok8s; do
		jq -rn --arg n "$n" --argjson r "$(cat "$RAW/$n/rss.json")" \
			--argjson m "$(cat "$RAW/$n/agent_metrics.json" 2>/dev/null || echo '{}')" \
			--arg rc "$(cat "$RAW/$n/agent.rc")" '
			"| \($n) | \($m.k8s.pods // "–") | \($r.rss_kb / 1024 * 10 | round / 10) MiB | \($r.anon_kb / 1024 * 10 | round / 10) MiB | \($r.file_kb / 1024 * 10 | round / 10) MiB | \($rc) |"'
	done
	jq -rsn --argjson k "$(cat "$RAW/enrich-agent-k8s/rss.json")" --slurpfile b "$RAW/enrich.jsonl" "$JQ_MEDIAN"'
		([$b[].rss_procs_kb] | median) as $p |
		(($k.rss_kb + $p) / 1024 * 10 | round / 10) as $est |
		"\nEstimate for the agent at steady state with \($b[0].procs) cached processes and \($b[0].pods) pods: its measured RSS with the pods (\($k.rss_kb / 1024 * 10 | round / 10) MiB) + the cached processes measured by bench_enrich (\($p / 1024 * 10 | round / 10) MiB) = \($est) MiB; target ≤ 64 MiB: " + (if $est <= 64 then "met" else "**missed**" end) + "."'
}
