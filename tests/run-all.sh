#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Every test: unit tests (valgrind-checked), the parser fuzz smoke runs, and,
# as root, the BPF integration tests against real peers. Ends with the line
# "N passed, N failed" that CI reads.
set -u
cd "$(dirname "$0")/.."
total_p=0 total_f=0
tally() { # the last "N passed, N failed" line of a runner's output
	local line p f
	line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$1" | tail -n1)
	p=$(sed -n 's/.*\b\([0-9][0-9]*\) passed.*/\1/p' <<<"$line")
	f=$(sed -n 's/.*passed, \([0-9][0-9]*\) failed.*/\1/p' <<<"$line")
	if [ -z "$line" ]; then p=0 f=1; echo "($2 printed no result line: counted as a failure)"; fi
	total_p=$((total_p + p)) total_f=$((total_f + f))
}
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

echo "== unit tests"
WS_VALGRIND=${WS_VALGRIND:-1} bash tests/run-unit.sh build/tests/test_* 2>&1 | tee "$log/unit"
tally "$log/unit" unit

echo "== fuzz smoke (libFuzzer, 10 s per target)"
if make -s fuzz-smoke >"$log/fuzz" 2>&1; then
	grep -E '^(Done|stat::number_of_executed_units)' "$log/fuzz"
	echo "fuzz: 1 passed, 0 failed"
	total_p=$((total_p + 1))
else
	tail -n 40 "$log/fuzz"
	echo "fuzz: 0 passed, 1 failed"
	total_f=$((total_f + 1))
fi

# The agent's whole userspace path, offline, under valgrind: synthesised
# records -> pipeline -> NATS parser -> nats_spans -> OTLP (JSON and
# protobuf); the replay fails unless every message gives its 3 spans.
echo "== replay smoke (tests/bench/bench_agent_replay.c, valgrind)"
rp=0
for st in json pb; do
	valgrind -q --leak-check=full --error-exitcode=99 build/bench_agent_replay \
		--stage "$st" --messages 2000 --reps 1 >"$log/replay" 2>&1 &&
		rp=$((rp + 1)) || tail -n 20 "$log/replay"
done
echo "replay: $rp passed, $((2 - rp)) failed"
total_p=$((total_p + rp)) total_f=$((total_f + 2 - rp))

if [ "$(id -u)" -eq 0 ]; then
	echo "== integration tests (root: real BPF, real peers)"
	bash tests/run-integration.sh 2>&1 | tee "$log/integration"
	tally "$log/integration" integration
else
	echo
	echo "############################################################"
	echo "##  NOT ROOT: the BPF integration tests were SKIPPED.       ##"
	echo "##  Run 'sudo make test' to load BPF and test real peers.   ##"
	echo "############################################################"
	echo
fi
echo "$total_p passed, $total_f failed"
[ "$total_f" -eq 0 ]
