#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# The resident memory of the real `wirespan agent` at steady state with
# MEM_PODS pods and MEM_PROCS cached processes (issue 6: <= 64 MiB with 10k
# of each; docs/BENCHMARKS.md, "Agent memory with 10k pods and 10k
# processes"). Root. Run alone, or as part of `make bench` (part 7).
#
#  1. tests/peers/py/fake_apiserver.py serves MEM_PODS pods made from the
#     pods recorded from real clusters in tests/fixtures/k8s/recorded/
#     (--synth-from: own uid, name, namespace, owner, IPs, container ids;
#     the rest of each object, managedFields included, as recorded) with
#     list+watch; the agent lists them in pages of 50 (WS_K8S_PAGE_LIMIT) and then watches.
#  2. A real nats-server; `wirespan agent --output stdout --port <its port>
#     --k8s-api ...` (spans to /dev/null).
#  3. One kubepods cgroup per pod (systemd-driver names, the pod's first
#     container) under the cgroup2 mount, and MEM_PROCS real processes
#     (tests/bench/idle_clients.c), process i in pod i's cgroup, each with
#     its own command line; each connects to nats-server, sends CONNECT, a
#     PUB and a PING, reads the PONG, closes, and stays alive: the agent
#     looks each one up (a cache miss: /proc, cgroup, pod) and caches it.
#  4. Steady state: agent_metrics (SIGUSR1) shows every pod in the store and
#     every process in the cache; then MEM_SETTLE seconds with nothing new,
#     then VmRSS, VmHWM, RssAnon/RssFile, /proc/PID/smaps grouped (ring
#     buffer and BPF maps, heap arenas, thread stacks, libraries), and the
#     agent's own heap figures (agent_metrics "memory": mallinfo2, and the
#     bytes the pod store and the process cache hold).
#  5. Pod churn (tests/bench/pod_churn.py), MEM_CHURN_MINUTES minutes after
#     the steady state: MEM_CHURN_PER_MIN pods created a minute and as many
#     of the oldest deleted (spread over the minute, through the fake API
#     server's /control/add and /control/delete, so the watch streams
#     ADDED/DELETED events), each new pod with a process in its cgroup when
#     the pod it replaces had one (the deleted pod's process gets SIGTERM);
#     the agent's VmRSS and agent_metrics every MEM_CHURN_SAMPLE seconds.
#  6. For the breakdown the same agent is measured at three points: no pods
#     yet (--no-k8s, idle), pods listed (no processes), pods + processes.
#
# Knobs: MEM_PODS (10000), MEM_PROCS (10000), MEM_SETTLE (10 s),
# MEM_CHURN_MINUTES (3; 0: no churn), MEM_CHURN_PER_MIN (1000),
# MEM_CHURN_SAMPLE (10 s), MEM_CHURN_PROCS (1; 0: new pods without
# processes), MEM_OUT
# (build/bench/raw/identity-mem), MEM_AGENT_ARGS (more agent options for
# both agents, e.g. "--ringbuf-size 4194304" to see the ring buffer's
# share). Writes $MEM_OUT/result.json and prints a markdown section on
# stdout.

set -uo pipefail
# WS_ROOT: the checkout (to run a copy of this script from elsewhere)
cd "${WS_ROOT:-$(dirname "$0")/../..}" || exit 1
ROOT=$(pwd)
# WS_BIN: another wirespan binary to measure (e.g. an older build)
WS=${WS_BIN:-$ROOT/build/wirespan}
MEM_PODS=${MEM_PODS:-10000}
MEM_PROCS=${MEM_PROCS:-10000}
MEM_SETTLE=${MEM_SETTLE:-10}
MEM_OUT=${MEM_OUT:-$ROOT/build/bench/raw/identity-mem}
MEM_AGENT_ARGS=${MEM_AGENT_ARGS:-}
MEM_CHURN_MINUTES=${MEM_CHURN_MINUTES:-3}
MEM_CHURN_PER_MIN=${MEM_CHURN_PER_MIN:-1000}
MEM_CHURN_SAMPLE=${MEM_CHURN_SAMPLE:-10}
MEM_CHURN_PROCS=${MEM_CHURN_PROCS:-1}
NODE=bench-node-1

