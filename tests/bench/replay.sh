#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The agent's userspace path replayed offline (`make bench-replay`, also the
# first step of `make bench`; no root, no peers): build/bench_agent_replay
# (tests/bench/bench_agent_replay.c) feeds a synthesised capture of
# nats_pub's pub/sub workload through pipeline -> conn table -> reassembly
# -> NATS parser -> nats_spans -> OTLP output, stopping after each stage in
# turn, REPLAY_REPS times. Reports the median CPU ns per message and per
# span, the cost each stage adds, and allocations per span. Time is the
# replaying thread's CPU time, so a busy machine changes it little.
#
# Knobs: REPLAY_REPS (5), REPLAY_MESSAGES (200000 messages: 600000 spans),
# REPLAY_STAGES ("pipeline parse spans json pb"), REPLAY_ARGS (more
# bench_agent_replay options, e.g. "--batch 40 --vary"), REPLAY_PERF=1 (also
# a `perf record` of the json stage: top symbols in the report).
# Output: markdown on stdout and in build/bench/replay.md; raw JSON lines in
# build/bench/replay/runs.jsonl.

set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

REPLAY_REPS=${REPLAY_REPS:-5}
REPLAY_MESSAGES=${REPLAY_MESSAGES:-200000}
REPLAY_STAGES=${REPLAY_STAGES:-"pipeline parse spans json pb"}
REPLAY_ARGS=${REPLAY_ARGS:-}
REPLAY_PERF=${REPLAY_PERF:-0}
BIN=build/bench_agent_replay
D=build/bench/replay
REPORT=build/bench/replay.md

die() {
	echo "bench-replay: $*" >&2
	exit 1
}
command -v jq >/dev/null || die "needs jq"
[ -x "$BIN" ] || die "$BIN missing: run make bench-replay"
mkdir -p "$D"
: >"$D/runs.jsonl"
for s in $REPLAY_STAGES; do
	echo "bench-replay: stage $s, $REPLAY_REPS × $REPLAY_MESSAGES messages" >&2
	# shellcheck disable=SC2086 # REPLAY_ARGS is a list of options
	"$BIN" --stage "$s" --messages "$REPLAY_MESSAGES" --reps "$REPLAY_REPS" \
		$REPLAY_ARGS >>"$D/runs.jsonl" || die "bench_agent_replay --stage $s failed"
done
if [ "$REPLAY_PERF" = 1 ]; then
	command -v perf >/dev/null || die "REPLAY_PERF=1 needs perf"
	# shellcheck disable=SC2086
	perf record -q -o "$D/perf.data" -F 4000 -g "$BIN" --stage json \
		--messages "$REPLAY_MESSAGES" --reps 1 $REPLAY_ARGS >/dev/null 2>"$D/perf.err" ||
		die "perf record failed (see $D/perf.err)"
	perf report -i "$D/perf.data" --no-children --stdio 2>/dev/null |
		grep -E '^ +[0-9.]+%' | head -25 >"$D/perf.txt"
fi

{
	echo "### Agent userspace path, replayed (bench_agent_replay)"
	echo
	echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), wirespan $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- agent include 2>/dev/null || echo ' (agent/include modified)')"
	echo "- machine: nproc $(nproc), CPU $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), 1-min load $(cut -d' ' -f1 /proc/loadavg)"
	echo "- workload: $(jq -rs '.[0] | "\(.messages) messages of \(.size) B, \(.batch) per syscall, records of at most \(.chunk) B, \(.records) records, payloads \(if .vary then "varied" else "identical (as nats_pub)" end)"' "$D/runs.jsonl")$([ -n "$REPLAY_ARGS" ] && echo "; options: $REPLAY_ARGS")"
	echo "- median of $REPLAY_REPS runs (min–max); CPU time of the replaying thread; allocations = malloc/calloc/realloc/strdup calls by wirespan code"
	echo
	echo "| stage (path up to) | ns per message | ns per span | stage adds ns/msg | allocations per span | spans | OTLP pb bytes/span |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	jq -rs 'def median: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
		def r1: . * 10 | round / 10;
		group_by(.stage) | map({stage: .[0].stage, msg: ([.[].ns_per_msg] | median), lo: ([.[].ns_per_msg] | min), hi: ([.[].ns_per_msg] | max),
			span: ([.[].ns_per_span] | median), aps: ([.[].allocs_per_span] | median), apm: ([.[].allocs_per_msg] | median),
			spans: .[0].spans, pb: .[0].pb_bytes_per_span}) |
		sort_by({pipeline: 0, parse: 1, spans: 2, json: 3, pb: 4}[.stage]) |
		(map(select(.stage == "spans")) | .[0].msg // null) as $sp |
		. as $all | range(0; length) as $i | $all[$i] |
		(if .stage == "pb" then $sp elif $i > 0 then $all[$i - 1].msg else 0 end) as $prev |
		"| \(.stage) | \(.msg | r1) (\(.lo | r1)–\(.hi | r1)) | \(if .spans > 0 then (.span | r1) else "–" end) | " +
		"\(if $prev == null then "–" else ((.msg - $prev) | r1) end)\(if .stage == "pb" then " (vs spans)" else "" end) | " +
		"\(if .spans > 0 then (.aps * 100 | round / 100) else "\(.apm * 100 | round / 100) per msg" end) | \(.spans) | \(if .pb > 0 then (.pb | r1) else "–" end) |"' "$D/runs.jsonl"
	if [ -s "$D/perf.txt" ]; then
		echo
		echo "perf record of the json stage (self time, top symbols):"
		echo
		echo '```'
		sed -E 's/ +$//' "$D/perf.txt"
		echo '```'
	fi
} >"$REPORT"
cat "$REPORT"
