#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# NATS pub/sub through a real nats-server on 127.0.0.1, without and with
# `wirespan agent` (issue 9's first benchmark). Part 9 of `make bench`;
# alone: `sudo QUICK=1 make bench-nats` or `sudo bash tests/bench/nats_bench.sh`.
#
# A nats.c publisher and subscriber in one process (tests/bench/nats_lat.c,
# `nats bench` style) send NB_SIZES-byte messages on one subject through an
# application nats-server. The agent runs with its default output, OTLP
# protobuf over NATS, to a second (telemetry) nats-server, and follows only
# the application server's port (--port). For every size:
#
#  1. saturation: nats_lat --rate 0 for NB_SECONDS after a warm-up, without
#     and with the agent; throughput = messages received per second;
#  2. a fixed rate of half the median saturation throughput without the
#     agent, without and with the agent: p50/p99 latency from the intended
#     send time (no coordinated omission; see nats_lat.c).
#
# Runs with the agent also give its CPU (utime+stime from /proc/PID/stat,
# from "ready" until it is idle again after the load) plus the kernel time
# of its BPF programs (bpf_stats run_time_ns, every process's syscalls),
# per span; VmRSS during the load and VmHWM; spans emitted and exported
# against 3 per message (publish, process, deliver), with every drop
# counter. A fresh agent is started for each such run. Within a repetition
# the order without/with alternates. BPF run-time stats are on for all runs
# (a BPF_ENABLE_STATS fd), so with-agent runs pay its per-program timing.
#
# Knobs: QUICK (1: 3 s runs, 1 repetition, ~2.5 min; default: 10 s runs,
# 3 repetitions, ~16 min), NB_SIZES ("16 128 1024 16384"), NB_SECONDS,
# NB_WARMUP_MS, NB_REPS, NB_DRAIN_MAX (s to wait for the agent to go idle,
# 30), NB_AGENT_ARGS (more `wirespan agent` options), NB_FIXED_RATE (msg/s
# of the latency runs, for every size, instead of half of saturation). Prints a markdown
# report (also build/bench/nats/report.md); raw files in build/bench/nats/raw.

set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
WS=$ROOT/build/wirespan
LAT=$ROOT/build/bench/nats_lat
OUT=$ROOT/build/bench/nats
RAW=$OUT/raw
CMD_ENV= # the knobs given, for the report's command line
for v in QUICK NB_SIZES NB_SECONDS NB_WARMUP_MS NB_REPS NB_DRAIN_MAX NB_AGENT_ARGS NB_FIXED_RATE; do
	case ${!v:-} in
	"") ;;
	*" "*) CMD_ENV+="$v='${!v}' " ;;
	*) CMD_ENV+="$v=${!v} " ;;
	esac
done
QUICK=${QUICK:-0}
NB_SIZES=${NB_SIZES:-"16 128 1024 16384"}
NB_SECONDS=${NB_SECONDS:-$([ "$QUICK" = 1 ] && echo 3 || echo 10)}
NB_WARMUP_MS=${NB_WARMUP_MS:-$([ "$QUICK" = 1 ] && echo 500 || echo 1000)}
NB_REPS=${NB_REPS:-$([ "$QUICK" = 1 ] && echo 1 || echo 3)}
NB_DRAIN_MAX=${NB_DRAIN_MAX:-30}
NB_AGENT_ARGS=${NB_AGENT_ARGS:-}
NB_FIXED_RATE=${NB_FIXED_RATE:-} # msg/s of the latency runs instead of half of saturation

log() { echo "nats-bench: $*" >&2; }
die() {
	log "$*"
	exit 1
}

