#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# wirespan benchmarks (`make bench`, root). Two parts:
#
#  1. Per-program BPF cost. kernel.bpf_stats_enabled=1 (the old value is put
#     back on exit); run_time_ns/run_cnt of the capture's programs are read
#     with `bpftool prog show -j` before and after each of W windows of a
#     fixed syscall load (tests/bench/syscall_load.c). Per program we report
#     the mean over all windows (sum ns / sum runs) and the median of the W
#     per-window means. Scenarios: non-socket fds (/dev/null, a file), an
#     unclassified loopback TCP socket (64 B junk), a NATS-classified
#     connection carrying 4 KiB PUB frames. The same loads again under empty
#     programs on the same tracepoints (bpf/floor.bpf.c): the floor of the
#     design, and wirespan's cost as a multiple of it.
#  2. Capture loss under NATS load: nats-server on 127.0.0.1 plus a nats.c
#     publisher/subscriber (tests/bench/nats_pub.c) at 50k msg/s, 100k msg/s
#     and saturation, with `wirespan capture --summary --port PORT`.
#  3. The NATS parser alone (tests/bench/bench_nats_parser.c): MB/s, frames/s.
#  4. The whole agent: `wirespan agent --output stdout --port PORT` under the
#     same NATS load (10k to 100k msg/s of 128 B): spans by kind against
#     messages, every counted drop, CPU and RSS (tests/bench/agent_bench.sh).
#  5. HTTP: the parser alone, and nginx / caddy gateways under wrk with and
#     without the agent (tests/bench/http_bench.sh, its own knobs there).
#  6. The NATS span sink alone against nats-server: spans/s encoded and
#     published per core, bytes per span on the wire, core and JetStream
#     (tests/bench/export_bench.sh, knobs listed there).
#  7. Enrichment: identity cache hits and per-span cost, memory with 10k
#     processes and 10k pods (tests/bench/enrich_bench.sh).
#  8. The agent with its default NATS output (tests/bench/agent_nats.sh).
#  9. NATS pub/sub (16 B to 16 KiB) without and with the agent: saturation,
#     latency at half of it, cost per span, RSS, completeness
#     (tests/bench/nats_bench.sh, its own knobs there).
#
# QUICK=1 finishes in 2-3 minutes; the default (full) mode takes 6.5-10.5
# minutes (more when it waits for other captures). Prints a markdown report
# on stdout (also saved as build/bench/report.md) and keeps the raw files
# under build/bench/.
#
# Knobs (environment): QUICK, WINDOWS, N_SMALL, N_NATS, LOAD_SECONDS, QUIET_WAIT,
# MAXCAP_RATES (more runs at these rates with --max-capture 32768; "" = none),
# FULL_RATE (one more run at this rate without --summary; "" = none),
# SMALL_RB (one more saturation run with --ringbuf-size SMALL_RB; "" = none),
# SWEEP (--max-capture values for extra runs of the NATS scenario; "" = none),
# RATES ("50000 100000 0"; 0 = saturation),
# RINGBUF (capture runs only; default: the capture's 8 MiB),
# PARTS ("1 2 3 4 5 6 7": which parts to run). Parts 3 and 4 have their own knobs,
# listed in tests/bench/agent_bench.sh (AGENT_RATES, AGENT_FILE_RATES, ...).

set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
	WINDOWS=${WINDOWS:-5}
	N_SMALL=${N_SMALL:-200000}
	N_NATS=${N_NATS:-20000}
	LOAD_SECONDS=${LOAD_SECONDS:-3}
else
	WINDOWS=${WINDOWS:-15}
	N_SMALL=${N_SMALL:-500000}
	N_NATS=${N_NATS:-50000}
	LOAD_SECONDS=${LOAD_SECONDS:-10}
fi
RATES=${RATES:-"50000 100000 0"}
# NATS scenario again with these --max-capture values ("" = none)
SWEEP=${SWEEP-$([ "$QUICK" = 1 ] && echo "1 4096" || echo "1 64 1024 4096")}
# one more saturation run with this (small) ring buffer, to see loss accounted ("" = none)
SMALL_RB=${SMALL_RB-$([ "$QUICK" = 1 ] && echo "" || echo 1048576)}
FULL_RATE=${FULL_RATE-50000} # one more run at this rate without --summary ("" = none)
# more runs at these rates with --max-capture 32768 ("" = none)
MAXCAP_RATES=${MAXCAP_RATES-$([ "$QUICK" = 1 ] && echo 50000 || echo "50000 100000")}
RINGBUF=${RINGBUF:-}
QUIET_WAIT=${QUIET_WAIT:-$([ "$QUICK" = 1 ] && echo 0 || echo 60)}
MIN_WINDOW_RUNS=100 # programs/windows with fewer runs are not tabulated
PARTS=${PARTS:-"1 2 3 4 5 6 7 8 9"}
part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }

WS=$ROOT/build/wirespan
FLOOR=$ROOT/build/bench/bpf_floor
OUT=$ROOT/build/bench
RAW=$OUT/raw
REPORT=$OUT/report.md

# ---- helpers ---------------------------------------------------------------

die() {
	echo "bench: $*" >&2
	exit 1
}
log() { echo "bench: $*" >&2; }

