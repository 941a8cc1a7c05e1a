#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# Part 5 of `make bench` (sourced by tests/bench/run.sh, or run alone:
# `bash tests/bench/export_bench.sh`, no root needed): the NATS span sink
# (agent/export/nats_export.c) against a real nats-server on 127.0.0.1.
# tests/bench/bench_nats_export.c hands NATS-like spans (20 attributes, one
# link) to the sink as fast as it can for EXPORT_SECONDS, in core mode and in
# JetStream mode (stream WSBENCH, file storage), for each batch size in
# EXPORT_BATCHES, EXPORT_REPS times. Reported:
#  - spans/s handed over and sent (flushed or acknowledged), wall clock;
#  - CPU per span of the pipeline thread (batching + encoding + handover,
#    the span construction measured and taken out) and of the other threads
#    (publisher, nats.c), and the spans one CPU-second of export handles;
#  - bytes per span on the wire: nats-server's /varz in_bytes over the run
#    (payload, headers and protocol) divided by the spans sent.
#
# Knobs: EXPORT_SECONDS, EXPORT_BATCHES, EXPORT_REPS.

EXPORT_SECONDS=${EXPORT_SECONDS:-$([ "${QUICK:-0}" = 1 ] && echo 2 || echo 5)}
EXPORT_BATCHES=${EXPORT_BATCHES:-"64 1024"}
EXPORT_REPS=${EXPORT_REPS:-$([ "${QUICK:-0}" = 1 ] && echo 1 || echo 3)}

export_part() {
	local d=$RAW/export mode b i port mport np v0 v1 pid
	mkdir -p "$d"
	cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Iagent -Ibuild/gen -Itests/bench \
		tests/bench/bench_nats_export.c build/libwirespan.a \
		$(pkg-config --libs libbpf json-c libxxhash libprotobuf-c libnats yaml-0.1 libcrypto) -lelf -lz \
		-o "$OUT/bench_nats_export" 2>"$d/cc.err" ||
		{ cat "$d/cc.err" >&2; die "could not build tests/bench/bench_nats_export.c"; }
	port=$(free_port) || die "no free port"
	mport=$(free_port) || die "no free port"
	rm -rf "$d/js"
	nats-server -a 127.0.0.1 -p "$port" -m "$mport" -js -sd "$d/js" >"$d/nats-server.log" 2>&1 &
	np=$!
	PIDS+=("$np")
	wait_listen "$port" 10 || die "nats-server did not start (see $d/nats-server.log)"
	wait_listen "$mport" 10 || die "nats-server monitoring did not start"
	: >"$d/runs.jsonl"
	for mode in core jetstream; do
		for b in $EXPORT_BATCHES; do
			for i in $(seq 1 "$EXPORT_REPS"); do
				v0=$(curl -s "http://127.0.0.1:$mport/varz" | jq .in_bytes)
				awk '{print $1}' /proc/loadavg >>"$d/loadavg"
				"$OUT/bench_nats_export" "nats://127.0.0.1:$port" "$mode" "$EXPORT_SECONDS" "$b" \
					>"$d/run.json" 2>>"$d/bench.err" || die "bench_nats_export $mode $b failed (see $d/bench.err)"
				v1=$(curl -s "http://127.0.0.1:$mport/varz" | jq .in_bytes)
				jq -c --argjson wire "$((v1 - v0))" '. + {wire_bytes: $wire}' "$d/run.json" >>"$d/runs.jsonl"
			done
		done
	done
	kill -TERM "$np" 2>/dev/null
	wait "$np" 2>/dev/null
	pid=$np
	forget_pid "$pid"
}

export_report() {
	local d=$RAW/export
	echo
	echo "### 5. NATS export: tests/bench/bench_nats_export.c against nats-server on 127.0.0.1"
	echo
	echo "Spans handed to the sink as fast as one thread can for $EXPORT_SECONDS s, $EXPORT_REPS time(s) per row"
	echo "(median; min–max of spans/s). \"pipeline ns/span\": CPU of the handing thread per span"
	echo "(batching, encoding, queueing), span construction taken out; \"other ns/span\": CPU of"
	echo "the publisher and nats.c threads; \"spans per CPU-s\": spans / (all export CPU). Wire"
	echo "bytes = nats-server in_bytes (payload + headers + protocol) / spans sent. nproc $(nproc);"
	echo "1-min load average at the runs (min, max): $(sort -n "$d/loadavg" | awk 'NR == 1 {a = $1} {b = $1} END {print a ", " b}')."
	echo
	echo "| mode | batch spans | spans/s handed over | spans/s sent | pipeline ns/span | other ns/span | spans per CPU-s | encoded B/span | wire B/span | dropped |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	jq -rs "$JQ_MEDIAN"'
		group_by([.mode, .batch_spans]) | .[] |
		map(. + {rate: (.spans_in / .wall_s), sent_rate: (.sent_spans / .wall_s),
			pipe: ((.pipeline_cpu_s - .build_cpu_s) / .spans_in * 1e9),
			other: ((.process_cpu_s - .pipeline_cpu_s) / .spans_in * 1e9),
			percpu: (.spans_in / (.process_cpu_s - .build_cpu_s))}) |
		"| \(.[0].mode) | \(.[0].batch_spans) | \([.[].rate] | median | round) (\([.[].rate] | min | round)–\([.[].rate] | max | round)) | " +
		"\([.[].sent_rate] | median | round) | \([.[].pipe] | median | round) | \([.[].other] | median | round) | " +
		"\([.[].percpu] | median | round) | \([.[] | .encoded_bytes / .spans_in] | median | round) | " +
		"\([.[] | .wire_bytes / .sent_spans] | median | round) | \([.[] | .dropped_spans + .exit_dropped_spans] | add) |"
	' "$d/runs.jsonl"
}

# Run alone: the helpers run.sh would provide.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -uo pipefail
	cd "$(dirname "$0")/../.." || exit 1
	OUT=$(pwd)/build/bench
	RAW=$OUT/raw
	PIDS=()
	die() {
		echo "bench: $*" >&2
		exit 1
	}
	forget_pid() { :; }
	free_port() {
		local i p
		for i in $(seq 1 100); do
			p=$((20000 + RANDOM % 30000))
			[ -z "$(ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null)" ] && { echo "$p"; return 0; }
		done
		return 1
	}
	wait_listen() {
		local i
		for i in $(seq 1 $(($2 * 20))); do
			[ -n "$(ss -Htln "( sport = :$1 )" 2>/dev/null)" ] && return 0
			sleep 0.05
		done
		return 1
	}
	JQ_MEDIAN='def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;'
	trap 'for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done' EXIT
	[ -f build/libwirespan.a ] || die "build/libwirespan.a missing: run make"
	mkdir -p "$RAW"
	export_part
	export_report | tee "$OUT/export_report.md"
fi