PIDS=()
cleanup() { # TERM to everything we started, 5 s for all of it, then KILL
	[ ${#PIDS[@]} -gt 0 ] || return 0
	kill -TERM "${PIDS[@]}" 2>/dev/null
	for _ in $(seq 1 50); do
		ps -p "$(IFS=,; echo "${PIDS[*]}")" >/dev/null || break
		sleep 0.1
	done
	kill -KILL "${PIDS[@]}" 2>/dev/null
	wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unlist() { # drop pid $1 from PIDS once reaped
	local p keep=()
	for p in "${PIDS[@]}"; do [ "$p" != "$1" ] && keep+=("$p"); done
	PIDS=("${keep[@]}")
}

[ "$(id -u)" = 0 ] || die "needs root (BPF programs, bpf_stats)"
for t in nats-server bpftool jq python3 timeout make; do
	command -v "$t" >/dev/null || die "$t not found"
done
make -s --no-print-directory build/wirespan build/bench/nats_lat >&2 ||
	die "cannot build wirespan and nats_lat (make)"
{ rm -rf "$OUT" && mkdir -p "$RAW"; } || die "cannot create $RAW"

# A port the kernel just handed out on 127.0.0.1 (free at that moment).
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
start_server() { # name: sets PORT, adds the pid to PIDS
	PORT=$(free_port) || die "no free port"
	nats-server -a 127.0.0.1 -p "$PORT" >"$RAW/$1.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 1 100); do
		(echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
		sleep 0.1
	done
	die "nats-server ($1) does not listen on $PORT (see $RAW/$1.log)"
}
start_server app
APP_PORT=$PORT
start_server telemetry
TEL_PORT=$PORT

# BPF run-time stats on while we run, through a BPF_ENABLE_STATS fd held by
# a small process (libbpf's bpf_enable_stats): unlike the
# kernel.bpf_stats_enabled sysctl, another benchmark on this host that puts
# the sysctl back to 0 cannot turn them off under us.
python3 -c 'import ctypes, signal
fd = ctypes.CDLL("libbpf.so.1").bpf_enable_stats(0)  # BPF_STATS_RUN_TIME
print(fd, flush=True)
if fd >= 0:
    signal.pause()' >"$RAW/stats_fd" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do
	[ -s "$RAW/stats_fd" ] && break
	sleep 0.1
done
[ "$(cat "$RAW/stats_fd")" -ge 0 ] 2>/dev/null || die "cannot enable BPF stats: $(cat "$RAW/stats_fd")"

# One JSON object: the agent's CPU ticks (utime+stime), on-CPU ns of all its
# threads (schedstat), memory (kB), and the run time and count of its BPF
# programs (ids in $2, a JSON array).
agent_probe() { # pid prog_ids
	local t0 sched mem bpf
	t0=$(awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null)
	sched=$(cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}')
	mem=$(awk '$1 ~ /^(VmRSS|VmHWM|RssAnon|RssFile):$/ {sub(":", "", $1); printf "\"%s\":%d,", $1, $2}' \
		"/proc/$1/status" 2>/dev/null)
	bpf=$(bpftool prog show -j | jq -c --argjson ids "$2" \
		'[.[] | select(.id as $i | $ids | index($i))] | {ns: (map(.run_time_ns // 0) | add), runs: (map(.run_cnt // 0) | add)}')
	echo "{\"ticks\":${t0:-0},\"sched_ns\":${sched:-0},${mem}\"bpf\":$bpf}"
}

# Until the agent has used less than 5 ms of CPU in 0.5 s (at most
# NB_DRAIN_MAX s): it may still be reading the ring buffer after the load.
agent_idle() { # pid
	local a b
	a=$(cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}')
	for _ in $(seq 1 $((NB_DRAIN_MAX * 2))); do
		sleep 0.5
		b=$(cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}')
		[ $((b - a)) -lt 5000000 ] && return 0
		a=$b
	done
	log "agent $1 still busy after $NB_DRAIN_MAX s"
}

# run NAME SIZE RATE AGENT(0|1): one nats_lat run; files in $RAW/NAME/.
run() {
	local name=$1 size=$2 rate=$3 agent=$4 d=$RAW/$1 ag=0 ids=[] lp rc arc=
	mkdir -p "$d"
	awk '{print $1}' /proc/loadavg >"$d/load"
	# tp_* programs of other wirespan processes: they run on our syscalls too
	bpftool prog show -j | jq '[.[] | select(.name // "" | startswith("tp_"))] | length' >"$d/foreign"
	if [ "$agent" = 1 ]; then
		# shellcheck disable=SC2086 # NB_AGENT_ARGS is a list of options
		"$WS" agent --nats-url "nats://127.0.0.1:$TEL_PORT" --port "$APP_PORT" \
			--node bench $NB_AGENT_ARGS >/dev/null 2>"$d/agent.err" &
		ag=$!
		PIDS+=("$ag")
		for _ in $(seq 1 300); do
			grep -q ready "$d/agent.err" && break
			kill -0 "$ag" 2>/dev/null || die "agent exited before ready (see $d/agent.err)"
			sleep 0.1
		done
		grep -q ready "$d/agent.err" || die "agent not ready after 30 s"
		ids=$(grep -h '^prog_id:' /proc/"$ag"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -un | jq -sc .)
		[ "$ids" != "[]" ] || die "no BPF programs found in agent pid $ag"
		agent_probe "$ag" "$ids" >"$d/probe0.json"
	fi
	timeout $((NB_SECONDS + NB_WARMUP_MS / 1000 + 60)) "$LAT" --url "nats://127.0.0.1:$APP_PORT" \
		--size "$size" --rate "$rate" --seconds "$NB_SECONDS" --warmup-ms "$NB_WARMUP_MS" \
		>"$d/lat.json" 2>"$d/lat.err" &
	lp=$!
	PIDS+=("$lp")
	if [ "$agent" = 1 ]; then # VmRSS every 0.5 s while the load runs
		while kill -0 "$lp" 2>/dev/null; do
			awk '$1 == "VmRSS:" {print $2}' "/proc/$ag/status" >>"$d/rss_kb" 2>/dev/null
			sleep 0.5
		done
	fi
	wait "$lp"
	rc=$?
	unlist "$lp"
	[ "$rc" = 0 ] || log "$name: nats_lat exit $rc (see $d/lat.err)"
	if [ "$agent" = 1 ]; then
		# BPF programs run inside the traced syscalls: their time is
		# taken over the load only (other processes' syscalls would
		# add to it while the agent drains)
		agent_probe "$ag" "$ids" >"$d/probe_load.json"
		agent_idle "$ag"
		agent_probe "$ag" "$ids" >"$d/probe1.json"
		kill -INT "$ag"
		for _ in $(seq 1 200); do
			kill -0 "$ag" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$ag" 2>/dev/null && log "$name: agent killed after 20 s"
		wait "$ag"
		arc=$?
		unlist "$ag"
		grep '^{"type":"metrics"' "$d/agent.err" | tail -n1 >"$d/metrics.json"
		grep '^{"type":"agent_metrics"' "$d/agent.err" | tail -n1 >"$d/agent_metrics.json"
	fi
	jq -nc --arg name "$name" --argjson size "$size" --argjson rate "$rate" --argjson agent "$agent" \
		--argjson rc "$rc" --arg arc "$arc" --argjson load "$(cat "$d/load")" \
		--argjson foreign "$(cat "$d/foreign" 2>/dev/null || echo null)" \
		'{name: $name, size: $size, rate: $rate, agent: $agent, rc: $rc, foreign_progs: $foreign,
		  agent_rc: (if $arc == "" then null else ($arc | tonumber) end), load: $load}' >"$d/run.json"
}

pair() { # kind size rate rep: without and with the agent, order by rep
	local order="0 1" a
	[ $(($4 % 2)) = 0 ] && order="1 0"
	for a in $order; do
		log "$1, $2 B, $([ "$3" = 0 ] && echo "saturation" || echo "$3 msg/s"), rep $4, $([ "$a" = 1 ] && echo with || echo without) the agent"
		run "$1-$2-$a-$4" "$2" "$3" "$a"
	done
}

START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
T0=$(date +%s)
log "sizes $NB_SIZES, $NB_SECONDS s runs after $NB_WARMUP_MS ms warm-up, $NB_REPS repetitions; app nats-server :$APP_PORT, telemetry :$TEL_PORT"
for size in $NB_SIZES; do
	for rep in $(seq 1 "$NB_REPS"); do pair sat "$size" 0 "$rep"; done
	half=$(jq -s '[.[].throughput] | sort | .[length / 2 | floor] / 2 | floor' \
		"$RAW"/sat-"$size"-0-*/lat.json) || die "no saturation result for $size B"
	[ -z "$NB_FIXED_RATE" ] || half=$NB_FIXED_RATE
	[ "$half" -gt 0 ] || die "saturation throughput 0 for $size B"
	for rep in $(seq 1 "$NB_REPS"); do pair lat "$size" "$half" "$rep"; done
done
T1=$(date +%s)

jq -n --arg start "$START" --argjson secs $((T1 - T0)) --arg quick "$QUICK" \
	--arg commit "$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- agent bpf include 2>/dev/null || echo ' (agent/bpf/include modified)')" \
	--arg kernel "$(uname -r)" --argjson nproc "$(nproc)" \
	--arg cpu "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" \
	--argjson seconds "$NB_SECONDS" --argjson warmup "$NB_WARMUP_MS" --argjson reps "$NB_REPS" \
	--arg args "$NB_AGENT_ARGS" --argjson hz "$(getconf CLK_TCK)" --arg fixed "$NB_FIXED_RATE" \
	--arg env "$CMD_ENV" \
	'{start: $start, run_s: $secs, quick: ($quick == "1"), commit: $commit, kernel: $kernel, nproc: $nproc,
	  cpu: $cpu, seconds: $seconds, warmup_ms: $warmup, reps: $reps, agent_args: $args, hz: $hz,
	  env: $env, fixed_rate: (if $fixed == "" then null else ($fixed | tonumber) end)}' >"$RAW/meta.json"
python3 tests/bench/nats_bench_report.py "$RAW" | tee "$OUT/report.md"
rc=${PIPESTATUS[0]}
log "report: $OUT/report.md; raw: $RAW"
exit "$rc"