say() { echo "identity_mem: $*" >&2; }
fail() {
	say "$*"
	exit 1
}

[ "$(id -u)" -eq 0 ] || fail "needs root (BPF, cgroups)"
[ -x "$WS" ] || fail "$WS not built (make)"
for t in jq nats-server python3 cc; do
	command -v "$t" >/dev/null || fail "missing $t"
done
CGROOT=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/self/mounts)
[ -n "$CGROOT" ] || fail "no cgroup2 mount"
rm -rf "$MEM_OUT"
mkdir -p "$MEM_OUT" || fail "cannot create $MEM_OUT"

MY_PIDS=()
CGDIRS=$MEM_OUT/cgroups.txt
cleanup() {
	local p i
	for p in "${MY_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${MY_PIDS[@]}"; do
		for i in $(seq 1 100); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	# the cgroups, innermost first (their processes are gone)
	[ -s "$MEM_OUT/churn-cgroups.made" ] && rm_cgroups "$MEM_OUT/churn-cgroups.made"
	[ -s "$CGDIRS.made" ] && rm_cgroups "$CGDIRS.made"
}

# rm_cgroups FILE: rmdir the directories FILE lists, last first (retrying
# a few times: a cgroup goes away a moment after its last process)
rm_cgroups() {
	python3 - "$1" <<'EOF'
import os, sys, time
left = [l.strip() for l in open(sys.argv[1]) if l.strip()][::-1]
for _ in range(20):
    keep = []
    for d in left:
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError:
            keep.append(d)
    left = keep
    if not left:
        break
    time.sleep(0.5)
if left:
    print("identity_mem: %d cgroups not removed, e.g. %s" % (len(left), left[0]), file=sys.stderr)
EOF
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cc -O2 -std=c11 -Wall -Wextra -Werror -static tests/bench/idle_clients.c -o "$MEM_OUT/idle_clients" 2>"$MEM_OUT/cc.err" ||
	cc -O2 -std=c11 -Wall -Wextra -Werror tests/bench/idle_clients.c -o "$MEM_OUT/idle_clients" 2>"$MEM_OUT/cc.err" ||
	fail "could not build idle_clients: $(cat "$MEM_OUT/cc.err")"

# ---- the fake API server ----------------------------------------------------
say "fake API server: $MEM_PODS pods from tests/fixtures/k8s/recorded/"
python3 tests/peers/py/fake_apiserver.py --synth "$MEM_PODS" --synth-from tests/fixtures/k8s/recorded \
	--index "$MEM_OUT/pods.txt" --node "$NODE" --bookmark-interval 5 \
	>"$MEM_OUT/apiserver.out" 2>"$MEM_OUT/apiserver.err" &
MY_PIDS+=($!)
for _ in $(seq 1 1200); do
	grep -q ready "$MEM_OUT/apiserver.out" 2>/dev/null && break
	sleep 0.1
done
API_PORT=$(jq -r .port "$MEM_OUT/apiserver.out" 2>/dev/null) || fail "fake API server did not start"
API_BYTES=$(curl -s "http://127.0.0.1:$API_PORT/api/v1/pods?fieldSelector=spec.nodeName%3D$NODE" | wc -c)

# ---- the cgroups ------------------------------------------------------------
say "making $MEM_PROCS kubepods cgroups under $CGROOT"
awk -v n="$MEM_PROCS" -v root="$CGROOT" 'NR <= n { print ($3 == "-" ? "" : root "/" $3) }' "$MEM_OUT/pods.txt" >"$CGDIRS"
python3 - "$CGDIRS" "$CGROOT" >"$CGDIRS.made" <<'EOF' || fail "could not make the cgroups"
import os, sys
root = sys.argv[2]
made = []
for line in open(sys.argv[1]):
    d = line.strip()
    if not d:
        continue
    parts = os.path.relpath(d, root).split("/")
    p = root
    for part in parts:
        p = os.path.join(p, part)
        if not os.path.isdir(p):
            os.mkdir(p)
            print(p, flush=True)
EOF

# ---- nats-server and the agent ------------------------------------------------
NATS_PORT=$(free_port)
nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$MEM_OUT/nats.log" 2>&1 &
MY_PIDS+=($!)
for i in $(seq 1 101); do
	[ "$i" = 101 ] && fail "nats-server did not start: $(head -n3 "$MEM_OUT/nats.log")"
	(echo >"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break
	sleep 0.1
done

# agent_metrics NAME: SIGUSR1, wait for the next line, save it as NAME.json
agent_metrics() {
	local n k
	k=$(grep -c '"type":"agent_metrics"' "$MEM_OUT/agent.err")
	kill -USR1 "$AGENT"
	# the new line, once whole (the agent may still be writing it)
	for _ in $(seq 1 300); do
		n=$(grep -c '"type":"agent_metrics"' "$MEM_OUT/agent.err")
		if [ "$n" -gt "$k" ]; then
			grep '"type":"agent_metrics"' "$MEM_OUT/agent.err" | tail -n1 >"$MEM_OUT/$1.json"
			jq -e .type "$MEM_OUT/$1.json" >/dev/null 2>&1 && return 0
		fi
		sleep 0.1
	done
	say "no agent_metrics line after SIGUSR1"
	return 1
}

kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# snapshot NAME: the agent's memory now
snapshot() {
	local d=$MEM_OUT/$1
	mkdir -p "$d"
	agent_metrics "$1/metrics"
	cp "/proc/$AGENT/status" "$d/status"
	cp "/proc/$AGENT/smaps_rollup" "$d/smaps_rollup"
	cp "/proc/$AGENT/smaps" "$d/smaps"
	# smaps grouped: ring buffer / BPF maps, heap arenas, stacks, libraries
	python3 - "$d/smaps" >"$d/groups.tsv" <<'EOF'
import re, sys
rss, pd, g = {}, {}, None
for line in open(sys.argv[1]):
    m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$", line)
    if m:
        size, name = int(m.group(2), 16) - int(m.group(1), 16), m.group(3).strip()
        if name.startswith("anon_inode:bpf") and size > (1 << 20):
            g = "bpf ring buffer (its data is mapped twice)"
        elif name.startswith("anon_inode:bpf"):
            g = "other bpf maps"
        elif name == "[heap]":
            g = "heap (main arena)"
        elif name == "[stack]":
            g = "main thread stack"
        elif name.endswith("/wirespan"):
            g = "wirespan binary"
        elif ".so" in name:
            g = "shared libraries"
        elif name == "":
            g = "anonymous (thread arenas, stacks, big mallocs)"
        else:
            g = "other: " + name
        continue
    f = line.split()
    if f and f[0] == "Rss:":
        rss[g] = rss.get(g, 0) + int(f[1])
    elif f and f[0] == "Private_Dirty:":
        pd[g] = pd.get(g, 0) + int(f[1])
for k in sorted(rss, key=lambda k: -rss[k]):
    if rss[k]:
        print("%s\t%d\t%d" % (k, rss[k], pd.get(k, 0)))
EOF
	jq -n --arg name "$1" --argjson rss "$(kb "$AGENT" VmRSS)" --argjson hwm "$(kb "$AGENT" VmHWM)" \
		--argjson anon "$(kb "$AGENT" RssAnon)" --argjson file "$(kb "$AGENT" RssFile)" \
		--argjson m "$(cat "$d/metrics.json")" \
		--argjson groups "$(jq -Rn '[inputs | split("\t") | {group: .[0], rss_kb: (.[1] | tonumber), private_dirty_kb: (.[2] | tonumber)}]' "$d/groups.tsv")" \
		--arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
		'{name: $name, rss_kb: $rss, hwm_kb: $hwm, anon_kb: $anon, file_kb: $file, load: $load,
		  pods: $m.k8s.pods, cached: $m.identity.cached, memory: $m.memory, groups: $groups}' >"$d/snap.json"
	say "$1: VmRSS $(kb "$AGENT" VmRSS) kB, VmHWM $(kb "$AGENT" VmHWM) kB, pods $(jq .k8s.pods "$d/metrics.json"), cached $(jq .identity.cached "$d/metrics.json")"
}

# wait_for JQ-EXPR TIMEOUT_S: until the agent's metrics satisfy it
wait_for() {
	local i
	for i in $(seq 1 "$2"); do
		agent_metrics poll
		jq -e "$1" "$MEM_OUT/poll.json" >/dev/null 2>&1 && return 0
		kill -0 "$AGENT" 2>/dev/null || fail "the agent exited: $(tail -n5 "$MEM_OUT/agent.err")"
		sleep 1
	done
	return 1
}

say "agent: --k8s-api (fake), --port $NATS_PORT"
# shellcheck disable=SC2086 # MEM_AGENT_ARGS: words
"$WS" agent $MEM_AGENT_ARGS --output stdout --port "$NATS_PORT" --k8s-api "http://127.0.0.1:$API_PORT" --k8s-token "" \
	--node-name "$NODE" >/dev/null 2>"$MEM_OUT/agent.err" &
AGENT=$!
MY_PIDS+=("$AGENT")
for _ in $(seq 1 600); do
	grep -q ready "$MEM_OUT/agent.err" 2>/dev/null && break
	kill -0 "$AGENT" 2>/dev/null || fail "the agent exited: $(tail -n5 "$MEM_OUT/agent.err")"
	sleep 0.1
done
wait_for ".k8s.pods == $MEM_PODS" 300 || fail "the store never held $MEM_PODS pods"
sleep "$MEM_SETTLE"
snapshot pods

say "starting $MEM_PROCS processes"
T0=$(date +%s.%N)
"$MEM_OUT/idle_clients" "$NATS_PORT" "$CGDIRS" "$MEM_PROCS" >"$MEM_OUT/clients.out" 2>"$MEM_OUT/clients.err" &
CLIENTS=$!
MY_PIDS=("$CLIENTS" "${MY_PIDS[@]}")
for _ in $(seq 1 3000); do
	grep -q ready "$MEM_OUT/clients.out" 2>/dev/null && break
	kill -0 "$CLIENTS" 2>/dev/null || fail "idle_clients exited: $(cat "$MEM_OUT/clients.err")"
	sleep 0.1
done
T1=$(date +%s.%N)
jq -e ".ok == $MEM_PROCS" "$MEM_OUT/clients.out" >/dev/null || fail "not every process made its traffic: $(cat "$MEM_OUT/clients.out")"
wait_for ".identity.cached >= $MEM_PROCS" 120 || fail "the agent never cached $MEM_PROCS processes: $(jq -c .identity "$MEM_OUT/poll.json")"
# steady state: nothing new for MEM_SETTLE seconds
prev=
for _ in $(seq 1 30); do
	sleep "$MEM_SETTLE"
	agent_metrics poll
	cur=$(jq -c '[.identity.lookups, .identity.cached, .k8s.pods, .spans_out]' "$MEM_OUT/poll.json")
	[ "$cur" = "$prev" ] && break
	prev=$cur
done
snapshot steady

# ---- pod churn ------------------------------------------------------------------
if [ "$MEM_CHURN_MINUTES" != 0 ]; then
	say "pod churn: $MEM_CHURN_PER_MIN pods created and as many deleted a minute for $MEM_CHURN_MINUTES min"
	NO_PROCS=
	[ "$MEM_CHURN_PROCS" = 0 ] && NO_PROCS=--no-procs
	# shellcheck disable=SC2086 # NO_PROCS: one word or none
	python3 tests/bench/pod_churn.py --api "$API_PORT" --index "$MEM_OUT/pods.txt" \
		--synth-from tests/fixtures/k8s/recorded --node "$NODE" --procs "$MEM_PROCS" --cgroot "$CGROOT" \
		--clients "$MEM_OUT/idle_clients" --nats-port "$NATS_PORT" $NO_PROCS --agent "$AGENT" \
		--agent-err "$MEM_OUT/agent.err" --minutes "$MEM_CHURN_MINUTES" --per-min "$MEM_CHURN_PER_MIN" \
		--sample "$MEM_CHURN_SAMPLE" --out "$MEM_OUT" 2>"$MEM_OUT/churn.err" &
	CHURN=$!
	MY_PIDS=("$CHURN" "${MY_PIDS[@]}")
	wait "$CHURN" || fail "pod churn failed: $(tail -n5 "$MEM_OUT/churn.err")"
	kill -0 "$AGENT" 2>/dev/null || fail "the agent exited during the churn: $(tail -n5 "$MEM_OUT/agent.err")"
fi
kill -INT "$AGENT"
wait "$AGENT"
echo $? >"$MEM_OUT/agent.rc"
grep '"type":"agent_metrics"' "$MEM_OUT/agent.err" | tail -n1 >"$MEM_OUT/final.json"
grep '"type":"metrics"' "$MEM_OUT/agent.err" | tail -n1 >"$MEM_OUT/final-capture.json"
mv "$MEM_OUT/agent.err" "$MEM_OUT/agent-k8s.err"

# the same agent without Kubernetes and without processes, for the floor
say "agent: --no-k8s, idle"
# shellcheck disable=SC2086
"$WS" agent $MEM_AGENT_ARGS --output stdout --port "$NATS_PORT" --no-k8s >/dev/null 2>"$MEM_OUT/agent.err" &
AGENT=$!
MY_PIDS+=("$AGENT")
for _ in $(seq 1 600); do
	grep -q ready "$MEM_OUT/agent.err" 2>/dev/null && break
	sleep 0.1
done
sleep "$MEM_SETTLE"
snapshot floor
kill -INT "$AGENT"
wait "$AGENT"

jq -n --slurpfile f "$MEM_OUT/floor/snap.json" --slurpfile p "$MEM_OUT/pods/snap.json" \
	--slurpfile s "$MEM_OUT/steady/snap.json" --slurpfile fin "$MEM_OUT/final.json" \
	--slurpfile cap "$MEM_OUT/final-capture.json" \
	--argjson churn "$(jq 'del(.samples)' "$MEM_OUT/churn.json" 2>/dev/null || echo null)" \
	--argjson pods "$MEM_PODS" --argjson procs "$MEM_PROCS" --argjson api_bytes "$API_BYTES" \
	--arg date "$(date -u +%Y-%m-%dT%H:%MZ)" --arg commit "$(git rev-parse --short HEAD)" \
	--arg start_s "$(echo "$T1 - $T0" | bc)" --arg rc "$(cat "$MEM_OUT/agent.rc")" \
	'{date: $date, commit: $commit, pods: $pods, procs: $procs, podlist_bytes: $api_bytes,
	  procs_start_s: ($start_s | tonumber), agent_rc: ($rc | tonumber),
	  floor: $f[0], with_pods: $p[0], steady: $s[0], final_metrics: $fin[0],
	  rb_full_events: ($cap[0].kernel.rb_full_events // null), churn: $churn}' >"$MEM_OUT/result.json"

# ---- report -------------------------------------------------------------------
mib() { jq -r "($1) / 1024 * 10 | round / 10" "$MEM_OUT/result.json"; }
echo
echo "#### Agent memory with $MEM_PODS pods and $MEM_PROCS cached processes ($(jq -r .date "$MEM_OUT/result.json"), commit $(jq -r .commit "$MEM_OUT/result.json"))"
echo
echo "\`${MEM_AGENT_ARGS:+MEM_AGENT_ARGS=\"$MEM_AGENT_ARGS\" }bash tests/bench/identity_mem.sh\`; 1-min/5-min/15-min load average at the steady-state snapshot: $(jq -r .steady.load "$MEM_OUT/result.json") (2 cores, shared)."
echo "The fake API server's PodList for the node is $(mib '.podlist_bytes / 1024') MiB of JSON; the $MEM_PROCS processes took $(jq -r '.procs_start_s | . * 10 | round / 10' "$MEM_OUT/result.json") s to start and make their traffic (ring-buffer events lost meanwhile: $(jq -r '.rb_full_events' "$MEM_OUT/result.json"))."
echo
echo "| agent state | pods in store | processes cached | VmRSS | VmHWM | RssAnon | RssFile | heap in use | heap free (arenas) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for k in floor with_pods steady; do
	jq -r --arg k "$k" '.[$k] as $s |
		def m(x): if x == null then "–" else ((x / 1024 * 10 | round / 10 | tostring) + " MiB") end;
		def mb(x): if x == null then "–" else ((x / 1048576 * 10 | round / 10 | tostring) + " MiB") end;
		"| \({floor: "no Kubernetes, idle", with_pods: "pods listed, watching", steady: "pods + processes, steady"}[$k]) | \($s.pods // "–") | \($s.cached // "–") | \(m($s.rss_kb)) | \(m($s.hwm_kb)) | \(m($s.anon_kb)) | \(m($s.file_kb)) | \(mb($s.memory.heap_in_use)) | \(mb($s.memory.heap_free)) |"' "$MEM_OUT/result.json"
done
echo
echo "Where the steady-state RSS is (/proc/PID/smaps, grouped):"
echo
echo "| mapping | Rss | of which private dirty |"
echo "|---|---:|---:|"
jq -r '.steady.groups[] | "| \(.group) | \(.rss_kb / 1024 * 10 | round / 10) MiB | \(.private_dirty_kb / 1024 * 10 | round / 10) MiB |"' "$MEM_OUT/result.json"
echo
jq -r '.steady.memory as $m | if $m == null then empty else
	"The agent'"'"'s own count at steady state: pod store \($m.k8s_store_bytes / 1048576 * 10 | round / 10) MiB (\($m.k8s_store_bytes / $m.k8s_pods | round) B per pod), process cache \($m.identity_bytes / 1048576 * 10 | round / 10) MiB (\($m.identity_bytes / ($m.identity_procs | if . == 0 then 1 else . end) | round) B per process), malloc arenas \($m.heap_arena / 1048576 * 10 | round / 10) MiB + \($m.heap_mmap / 1048576 * 10 | round / 10) MiB in mmapped chunks." end' "$MEM_OUT/result.json"
jq -r '"\nTarget: VmRSS at steady state ≤ 64 MiB: \(.steady.rss_kb / 1024 * 10 | round / 10) MiB, " + (if .steady.rss_kb <= 65536 then "met" else "**missed**" end) + " (peak VmHWM so far \(.steady.hwm_kb / 1024 * 10 | round / 10) MiB; during the pod list \(.with_pods.hwm_kb / 1024 * 10 | round / 10) MiB); agent exit code \(.agent_rc)."' "$MEM_OUT/result.json"

[ -s "$MEM_OUT/churn.json" ] || exit 0
echo
echo "#### Pod churn: $MEM_CHURN_PER_MIN pods created and $MEM_CHURN_PER_MIN deleted a minute for $MEM_CHURN_MINUTES min, after the steady state"
echo
jq -r '"`MEM_PODS=\(.first_pods) MEM_CHURN_MINUTES=\(.minutes) MEM_CHURN_PER_MIN=\(.per_min) bash tests/bench/identity_mem.sh` (the churn phase; tests/bench/pod_churn.py): one pod deleted (its process, if any, ended first) and one created every \(60 / .per_min * 1000 | round) ms through the fake API server, the new pod with a real process in its cgroup when the one it replaces had one; the agent sampled every \(.sample_s) s. 1-min load average at the start and the end of the churn: \(.load_start), \(.load_end) (2 cores, shared)."' "$MEM_OUT/churn.json"
echo
echo "| measure | value |"
echo "|---|---:|"
jq -r 'def m(x): if x == null then "–" else ((x / 1024 * 10 | round / 10 | tostring) + " MiB") end;
	def mb(x): if x == null then "–" else ((x / 1048576 * 10 | round / 10 | tostring) + " MiB") end;
	.k8s_delta as $k | .identity_delta as $i | .driver as $d |
	"| pods created / deleted by the churn (in \(.wall_s) s; the driver at most \(.driver.behind_max_s * 1000 | round) ms behind its schedule) | \($d.created) / \($d.deleted) |",
	"| VmRSS at the start of the churn | \(m(.rss_start_kb)) |",
	"| VmRSS max over the samples | \(m(.rss_max_kb)) |",
	"| VmRSS at the end (after the watch caught up, \(.settle_s) s) | \(m(.rss_end_kb)) |",
	"| VmRSS growth, linear fit of the churn'"'"'s second half | \(.rss_growth_mib_per_h) MiB/hour |",
	"| heap in use (mallinfo2), start → end; fit of the second half | \(mb(.heap_start)) → \(mb(.heap_end)); \(.heap_growth_mib_per_h) MiB/hour |",
	"| pod store bytes, start → end | \(mb(.store_bytes_start)) → \(mb(.store_bytes_end)) |",
	"| process cache bytes, start → end (processes cached) | \(mb(.identity_bytes_start)) → \(mb(.identity_bytes_end)) (\(.cached_start) → \(.cached_end)) |",
	"| pods in the store at the end / in the API server / expected | \(.store_pods_end) / \(.api_pods_end) / \(.expected_pods_end) |",
	"| watch kept up (store = API server at the end; most events made but not yet applied at a sample) | \(if .caught_up then "yes" else "**no**" end); \(.lag_max_events) |",
	"| watch events applied: ADDED / DELETED / MODIFIED / BOOKMARK | \($k.added) / \($k.deleted) / \($k.modified) / \($k.bookmarks) |",
	"| lists, watches (re)started, 410 Gone, watch drops | \($k.lists) / \($k.watches) / \($k.gone) / \($k.watch_dropped) |",
	"| errors: http, net, list, watch, bad events, events too long, bad pods, nomem | \($k.http_errors) / \($k.net_errors) / \($k.list_errors) / \($k.watch_errors) / \($k.bad_events) / \($k.events_too_long) / \($k.bad_pods) / \($k.nomem) |",
	"| pods evicted / purged from the store; the watcher'"'"'s malloc_trim calls (k8s.trims) | \($k.pods_evicted) / \($k.pods_purged); \($k.trims // "–") |",
	"| churn processes started / reported their PONG / failed; processes ended | \($d.procs_started) / \($d.procs_ok) / \($d.procs_failed); \($d.procs_stopped) |",
	"| process cache: misses / forgotten at exit / swept / evicted | \($i.misses) / \($i.forgotten) / \($i.swept) / \($i.evicted) |"' "$MEM_OUT/churn.json"
echo
jq -r '"VmRSS at each sample (MiB): " + ([.samples[] | .rss_kb / 1024 * 10 | round / 10 | tostring] | join(", ")) + "; pods in the store: " + ([.samples[] | (.k8s.pods // "–") | tostring] | join(", ")) + "."' "$MEM_OUT/churn.json"