PIDS=()
OLD_STATS=
cleanup() {
	local p i
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		for i in $(seq 1 50); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	if [ -n "$OLD_STATS" ]; then
		sysctl -q -w kernel.bpf_stats_enabled="$OLD_STATS" >/dev/null ||
			echo "bench: could not restore kernel.bpf_stats_enabled=$OLD_STATS" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() { # drop $1 from PIDS once it has been reaped
	local p keep=()
	for p in "${PIDS[@]}"; do [ "$p" != "$1" ] && keep+=("$p"); done
	PIDS=("${keep[@]}")
}

# A TCP port on 127.0.0.1 with no listener (bounded number of tries).
free_port() {
	local i p
	for i in $(seq 1 100); do
		p=$((20000 + RANDOM % 30000))
		if [ -z "$(ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null)" ]; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

wait_listen() { # port timeout_s
	local i
	for i in $(seq 1 $(($2 * 20))); do
		[ -n "$(ss -Htln "( sport = :$1 )" 2>/dev/null)" ] && return 0
		sleep 0.05
	done
	return 1
}

# ---- checks ----------------------------------------------------------------

[ "$(id -u)" -eq 0 ] || die "needs root (BPF programs, bpf_stats); run: sudo make bench"
missing=()
for t in bpftool jq cc nats-server ss sysctl getconf awk seq timeout git; do
	command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
[ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (Debian: apt-get install bpftool jq gcc nats-server iproute2 procps)"
[ -x "$WS" ] || die "$WS not built; run make first (make bench does)"
[ -x "$FLOOR" ] || die "$FLOOR not built; run make first (make bench does)"
[ -x "$OUT/ring_copy" ] || die "$OUT/ring_copy not built; run make first (make bench does)"
[ -r /proc/sys/kernel/bpf_stats_enabled ] || die "kernel.bpf_stats_enabled not available on this kernel"
rm -rf "$RAW" && mkdir -p "$RAW" || die "cannot create $RAW"

log "building load generators"
cc -O2 -std=c11 -Wall -Wextra -Werror -pthread tests/bench/syscall_load.c \
	-o "$OUT/syscall_load" 2>"$RAW/cc1.err" ||
	{ cat "$RAW/cc1.err" >&2; die "could not build tests/bench/syscall_load.c"; }
cc -O2 -std=c11 -Wall -Wextra -Werror -pthread tests/bench/ring_floor.c \
	-o "$OUT/ring_floor" 2>"$RAW/cc3.err" ||
	{ cat "$RAW/cc3.err" >&2; die "could not build tests/bench/ring_floor.c"; }
cc -O2 -std=c11 -Wall -Wextra -Werror tests/bench/nats_pub.c -lnats \
	-o "$OUT/nats_pub" 2>"$RAW/cc2.err" ||
	{ cat "$RAW/cc2.err" >&2; die "could not build tests/bench/nats_pub.c (needs libnats-dev)"; }

OLD_STATS=$(sysctl -n kernel.bpf_stats_enabled) || die "cannot read kernel.bpf_stats_enabled"
sysctl -q -w kernel.bpf_stats_enabled=1 >/dev/null || die "cannot set kernel.bpf_stats_enabled=1"
HZ=$(getconf CLK_TCK)
# parts 3 and 4 (functions only; they use the helpers above and below)
# shellcheck source=tests/bench/agent_bench.sh
. tests/bench/agent_bench.sh
# shellcheck source=tests/bench/export_bench.sh
. tests/bench/export_bench.sh
# shellcheck source=tests/bench/enrich_bench.sh
. tests/bench/enrich_bench.sh

# Wait (bounded) until no other tp_* BPF programs are loaded: another capture
# on this host competes for the CPUs. Called while ours is not running.
wait_quiet() {
	local i n=0
	[ "$QUIET_WAIT" -gt 0 ] || return 0
	for i in $(seq 1 "$QUIET_WAIT"); do
		n=$(bpftool prog show -j | jq '[.[] | select(.name // "" | startswith("tp_"))] | length')
		[ "$n" = 0 ] && return 0
		[ "$i" = 1 ] && log "$n tp_* BPF programs of another process are loaded; waiting up to $QUIET_WAIT s"
		sleep 1
	done
	log "still $n foreign tp_* programs after $QUIET_WAIT s; going on (recorded in the report)"
}

# ---- the capture -----------------------------------------------------------

CAP_PID=
CAP_DIR=
PROG_IDS=
# start_capture NAME [capture args...]: start, wait for "ready", learn the
# ids of its BPF programs from its fds (/proc/PID/fdinfo "prog_id:").
start_capture() {
	local name=$1
	shift
	wait_quiet
	awk '{print $1}' /proc/loadavg >>"$RAW/loadavg"
	CAP_DIR=$RAW/$name
	mkdir -p "$CAP_DIR"
	local rb=()
	[ -n "$RINGBUF" ] && rb=(--ringbuf-size "$RINGBUF")
	"$WS" capture "${rb[@]}" "$@" >"$CAP_DIR/capture.out" 2>"$CAP_DIR/capture.err" &
	CAP_PID=$!
	PIDS+=("$CAP_PID")
	await_programs "capture ($name)"
	proc_kb "$CAP_PID" VmRSS >"$CAP_DIR/rss_ready_kb"
}

# await_programs WHAT: wait (30 s at most) for CAP_PID to print "ready" in
# $CAP_DIR/capture.err, then learn the ids of its BPF programs from its fds
# (/proc/PID/fdinfo "prog_id:").
await_programs() {
	local i
	for i in $(seq 1 600); do
		grep -q ready "$CAP_DIR/capture.err" 2>/dev/null && break
		kill -0 "$CAP_PID" 2>/dev/null || {
			cat "$CAP_DIR/capture.err" >&2
			die "$1 exited before ready"
		}
		sleep 0.05
	done
	grep -q ready "$CAP_DIR/capture.err" || die "$1 not ready after 30 s"
	PROG_IDS=$(grep -h '^prog_id:' /proc/"$CAP_PID"/fdinfo/* 2>/dev/null |
		awk '{print $2}' | sort -un | jq -sc .)
	[ "$PROG_IDS" != "[]" ] || die "no BPF program fds found in $1, pid $CAP_PID"
}

# start_floor NAME: the empty programs of bpf/floor.bpf.c on the same
# tracepoints (build/bench/bpf_floor), in place of the capture; stop_capture
# stops it.
start_floor() {
	wait_quiet
	CAP_DIR=$RAW/$1
	mkdir -p "$CAP_DIR"
	"$FLOOR" 2>"$CAP_DIR/capture.err" &
	CAP_PID=$!
	PIDS+=("$CAP_PID")
	await_programs "bpf_floor ($1)"
}

# stop_capture: SIGINT, wait (bounded), record the exit status.
CAP_RC=
stop_capture() {
	local i
	kill -INT "$CAP_PID" 2>/dev/null
	for i in $(seq 1 400); do
		kill -0 "$CAP_PID" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$CAP_PID" 2>/dev/null; then
		log "capture pid $CAP_PID did not stop within 20 s of SIGINT: killing it"
		kill -KILL "$CAP_PID" 2>/dev/null
	fi
	wait "$CAP_PID"
	CAP_RC=$?
	forget_pid "$CAP_PID"
	echo "$CAP_RC" >"$CAP_DIR/capture.rc"
	[ "$CAP_RC" -eq 0 ] || log "CAPTURE EXITED WITH STATUS $CAP_RC (see $CAP_DIR/capture.err)"
}

metrics() { grep '^{"type":"metrics"' "$CAP_DIR/capture.err" | tail -n1; }

# {name: [run_time_ns, run_cnt]} for the capture's programs.
# Also appends to $CAP_DIR/foreign_progs how many other tp_* programs (another
# capture on this host) are loaded: they run on the same syscalls, so they do
# not change our programs' numbers but compete for the CPUs.
snap() {
	local all
	all=$(bpftool prog show -j) || return 1
	jq -r --argjson ids "$PROG_IDS" \
		'[.[] | select((.name // "" | startswith("tp_")) and (.id as $i | $ids | index($i) | not))] | length' \
		<<<"$all" >>"$CAP_DIR/foreign_progs"
	jq -c --argjson ids "$PROG_IDS" \
		'[.[] | select(.id as $i | $ids | index($i)) |
		  {key: .name, value: [(.run_time_ns // 0), (.run_cnt // 0)]}] | from_entries' <<<"$all"
}
delta() { # old new -> {name: {t, c}}
	jq -nc --argjson a "$1" --argjson b "$2" \
		'$b | with_entries(.value = {t: (.value[0] - $a[.key][0]), c: (.value[1] - $a[.key][1])})'
}

proc_ticks() { # utime+stime of pid, in clock ticks
	awk '{sub(/.*\) /, ""); print $12 + $13}' /proc/"$1"/stat 2>/dev/null || echo 0
}
proc_sched_ns() { # on-CPU ns of all threads of pid (schedstat), for precision
	cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'
}
proc_kb() { # pid field (VmHWM, VmRSS) in kB
	awk -v f="$2:" '$1 == f {print $2}' /proc/"$1"/status 2>/dev/null || echo 0
}

# ---- part 1: BPF cost per program ------------------------------------------

# run_windows SCENARIO MODE N LABEL: W windows of `syscall_load MODE N`, each
# bracketed by two bpftool snapshots; appends JSON lines to $RAW/SCENARIO.jsonl.
run_windows() {
	local sc=$1 mode=$2 n=$3 s0 s1 load
	for _ in $(seq 1 "$WINDOWS"); do
		s0=$(snap) || die "bpftool prog show failed"
		load=$("$OUT/syscall_load" "$mode" "$n") || die "syscall_load $mode failed"
		s1=$(snap) || die "bpftool prog show failed"
		jq -nc --argjson load "$load" --argjson d "$(delta "$s0" "$s1")" \
			'{load: $load, d: $d}' >>"$RAW/$sc.jsonl"
	done
}

baseline_windows() { # no capture attached: app-visible ns/op only
	local sc=$1 mode=$2 n=$3
	for _ in $(seq 1 "$WINDOWS"); do
		"$OUT/syscall_load" "$mode" "$n" >>"$RAW/$sc.base.jsonl" || die "syscall_load $mode failed"
	done
}

JQ_MEDIAN='def median: sort | if length == 0 then null
	elif length % 2 == 1 then .[length / 2 | floor]
	else (.[length / 2 - 1] + .[length / 2]) / 2 end;'

# Per-program table of a scenario.
prog_table() { # scenario title
	echo
	echo "**$2** ($WINDOWS windows)"
	echo
	echo "| program | runs | mean ns/run | median of window means | min–max window mean |"
	echo "|---|---:|---:|---:|---:|"
	jq -rs --argjson minc "$MIN_WINDOW_RUNS" "$JQ_MEDIAN"'
		. as $w | ($w[0].d | keys) as $names |
		[ $names[] as $n |
		  { n: $n,
		    runs: ([$w[].d[$n].c] | add),
		    ns: ([$w[].d[$n].t] | add),
		    m: [ $w[].d[$n] | select(.c >= $minc) | .t / .c ] } ] |
		map(select(.runs >= $minc)) | sort_by(-.runs) | .[] |
		"| \(.n) | \(.runs) | \(.ns / .runs * 10 | round / 10) | " +
		(if (.m | length) > 0 then
		   "\(.m | median * 10 | round / 10) | \(.m | min * 10 | round / 10)–\(.m | max * 10 | round / 10) |"
		 else "– | – |" end)
	' "$RAW/$1.jsonl"
	jq -rs --argjson minc "$MIN_WINDOW_RUNS" '
		. as $w | ($w[0].d | keys) as $names |
		[ $names[] as $n | {n: $n, runs: ([$w[].d[$n].c] | add)} |
		  select(.runs > 0 and .runs < $minc) | "\(.n) \(.runs)" ] |
		if length > 0 then "\nOther programs that ran (runs, all windows): " + join(", ") + "." else empty end
	' "$RAW/$1.jsonl"
}

# One row of the per-syscall (enter+exit) table.
pair_row() { # scenario label syscall target_ns what
	local base nost k
	k=$([ "$3" = read ] && echo read_ns_per_op || echo write_ns_per_op)
	base=$(jq -s --arg k "$k" "$JQ_MEDIAN"'[.[][$k]] | median' "$RAW/$1.base.jsonl" 2>/dev/null || echo null)
	nost=$(jq -s --arg k "$k" "$JQ_MEDIAN"'[.[][$k]] | median' "$RAW/$1.nostats.jsonl" 2>/dev/null || echo null)
	jq -rs --arg sys "$3" --arg lab "$2" --argjson target "$4" --arg what "$5" \
		--argjson base "${base:-null}" --argjson nost "${nost:-null}" --argjson minc "$MIN_WINDOW_RUNS" "$JQ_MEDIAN"'
		("tp_enter_" + $sys) as $en | ("tp_exit_" + $sys) as $ex |
		. as $w |
		([$w[].d[$en].c] | add) as $cen | ([$w[].d[$en].t] | add) as $ten |
		([$w[].d[$ex].c] | add) as $cex | ([$w[].d[$ex].t] | add) as $tex |
		(if $cen > 0 then $ten / $cen else 0 end) as $men |
		(if $cex > 0 then $tex / $cex else 0 end) as $mex |
		($men + $mex) as $mean |
		([ $w[] | select(.d[$en].c >= $minc and .d[$ex].c >= $minc) |
		   .d[$en].t / .d[$en].c + .d[$ex].t / .d[$ex].c ] | median) as $med |
		([ $w[].load[if $sys == "read" then "read_ns_per_op" else "write_ns_per_op" end] ] | median) as $app |
		(if $what == "exit" then $mex else $mean end) as $judge_mean |
		"| \($lab) | \($sys) | \($cex) | \($men * 10 | round / 10) | \($mex * 10 | round / 10) | \($mean * 10 | round / 10) | \(if $med then ($med * 10 | round / 10) else "–" end) | " +
		"\(if ($base and $base > 0) then ($base * 10 | round / 10) else "–" end) | \(if ($nost and $nost > 0) then ($nost * 10 | round / 10) else "–" end) | \(if ($app and $app > 0) then ($app * 10 | round / 10) else "–" end) | " +
		(if $target > 0 then "≤ \($target) (\($what)): " + (if $judge_mean <= $target then "met" else "**missed**" end) else "–" end) + " |"
	' "$RAW/$1.jsonl"
}

# One row of the floor table: the enter+exit mean under bpf_floor and under
# the capture, for one syscall of one scenario.
floor_row() { # scenario label syscall
	local f=$RAW/floor-$1.jsonl
	[ -s "$f" ] || return 0
	jq -rn --arg sys "$3" --arg lab "$2" --slurpfile fl "$f" --slurpfile ws "$RAW/$1.jsonl" '
		def pair($w): (["tp_enter_", "tp_exit_"] | map(. + $sys)) as $p |
			[$p[] as $n | ([$w[].d[$n].t] | add) / ([$w[].d[$n].c] | add)] | add;
		pair($fl) as $f | pair($ws) as $x |
		"| \($lab) | \($sys) | \($f * 10 | round / 10) | \($x * 10 | round / 10) | \(($x - $f) * 10 | round / 10) | \($x / $f * 100 | round / 100) |"'
}

foreign_max() { sort -n "$RAW/$1/foreign_progs" 2>/dev/null | tail -n1; }

cap_metrics_row() { # scenario label
	local m
	m=$(jq -c '.' "$RAW/$1/metrics.json" 2>/dev/null) || m='{}'
	jq -rn --argjson m "$m" --arg l "$2" --arg rc "$(cat "$RAW/$1/capture.rc" 2>/dev/null)" \
		--arg f "$(foreign_max "$1")" '
		"| \($l) | \($m.kernel.events // "–") | \($m.kernel.data_bytes // "–") | \($m.kernel.rb_full_events // "–") | \($m.kernel.rb_full_bytes // "–") | \($m.kernel.unclassified_bytes // "–") | \($m.kernel.conn_opened // "–") | \($rc) | \($f) |"'
}

bpf_scenario() { # scenario mode n [extra capture args]
	local sc=$1 mode=$2 n=$3
	shift 3
	start_capture "$sc" --summary "$@"
	run_windows "$sc" "$mode" "$n"
	if [ -n "${NO_NOSTATS:-}" ]; then
		stop_capture
		metrics >"$CAP_DIR/metrics.json"
		return
	fi
	set -- "$sc" "$mode" "$n"
	# The same load with bpf_stats off: app-visible cost without the two
	# clock reads per program run that bpf_stats adds.
	sysctl -q -w kernel.bpf_stats_enabled=0 >/dev/null
	for _ in $(seq 1 "$WINDOWS"); do
		"$OUT/syscall_load" "$2" "$3" >>"$RAW/$1.nostats.jsonl" || die "syscall_load $2 failed"
	done
	sysctl -q -w kernel.bpf_stats_enabled=1 >/dev/null
	stop_capture
	metrics >"$CAP_DIR/metrics.json"
}

# ---- part 2: capture loss under NATS load -----------------------------------

NATS_PID=
start_nats() { # sets NATS_PORT
	for _ in 1 2 3; do
		NATS_PORT=$(free_port) || die "no free port found"
		nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$1/nats-server.log" 2>&1 &
		NATS_PID=$!
		PIDS+=("$NATS_PID")
		if wait_listen "$NATS_PORT" 10; then
			return 0
		fi
		kill -TERM "$NATS_PID" 2>/dev/null
		wait "$NATS_PID" 2>/dev/null
		forget_pid "$NATS_PID"
	done
	die "nats-server did not start (see $1/nats-server.log)"
}
stop_nats() {
	local i
	kill -TERM "$NATS_PID" 2>/dev/null
	for i in $(seq 1 100); do
		kill -0 "$NATS_PID" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$NATS_PID" 2>/dev/null
	wait "$NATS_PID" 2>/dev/null
	forget_pid "$NATS_PID"
}

load_run() { # name rate seconds summary(1|0) [extra capture args]
	local name=$1 rate=$2 secs=$3 summary=$4 d t0 t1 tk0 tk1 ss0 ss1 s0 s1 hwm rss pubrc pp
	shift 4
	d=$RAW/$name
	mkdir -p "$d"
	start_nats "$d"
	if [ "$summary" = 1 ]; then
		start_capture "$name" --summary --port "$NATS_PORT" "$@"
	else
		start_capture "$name" --port "$NATS_PORT" "$@"
	fi
	echo "$*" >"$d/extra_args"
	tk0=$(proc_ticks "$CAP_PID")
	ss0=$(proc_sched_ns "$CAP_PID")
	s0=$(snap)
	t0=$(date +%s.%N)
	# in the background, so that a signal reaches the trap at once
	timeout $((secs + 60)) "$OUT/nats_pub" --url "nats://127.0.0.1:$NATS_PORT" \
		--rate "$rate" --seconds "$secs" --size 128 >"$d/pub.json" 2>"$d/pub.err" &
	pp=$!
	PIDS+=("$pp")
	wait "$pp"
	pubrc=$?
	forget_pid "$pp"
	# the subscriber's server side closes when nats-server sees the EOF
	sleep 0.5
	t1=$(date +%s.%N)
	s1=$(snap)
	tk1=$(proc_ticks "$CAP_PID")
	ss1=$(proc_sched_ns "$CAP_PID")
	hwm=$(proc_kb "$CAP_PID" VmHWM)
	rss=$(proc_kb "$CAP_PID" VmRSS)
	stop_nats
	sleep 0.3
	stop_capture
	metrics >"$CAP_DIR/metrics.json"
	if [ "$summary" != 1 ]; then
		# Full output: keep its size and line counts, and only the
		# open/close/gap lines (the data lines are hundreds of MB).
		{
			echo "{\"bytes\": $(stat -c %s "$d/capture.out"),"
			echo "\"data_lines\": $(grep -c '"type":"data"' "$d/capture.out"),"
			echo "\"gap_lines\": $(grep -c '"type":"gap"' "$d/capture.out"),"
			echo "\"open_lines\": $(grep -c '"type":"open"' "$d/capture.out")}"
		} >"$d/output_stats.json"
		grep -E '"type":"(open|close|gap)"' "$d/capture.out" >"$d/capture.small"
		mv "$d/capture.small" "$d/capture.out"
	fi
	jq -nc --argjson rate "$rate" --argjson secs "$secs" --argjson pubrc "$pubrc" \
		--argjson wall "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')" \
		--argjson cpu "$(awk -v a="$tk0" -v b="$tk1" -v hz="$HZ" 'BEGIN{print (b - a) / hz}')" \
		--argjson sched "$(awk -v a="$ss0" -v b="$ss1" 'BEGIN{print (b - a) / 1e9}')" \
		--argjson hwm "${hwm:-0}" --argjson rss "${rss:-0}" \
		--argjson bpf "$(delta "$s0" "$s1")" \
		'{rate: $rate, secs: $secs, pubrc: $pubrc, wall_s: $wall, agent_cpu_s: $cpu, agent_sched_s: $sched,
		  vmhwm_kb: $hwm, vmrss_kb: $rss, bpf: $bpf}' >"$d/run.json"
}

# The publisher alone at saturation (no capture), to see what the capture costs.
sat_nocap() {
	local d=$RAW/load-sat-nocap
	mkdir -p "$d"
	wait_quiet
	start_nats "$d"
	timeout $((LOAD_SECONDS + 60)) "$OUT/nats_pub" --url "nats://127.0.0.1:$NATS_PORT" \
		--rate 0 --seconds "$LOAD_SECONDS" --size 128 >"$d/pub.json" 2>"$d/pub.err"
	stop_nats
}

load_rows() { # name label
	local d=$RAW/$1
	jq -rn --arg l "$2" \
		--argjson pub "$(cat "$d/pub.json" 2>/dev/null || echo '{}')" \
		--argjson run "$(cat "$d/run.json")" \
		--argjson m "$(cat "$d/metrics.json" 2>/dev/null || echo '{}')" \
		--arg rc "$(cat "$d/capture.rc")" --arg f "$(foreign_max "$1")" \
		--argjson ready "$(cat "$d/rss_ready_kb" 2>/dev/null || echo 0)" \
		--slurpfile closes <(grep '"type":"close"' "$d/capture.out" || true) '
		($closes | length) as $nc |
		([$closes[] | select(.egress.bytes == .egress.captured + .egress.gap and
		                      .ingress.bytes == .ingress.captured + .ingress.gap)] | length) as $ok |
		([$closes[] | select(.egress.gap == 0 and .ingress.gap == 0)] | length) as $nogap |
		([$closes[] | .egress.bytes + .ingress.bytes] | add // 0) as $bytes |
		([$closes[] | .egress.captured + .ingress.captured] | add // 0) as $capd |
		([$closes[] | .egress.gap + .ingress.gap] | add // 0) as $gap |
		($m.user.gap_bytes // {} | to_entries | map(select(.value > 0) | "\(.key) \(.value)") | join(", ")) as $gaps |
		([$run.bpf[] | .t] | add) as $bpfns |
		"| \($l) | \($pub.sent // "–") | \($pub.received // "–") | \($pub.rate_achieved // "–") | " +
		"\($m.kernel.events // "–") | \($m.kernel.data_bytes // "–") | \($m.kernel.rb_full_events // "–") | \($m.kernel.rb_full_bytes // "–") | " +
		"\($nc) (\($ok) with bytes = captured + gap, \($nogap) with gap 0) | \($bytes) / \($capd) / \($gap) | " +
		"\(if $gaps == "" then "none" else $gaps end) | " +
		"\($run.agent_cpu_s / $run.wall_s * 1000 | round / 10) % (\($run.agent_cpu_s) s; schedstat \($run.agent_sched_s * 1000 | round / 1000) s) | " +
		"\($run.vmhwm_kb / 1024 * 10 | round / 10) MiB (\($ready / 1024 * 10 | round / 10) MiB at ready) | " +
		"\($bpfns / 1e6 | round) ms (\(if ($pub.sent // 0) > 0 then ($bpfns / $pub.sent | round) else "–" end) ns/msg) | " +
		"\($rc)\(if $run.pubrc != 0 then ", pub rc \($run.pubrc)" else "" end) | \($f) |"'
}

conn_rows() { # name label: one row per close line
	grep '"type":"close"' "$RAW/$1/capture.out" | jq -r --arg l "$2" '
		"| \($l) | \(.comm) (\(.pid)) | \(.proto) | \(.egress.bytes) / \(.egress.captured) / \(.egress.gap) | " +
		"\(.ingress.bytes) / \(.ingress.captured) / \(.ingress.gap) | " +
		(if .egress.bytes == .egress.captured + .egress.gap and .ingress.bytes == .ingress.captured + .ingress.gap
		 then "yes" else "**NO**" end) + " |"'
}

# ---- run ---------------------------------------------------------------------

START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
T_START=$(date +%s)
log "mode: $([ "$QUICK" = 1 ] && echo quick || echo full); windows=$WINDOWS n_small=$N_SMALL n_nats=$N_NATS load_seconds=$LOAD_SECONDS rates=$RATES"

if part 1; then
log "part 1: baselines without capture"
wait_quiet
baseline_windows nonsock nonsock "$N_SMALL"
baseline_windows tcp tcp "$N_SMALL"
baseline_windows nats nats "$N_NATS"
log "part 1: non-socket fds"
bpf_scenario nonsock nonsock "$N_SMALL"
log "part 1: unclassified TCP socket"
bpf_scenario tcp tcp "$N_SMALL"
log "part 1: NATS 4 KiB writes"
bpf_scenario nats nats "$N_NATS"
SWEEP_WINDOWS=$(((WINDOWS + 2) / 3))
[ "$SWEEP_WINDOWS" -ge 3 ] || SWEEP_WINDOWS=3
for mc in $SWEEP; do
	log "part 1: NATS 4 KiB writes, --max-capture $mc"
	WINDOWS=$SWEEP_WINDOWS NO_NOSTATS=1 bpf_scenario "nats-mc$mc" nats "$N_NATS" --max-capture "$mc"
done
log "part 1: the floor (empty programs on the same tracepoints)"
for sc in nonsock tcp nats; do
	n=$N_SMALL
	[ "$sc" = nats ] && n=$N_NATS
	start_floor "floor-$sc"
	run_windows "floor-$sc" "$sc" "$n"
	stop_capture
done
# the same bytes through a shared ring in plain userspace: a 48 B record
# header + the 4114 B frame, into a ring of the capture's size
for _ in 1 2 3; do
	"$OUT/ring_floor" "${RINGBUF:-8388608}" 4162 $((N_NATS * 5)) >>"$RAW/ring_floor.jsonl" ||
		die "ring_floor failed"
done
# and in the kernel: one BPF program that moves the same 4 KiB and does
# nothing else (bpf/ringcopy.bpf.c), its reader on any CPU, then pinned
# with the caller to one CPU (taskset), where the ring's lines never cross
# between cores
RC=$OUT/ring_copy
for _ in 1 2 3; do
	for m in none user ring user+ring dyn; do
		"$RC" "$m" 4096 $((N_NATS * 2)) "${RINGBUF:-8388608}" >>"$RAW/ring_copy.jsonl" 2>>"$RAW/ring_copy.err" ||
			[ "$m" = dyn ] || die "ring_copy $m failed"
	done
	taskset -c 0 "$RC" user+ring 4096 $((N_NATS * 2)) "${RINGBUF:-8388608}" |
		jq -c '.mode = "user+ring, one CPU"' >>"$RAW/ring_copy.jsonl" || die "ring_copy (one CPU) failed"
done
fi

LOADS=()
if part 2; then
case " $RATES " in *" 0 "*)
	log "part 2: NATS load, saturation without the capture, $LOAD_SECONDS s"
	sat_nocap ;;
esac
for r in $RATES; do
	n=load-$([ "$r" = 0 ] && echo sat || echo "$r")
	log "part 2: NATS load, rate $([ "$r" = 0 ] && echo saturation || echo "$r msg/s") for $LOAD_SECONDS s"
	load_run "$n" "$r" "$LOAD_SECONDS" 1
	LOADS+=("$n|$([ "$r" = 0 ] && echo saturation || echo "$r/s")")
done
for r in $MAXCAP_RATES; do
	log "part 2: NATS load, rate $r msg/s, --max-capture 32768"
	load_run "load-$r-cap32k" "$r" "$LOAD_SECONDS" 1 --max-capture 32768
	LOADS+=("load-$r-cap32k|$r/s, --max-capture 32768")
done
if [ -n "$SMALL_RB" ]; then
	log "part 2: NATS load, saturation, --ringbuf-size $SMALL_RB (loss accounting under pressure)"
	load_run "load-sat-rb$SMALL_RB" 0 "$LOAD_SECONDS" 1 --ringbuf-size "$SMALL_RB"
	LOADS+=("load-sat-rb$SMALL_RB|saturation, --ringbuf-size $SMALL_RB")
fi
if [ -n "$FULL_RATE" ]; then
	log "part 2: NATS load, rate $FULL_RATE msg/s, full JSON output (no --summary) to a file"
	load_run "load-$FULL_RATE-full" "$FULL_RATE" "$LOAD_SECONDS" 0
	LOADS+=("load-$FULL_RATE-full|$FULL_RATE/s, full output")
fi
fi
if part 3; then
	log "part 3: NATS parser alone ($PARSER_REPS × $PARSER_SECONDS s per case, feed $PARSER_FEED)"
	parser_part
fi
if part 4; then
	agent_part
fi
HTTP_RC=0
if part 5; then
	log "part 5: HTTP parser and gateways under wrk (tests/bench/http_bench.sh)"
	QUICK=$QUICK bash tests/bench/http_bench.sh >"$RAW/http.md" || HTTP_RC=1
fi
if part 6; then
	log "part 6: NATS export ($EXPORT_SECONDS s per run, batches $EXPORT_BATCHES)"
	export_part
fi
part 7 && enrich_part
if part 8; then
	log "part 8: the agent with its default NATS output at 50k and 100k msg/s (tests/bench/agent_nats.sh)"
	for r in 50000 100000; do bash tests/bench/agent_nats.sh "$r" 3; done >"$RAW/agent_nats.txt" 2>&1
fi
NB_RC=0
if part 9; then
	log "part 9: NATS pub/sub without and with the agent (tests/bench/nats_bench.sh)"
	QUICK=$QUICK bash tests/bench/nats_bench.sh >"$RAW/nats_bench.md" || NB_RC=1
fi
T_END=$(date +%s)

# ---- report ------------------------------------------------------------------

{
	echo "## Results: $([ "$QUICK" = 1 ] && echo "quick (QUICK=1 make bench)" || echo "full (make bench)")"
	echo
	echo "- date: $START, run time $((T_END - T_START)) s"
	echo "- machine: nproc $(nproc), kernel $(uname -r), CPU $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
	echo "- wirespan: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- agent bpf include 2>/dev/null || echo ' (agent/bpf/include modified)'), ring buffer ${RINGBUF:-default}"
	echo "- other tp_* BPF programs attached (another capture on this host) at our snapshots (min, max): $(cat "$RAW"/*/foreign_progs 2>/dev/null | sort -n | awk 'NR == 1 {a = $1} {b = $1} END {print a ", " b}')"
	echo "- 1-min load average at our capture starts (min, max; our own load included): $(sort -n "$RAW/loadavg" | awk 'NR == 1 {a = $1} {b = $1} END {print a ", " b}')"
	echo "- settings: windows=$WINDOWS, N_SMALL=$N_SMALL syscalls of each kind per window, N_NATS=$N_NATS frames per window, load $LOAD_SECONDS s per rate$(part 4 && echo "; agent rates $AGENT_RATES (file output: ${AGENT_FILE_RATES:-none})${AGENT_ARGS:+, agent options: $AGENT_ARGS}"); parts $PARTS"
	if part 1; then
	echo
	echo "### 1. BPF cost per program (bpf_stats)"
	echo
	echo "Mean = sum(run_time_ns) / sum(run_cnt) over all windows; median = median of the"
	echo "per-window means (windows with ≥ $MIN_WINDOW_RUNS runs of that program). App ns/op: wall time"
	echo "per syscall in syscall_load's loop (median over the windows), without the capture, with it"
	echo "(bpf_stats off) and with it and bpf_stats on; for the TCP rows it depends on the writer/sink"
	echo "scheduling more than on the capture."
	echo
	echo "| scenario | syscall | syscalls | enter mean ns | exit mean ns | enter+exit mean ns | enter+exit median ns | app ns/op, no capture | app ns/op, capture | app ns/op, capture + bpf_stats | target |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	pair_row nonsock "non-socket (/dev/null)" write 100 pair
	pair_row nonsock "non-socket (file)" read 100 pair
	pair_row tcp "unclassified TCP, 64 B (writer)" write 100 pair
	pair_row tcp "unclassified TCP (sink reads)" read 100 pair
	pair_row nats "NATS 4114 B frame (writer)" write 500 exit
	pair_row nats "NATS (sink reads, captured)" read 0 pair
	echo
	echo "**The floor**: the same loads under empty programs on the same tracepoints"
	echo "(bpf/floor.bpf.c, build/bench/bpf_floor), enter+exit mean ns; wirespan's pair as a multiple of it."
	echo
	echo "| scenario | syscall | floor enter+exit mean ns | wirespan enter+exit mean ns | wirespan's own ns | × floor |"
	echo "|---|---|---:|---:|---:|---:|"
	floor_row nonsock "non-socket (/dev/null)" write
	floor_row nonsock "non-socket (file)" read
	floor_row tcp "unclassified TCP, 64 B (writer)" write
	floor_row tcp "unclassified TCP (sink reads)" read
	floor_row nats "NATS 4114 B frame (writer)" write
	floor_row nats "NATS (sink reads, captured)" read
	if [ -s "$RAW/ring_floor.jsonl" ]; then
		echo
		jq -rs "$JQ_MEDIAN"'"Moving the captured write'"'"'s bytes through a shared ring costs the producer, in plain userspace (tests/bench/ring_floor.c: memcpy of a 48 + 4114 B record into a \(.[0].ring_bytes)-byte ring while a consumer thread reads every line of it; median of \(length) runs of \(.[0].n) records): \([.[].ns_per_record] | median) ns per record (\([.[].ns_per_record_no_consumer] | median) ns with no consumer). The captured write pays at least this on top of its floor pair."' "$RAW/ring_floor.jsonl"
	fi
	if [ -s "$RAW/ring_copy.jsonl" ]; then
		echo
		echo "**The copy alone, in the kernel**: one BPF program on getppid's enter that moves 4096 B and does nothing else (bpf/ringcopy.bpf.c, build/bench/ring_copy), its reader draining the ring as the capture's does and reading every line; mean ns per run from bpf_stats, median of runs (min-max)."
		echo
		echo "| what the program does | ns per run | runs |"
		echo "|---|---:|---:|"
		jq -rs "$JQ_MEDIAN"'group_by(.mode) | .[] |
			"| \(.[0].mode) | \([.[].ns_per_run] | median) (\([.[].ns_per_run] | min)-\([.[].ns_per_run] | max)) | \(length) |"' "$RAW/ring_copy.jsonl"
		echo
		echo "none: the floor of a program; user: 4 KiB from user memory into a per-CPU buffer; ring: a per-CPU buffer into the ring buffer; user+ring: both, the capture's data path; dyn: user memory straight into a reserved record (one copy; Linux 6.16+); one CPU: user+ring with the caller and the reader pinned to CPU 0."
	fi
	prog_table nonsock "non-socket fds: write() 64 B to /dev/null, read() 64 B from a file"
	prog_table tcp "unclassified loopback TCP: write() 64 B junk; sink thread read()s 64 KiB"
	prog_table nats "NATS: CONNECT, then write() of PUB bench 4096 + 4096 B + CRLF; sink read()s 64 KiB"
	if [ -n "$SWEEP" ]; then
		echo
		echo "**NATS scenario vs --max-capture** (bytes copied per syscall; $SWEEP_WINDOWS windows each, the default row is the NATS scenario above): exit programs' mean ns/run (median of window means)"
		echo
		echo "| --max-capture | tp_exit_write (4114 B writes) | tp_exit_read (sink reads) | sink's mean read size (B) |"
		echo "|---:|---:|---:|---:|"
		for mc in $SWEEP default; do
			f=$RAW/nats-mc$mc.jsonl
			[ "$mc" = default ] && f=$RAW/nats.jsonl
			jq -rs --arg mc "$([ "$mc" = default ] && echo "32768 (default)" || echo "$mc")" --argjson minc "$MIN_WINDOW_RUNS" "$JQ_MEDIAN"'
				def cell($n): ([.[].d[$n].t] | add) as $t | ([.[].d[$n].c] | add) as $c |
					([.[].d[$n] | select(.c >= $minc) | .t / .c] | median) as $m |
					"\($t / $c * 10 | round / 10) (\(if $m then ($m * 10 | round / 10) else "–" end))";
				"| \($mc) | \(cell("tp_exit_write")) | \(cell("tp_exit_read")) | \(([.[].load.sink_bytes] | add) / ([.[].load.sink_reads] | add) | round) |"' "$f"
		done
	fi
	echo
	echo "Capture metrics of the part-1 runs:"
	echo
	echo "| scenario | events | data_bytes | rb_full_events | rb_full_bytes | unclassified_bytes | conn_opened | capture exit | other tp_ progs (max) |"
	echo "|---|---:|---:|---:|---:|---:|---:|---|---:|"
	cap_metrics_row nonsock "non-socket"
	cap_metrics_row tcp "unclassified TCP"
	cap_metrics_row nats "NATS 4 KiB"
	fi
	if part 2; then
	echo
	echo "### 2. NATS load: nats_pub (128 B messages) via nats-server, capture --summary --port PORT"
	echo
	echo "Agent CPU = utime+stime (/proc/PID/stat) over the run's wall time (from capture ready to"
	echo "0.5 s after the publisher exits); schedstat = on-CPU seconds of all agent threads, the same"
	echo "interval. BPF time = run_time_ns of all the capture's programs over that interval (every"
	echo "process's syscalls), per message sent."
	echo
	echo "| rate | sent | received | achieved msg/s | events | data_bytes (kernel) | rb_full_events | rb_full_bytes | close lines | bytes / captured / gap (sum of close lines) | user gap_bytes by reason | agent CPU (of one core) | agent VmHWM (VmRSS at ready) | BPF time (all progs) | capture exit | other tp_ progs (max) |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|---|---:|"
	for l in "${LOADS[@]}"; do load_rows "${l%%|*}" "${l#*|}"; done
	if [ -s "$RAW/load-sat-nocap/pub.json" ]; then
		jq -r '"\nSaturation without the capture (same publisher, same \(.seconds) s): sent \(.sent), received \(.received), \(.rate_achieved) msg/s."' "$RAW/load-sat-nocap/pub.json"
	fi
	for l in "${LOADS[@]}"; do
		[ -f "$RAW/${l%%|*}/output_stats.json" ] || continue
		jq -r --arg l "${l#*|}" '"\nFull-output run (\($l)): \(.bytes) bytes of JSON written to a file on disk, \(.data_lines) data lines, \(.gap_lines) gap lines, \(.open_lines) open lines."' "$RAW/${l%%|*}/output_stats.json"
	done
	echo
	echo "Per connection (close lines; bytes / captured / gap):"
	echo
	echo "| run | comm (pid) | proto | egress | ingress | bytes = captured + gap |"
	echo "|---|---|---|---|---|---|"
	for l in "${LOADS[@]}"; do conn_rows "${l%%|*}" "${l#*|}"; done
	fi
	part 3 && parser_report
	part 4 && agent_report
	part 5 && echo && cat "$RAW/http.md"
	part 6 && export_report
	part 7 && enrich_report
	part 8 && { echo; echo '#### 8. Agent with --output nats (tests/bench/agent_nats.sh)'; echo; echo '```'; cat "$RAW/agent_nats.txt"; echo '```'; }
	part 9 && { echo; sed 's/^#/##/; 1s/^### /### 9. /' "$RAW/nats_bench.md"; }
} >"$REPORT"
cat "$REPORT"
log "raw data: $RAW; report: $REPORT"

fail=0
for rc in "$RAW"/*/capture.rc; do
	[ -f "$rc" ] || continue
	[ "$(cat "$rc")" = 0 ] || { log "capture exited non-zero: $rc"; fail=1; }
done
[ "$HTTP_RC" = 0 ] || { log "tests/bench/http_bench.sh failed"; fail=1; }
[ "$NB_RC" = 0 ] || { log "tests/bench/nats_bench.sh failed"; fail=1; }
exit $fail
