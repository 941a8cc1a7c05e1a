# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
#
# Parts 3 and 4 of `make bench`; sourced by tests/bench/run.sh, which
# provides the helpers used here (log, die, PIDS, start_nats, stop_nats,
# wait_quiet, snap, delta, proc_ticks, proc_sched_ns, proc_kb, stop_capture,
# JQ_MEDIAN) and the variables (ROOT, WS, OUT, RAW, HZ, QUICK, LOAD_SECONDS).
#
#  3. The NATS parser alone: tests/bench/bench_nats_parser.c (cc -O2), run
#     PARSER_REPS times; MB/s and frames/s per case, median and min-max.
#  4. The whole agent: `wirespan agent --output stdout --port P` while
#     nats_pub publishes 128 B messages at each of AGENT_RATES msg/s for
#     LOAD_SECONDS to a real nats-server with one subscriber (all on this
#     host, so each message should give one publish, one process and one
#     deliver span). Output to /dev/null; AGENT_FILE_RATES run again with the
#     output in a file whose spans are counted by name (then deleted), to
#     check the agent's counters against what it wrote.
#
# Knobs: PARSER_SECONDS, PARSER_REPS, PARSER_FEED (feed sizes), AGENT_RATES,
# AGENT_FILE_RATES ("" = none), AGENT_DRAIN_MAX (s to wait for the agent to
# go idle after the publisher), AGENT_KEEP_OUTPUT=1 (keep the span files),
# AGENT_ARGS (more options for every `wirespan agent` run).

PARSER_SECONDS=${PARSER_SECONDS:-$([ "$QUICK" = 1 ] && echo 1 || echo 2)}
PARSER_REPS=${PARSER_REPS:-$([ "$QUICK" = 1 ] && echo 3 || echo 5)}
PARSER_FEED=${PARSER_FEED-$([ "$QUICK" = 1 ] && echo 16384 || echo "16384 1460 65536")}
AGENT_RATES=${AGENT_RATES-$([ "$QUICK" = 1 ] && echo "10000 50000 100000" || echo "10000 20000 50000 100000")}
AGENT_FILE_RATES=${AGENT_FILE_RATES-50000}
AGENT_DRAIN_MAX=${AGENT_DRAIN_MAX:-60}
AGENT_KEEP_OUTPUT=${AGENT_KEEP_OUTPUT:-0}
AGENT_ARGS=${AGENT_ARGS:-} # more `wirespan agent` options, e.g. "--max-capture 32768"
AGENT_SIZE=128 # message payload bytes (nats_pub --size)
# Wire bytes of one message on each hop (nats_pub: subject "bench", one
# subscription, sid 1): "PUB bench 128\r\n" + payload + CRLF, and
# "MSG bench 1 128\r\n" + payload + CRLF.
AGENT_PUB_FRAME=$((${#AGENT_SIZE} + 12 + AGENT_SIZE + 2))
AGENT_MSG_FRAME=$((${#AGENT_SIZE} + 14 + AGENT_SIZE + 2))
AGENT_RUNS=()

# ---- part 3: the NATS parser alone ------------------------------------------

parser_part() {
	local d=$RAW/parser feed i
	mkdir -p "$d"
	cc -O2 -std=c11 -D_GNU_SOURCE -Iinclude -Iagent tests/bench/bench_nats_parser.c \
		agent/proto/nats.c -ljson-c -o "$OUT/bench_nats_parser" 2>"$d/cc.err" ||
		{ cat "$d/cc.err" >&2; die "could not build tests/bench/bench_nats_parser.c (needs libjson-c-dev)"; }
	for feed in $PARSER_FEED; do
		for i in $(seq 1 "$PARSER_REPS"); do
			awk '{print $1}' /proc/loadavg >>"$d/loadavg"
			"$OUT/bench_nats_parser" "$PARSER_SECONDS" "$feed" >>"$d/out.txt" ||
				die "bench_nats_parser $PARSER_SECONDS $feed failed (rep $i)"
		done
	done
	# PUB   170 B frame (128 B payload), feed  16384 B:   2636.8 MB/s  15.51 M frames/s
	awk '{gsub(/[():,]/, ""); print "{\"case\":\"" $1 "\",\"frame\":" $2 ",\"payload\":" $5 \
		",\"feed\":" $9 ",\"mbs\":" $11 ",\"mfs\":" $13 "}"}' "$d/out.txt" >"$d/runs.jsonl"
}

parser_report() {
	local d=$RAW/parser
	echo
	echo "### 3. NATS parser alone (tests/bench/bench_nats_parser.c, cc -O2)"
	echo
	echo "A 4 MiB stream of one frame type repeated, fed in chunks of the feed size (frames"
	echo "cross chunk boundaries), for $PARSER_SECONDS s per case, $PARSER_REPS times; MB/s counts wire"
	echo "bytes (10^6 B). Median of the $PARSER_REPS repetitions (min–max). Target: ≥ 1 GB/s"
	echo "(1000 MB/s) on 128-byte messages. 1-min load average during these runs (min, max):"
	echo "$(sort -n "$d/loadavg" | awk 'NR == 1 {a = $1} {b = $1} END {print a ", " b}')."
	echo
	echo "| case | frame bytes (128 B payload) | feed bytes | MB/s | M frames/s | ≥ 1000 MB/s |"
	echo "|---|---:|---:|---:|---:|---|"
	jq -rs "$JQ_MEDIAN"'
		group_by([.feed, .case]) | sort_by(.[0].feed != 16384, .[0].feed, ({PUB: 0, MSG: 1, HMSG: 2}[.[0].case] // 9)) | .[] |
		([.[].mbs] | median) as $m | ([.[].mfs] | median) as $f |
		"| \(.[0].case) | \(.[0].frame) | \(.[0].feed) | \($m * 10 | round / 10) (\([.[].mbs] | min)–\([.[].mbs] | max)) | " +
		"\($f * 100 | round / 100) (\([.[].mfs] | min)–\([.[].mfs] | max)) | \(if $m >= 1000 then "met" else "**missed**" end) |"
	' "$d/runs.jsonl"
}

# ---- part 4: the whole agent --------------------------------------------------

# Wait (at most AGENT_DRAIN_MAX s) until the agent stops using the CPU: less
# than 5 ms on-CPU in 0.5 s. It may still be working through the ring buffer
# when the publisher is done. Prints the seconds waited.
agent_wait_idle() { # pid
	local a b i t0
	t0=$(date +%s.%N)
	a=$(proc_sched_ns "$1")
	for i in $(seq 1 $((AGENT_DRAIN_MAX * 2))); do
		sleep 0.5
		b=$(proc_sched_ns "$1")
		[ $((b - a)) -lt 5000000 ] && break
		a=$b
	done
	awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b - a}'
}

# agent_run NAME RATE SECONDS SINK(null|file)
agent_run() {
	local name=$1 rate=$2 secs=$3 sink=$4 d out i t0 tp t1 tk0 tk1 ss0 ss1 s0 s1 pp pubrc idle
	d=$RAW/$name
	mkdir -p "$d"
	wait_quiet
	start_nats "$d"
	awk '{print $1}' /proc/loadavg | tee "$d/loadavg" >>"$RAW/loadavg"
	# shellcheck disable=SC2034 # used by snap and stop_capture (run.sh)
	CAP_DIR=$d
	out=/dev/null
	[ "$sink" = file ] && out=$d/spans.jsonl
	# shellcheck disable=SC2086 # AGENT_ARGS is a list of options
	"$WS" agent --output stdout --port "$NATS_PORT" $AGENT_ARGS >"$out" 2>"$d/agent.err" &
	CAP_PID=$!
	PIDS+=("$CAP_PID")
	for i in $(seq 1 600); do
		grep -q ready "$d/agent.err" 2>/dev/null && break
		kill -0 "$CAP_PID" 2>/dev/null || { cat "$d/agent.err" >&2; die "agent ($name) exited before ready"; }
		sleep 0.05
	done
	grep -q ready "$d/agent.err" || die "agent ($name) not ready after 30 s"
	PROG_IDS=$(grep -h '^prog_id:' /proc/"$CAP_PID"/fdinfo/* 2>/dev/null |
		awk '{print $2}' | sort -un | jq -sc .)
	[ "$PROG_IDS" != "[]" ] || die "no BPF program fds found in agent pid $CAP_PID"
	proc_kb "$CAP_PID" VmRSS >"$d/rss_ready_kb"
	tk0=$(proc_ticks "$CAP_PID")
	ss0=$(proc_sched_ns "$CAP_PID")
	s0=$(snap)
	t0=$(date +%s.%N)
	timeout $((secs + 60)) "$OUT/nats_pub" --url "nats://127.0.0.1:$NATS_PORT" \
		--rate "$rate" --seconds "$secs" --size "$AGENT_SIZE" >"$d/pub.json" 2>"$d/pub.err" &
	pp=$!
	PIDS+=("$pp")
	wait "$pp"
	pubrc=$?
	forget_pid "$pp"
	tp=$(date +%s.%N)
	# The agent may still be reading the ring buffer: wait until it is idle,
	# so that its CPU time covers every span of the run.
	idle=$(agent_wait_idle "$CAP_PID")
	t1=$(date +%s.%N)
	s1=$(snap)
	tk1=$(proc_ticks "$CAP_PID")
	ss1=$(proc_sched_ns "$CAP_PID")
	local hwm rss
	hwm=$(proc_kb "$CAP_PID" VmHWM)
	rss=$(proc_kb "$CAP_PID" VmRSS)
	stop_nats
	sleep 0.3
	stop_capture
	grep '^{"type":"metrics"' "$d/agent.err" | tail -n1 >"$d/metrics.json"
	grep '^{"type":"agent_metrics"' "$d/agent.err" | tail -n1 >"$d/agent_metrics.json"
	[ -s "$d/metrics.json" ] || echo '{}' >"$d/metrics.json"
	[ -s "$d/agent_metrics.json" ] || echo '{}' >"$d/agent_metrics.json"
	if [ "$sink" = file ]; then
		# Spans by name as written (one OTLP/JSON line holds up to 64
		# spans; every span has exactly one "kind" field).
		{
			echo "{\"bytes\": $(stat -c %s "$out"), \"lines\": $(wc -l <"$out"),"
			echo "\"spans\": $(LC_ALL=C grep -oF '"kind":' "$out" | wc -l),"
			echo "\"by_name\": "
			LC_ALL=C grep -oE '"name":"(publish|process|deliver|send|receive) [^"]*"' "$out" |
				awk '{sub(/^"name":"/, ""); sub(/ .*/, ""); c[$0]++} END {
					printf "{"; s = ""; for (k in c) {printf "%s\"%s\": %d", s, k, c[k]; s = ","} print "}"}'
			echo "}"
		} >"$d/output_stats.json"
		[ "$AGENT_KEEP_OUTPUT" = 1 ] || rm -f "$out"
	fi
	jq -nc --argjson rate "$rate" --argjson secs "$secs" --argjson pubrc "$pubrc" --arg sink "$sink" \
		--argjson wall "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')" \
		--argjson pubwall "$(awk -v a="$t0" -v b="$tp" 'BEGIN{print b - a}')" \
		--argjson idle "$idle" \
		--argjson cpu "$(awk -v a="$tk0" -v b="$tk1" -v hz="$HZ" 'BEGIN{print (b - a) / hz}')" \
		--argjson sched "$(awk -v a="$ss0" -v b="$ss1" 'BEGIN{print (b - a) / 1e9}')" \
		--argjson hwm "${hwm:-0}" --argjson rss "${rss:-0}" \
		--argjson bpf "$(delta "$s0" "$s1")" \
		'{rate: $rate, secs: $secs, pubrc: $pubrc, sink: $sink, wall_s: $wall, pub_wall_s: $pubwall,
		  idle_wait_s: $idle, agent_cpu_s: $cpu, agent_sched_s: $sched, vmhwm_kb: $hwm,
		  vmrss_kb: $rss, bpf: $bpf}' >"$d/run.json"
}

agent_part() {
	local r
	for r in $AGENT_RATES; do
		log "part 4: agent, $r msg/s for $LOAD_SECONDS s, output to /dev/null"
		agent_run "agent-$r" "$r" "$LOAD_SECONDS" null
		AGENT_RUNS+=("agent-$r|$r/s")
	done
	for r in $AGENT_FILE_RATES; do
		log "part 4: agent, $r msg/s for $LOAD_SECONDS s, output to a file (spans counted)"
		agent_run "agent-$r-file" "$r" "$LOAD_SECONDS" file
		AGENT_RUNS+=("agent-$r-file|$r/s, output to a file")
	done
}

# One JSON object per run with everything the tables need.
agent_facts() { # name label
	local d=$RAW/$1
	jq -n --arg l "$2" --arg rc "$(cat "$d/capture.rc" 2>/dev/null)" \
		--arg f "$(sort -n "$d/foreign_progs" 2>/dev/null | tail -n1)" \
		--argjson load "$(cat "$d/loadavg" 2>/dev/null || echo null)" \
		--argjson pub "$(cat "$d/pub.json" 2>/dev/null || echo '{}')" \
		--argjson run "$(cat "$d/run.json")" \
		--argjson m "$(cat "$d/metrics.json")" \
		--argjson a "$(cat "$d/agent_metrics.json")" \
		--argjson o "$(cat "$d/output_stats.json" 2>/dev/null || echo null)" \
		--argjson ready "$(cat "$d/rss_ready_kb" 2>/dev/null || echo 0)" \
		--argjson pf "$AGENT_PUB_FRAME" --argjson mf "$AGENT_MSG_FRAME" '
		($pub.sent // 0) as $sent | ($pub.received // 0) as $recv |
		($a.nats // {}) as $n |
		(($n.publish // 0) + ($n.process // 0) + ($n.deliver // 0)) as $emitted |
		(($m.user.gap_bytes // {}) | add // 0) as $gap |
		{label: $l, rc: $rc, foreign: $f, load: $load, pub: $pub, run: $run, m: $m, a: $a, o: $o, ready: $ready,
		 sent: $sent, recv: $recv,
		 exp: {publish: $sent, process: $recv, deliver: $recv},
		 emitted: $emitted,
		 other: (($a.spans_out // 0) - $emitted),
		 missing: ($sent + 2 * $recv - $emitted),
		 gap: $gap,
		 # every message crosses 4 streams: publisher egress and server
		 # ingress (PUB), server egress and subscriber ingress (MSG)
		 gap_frames: ($gap / (($pf + $mf) / 2)),
		 ctl_bytes: (($m.user.data_bytes // 0) + $gap - 2 * $pf * $sent - 2 * $mf * $recv),
		 proc_ended: ([$n.process_end_read, $n.process_end_reply, $n.process_end_timeout, $n.process_end_close] | add // 0),
		 busy_s: ($run.wall_s - 0.5),
		 bpf_ns: ([$run.bpf[] | .t] | add // 0)}'
}

agent_report() {
	local l
	echo
	echo "### 4. Whole agent: wirespan agent --output stdout --port P, nats_pub 128 B messages"
	echo
	echo "nats-server on 127.0.0.1, nats_pub (one publisher and one subscriber connection, all on"
	echo "this host) at the given rate for $LOAD_SECONDS s; the agent's stdout goes to /dev/null (spans"
	echo "by kind from its counters, \`agent_metrics.nats\`) or, for the \"output to a file\" runs, to a"
	echo "file whose spans are counted by name afterwards (then deleted). Expected spans: publish ="
	echo "messages sent, process = deliver = messages received. Completeness = emitted / expected."
	echo
	echo "| run | sent | received | achieved msg/s | publish spans (completeness) | process spans | deliver spans | other spans | spans_out | missing spans (expected − emitted) | agent exit |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	for l in "${AGENT_RUNS[@]}"; do
		agent_facts "${l%%|*}" "${l#*|}" | jq -r '
			def pc($a; $b): if $b > 0 then ($a / $b * 1000 | floor / 10 | tostring) + " %" else "–" end;
			def cell($k): "\(.a.nats[$k] // "–") (\(pc(.a.nats[$k] // 0; .exp[$k])))";
			"| \(.label) | \(.sent) | \(.recv) | \(.pub.rate_achieved // "–") | \(cell("publish")) | \(cell("process")) | \(cell("deliver")) | " +
			"\(.other) | \(.a.spans_out // "–") | \(.missing) of \(.exp | add) | \(.rc)\(if .run.pubrc != 0 then ", nats_pub rc \(.run.pubrc)" else "" end) |"'
	done
	echo
	echo "Counted drops. The kernel counts ring-buffer losses (records, bytes); the pipeline counts"
	echo "gap bytes by reason (\`lost\` = ring buffer full, \`cap\` = a syscall moved more than the"
	echo "max_records x max_capture bytes captured per syscall, 8 x 32 KiB by default); the span builder counts parse errors, frames without a payload to"
	echo "fingerprint, evictions. Gaps are counted in bytes only: \"≈ frames in gaps\" divides them by"
	echo "the mean frame size ($AGENT_PUB_FRAME B PUB, $AGENT_MSG_FRAME B MSG), over the 4 streams each message crosses"
	echo "(publisher egress, server ingress, server egress, subscriber ingress; the agent does not say"
	echo "which). \"bytes seen − message bytes\" = data + gap bytes minus 2×$AGENT_PUB_FRAME×sent + 2×$AGENT_MSG_FRAME×received: the"
	echo "handshakes (INFO, CONNECT, SUB, PING/PONG; about 2 KB), so every byte reached the parser or"
	echo "was counted as a gap when it is about 2 KB."
	echo
	echo "| run | rb_full_events | rb_full_bytes | gap bytes by reason | ≈ frames in gaps | bytes seen − message bytes | parse_errors | no_fingerprint | pending_evicted | recent_evicted | other counters ≠ 0 | missing spans − frames in gaps |"
	echo "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|"
	for l in "${AGENT_RUNS[@]}"; do
		agent_facts "${l%%|*}" "${l#*|}" | jq -r '
			(.m.user.gap_bytes // {} | to_entries | map(select(.value > 0) | "\(.key) \(.value)") | join(", ")) as $g |
			([(.m.user.decode_errors // {} | to_entries[]), (.m.user.conns // {} | to_entries[] | select(.key == "evicted" or .key == "nomem")),
			  (.a.nats // {} | to_entries[] | select(.key == "nomem" or .key == "bad_json" or .key == "subs_dropped")),
			  (.a | to_entries[] | select(.key == "write_errors")),
			  (.m.user // {} | to_entries[] | select(.key == "output_errors" or .key == "data_without_open" or .key == "holes_released")),
			  (.m.kernel // {} | to_entries[] | select(.key | test("lost|map_full|fault"))) ]
			 | map(select(.value > 0) | "\(.key) \(.value)") | join(", ")) as $o |
			"| \(.label) | \(.m.kernel.rb_full_events // "–") | \(.m.kernel.rb_full_bytes // "–") | \(if $g == "" then "none" else $g end) | " +
			"\(.gap_frames | round) | \(.ctl_bytes) | \(.a.nats.parse_errors // "–") | \(.a.nats.no_fingerprint // "–") | " +
			"\(.a.nats.pending_evicted // "–") | \(.a.nats.recent_evicted // "–") | \(if $o == "" then "none" else $o end) | \(.missing - (.gap_frames | round)) |"'
	done
	echo
	echo "Agent cost. CPU = utime+stime (/proc/PID/stat) from \"ready\" until the agent is idle again"
	echo "after the publisher is done (less than 5 ms on-CPU in 0.5 s; \"catch-up\" is that wait,"
	echo "0.5 s of which is the idle window itself), as % of one core over that time (without the"
	echo "final idle 0.5 s) and per span emitted. VmHWM = peak RSS. BPF time = run_time_ns of the agent's programs over the same time"
	echo "(every process's syscalls), per message sent."
	echo
	echo "| run | agent CPU s (schedstat) | % of one core | µs per span | publisher wall s | catch-up s | VmHWM (VmRSS at ready) | BPF time (ns/msg) | 1-min load at start | other tp_ progs (max) |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for l in "${AGENT_RUNS[@]}"; do
		agent_facts "${l%%|*}" "${l#*|}" | jq -r '
			"| \(.label) | \(.run.agent_cpu_s) (\(.run.agent_sched_s * 1000 | round / 1000)) | " +
			"\(.run.agent_cpu_s / .busy_s * 1000 | round / 10) % | " +
			"\(if .emitted > 0 then (.run.agent_cpu_s / .emitted * 1e7 | round / 10) else "–" end) | " +
			"\(.run.pub_wall_s * 100 | round / 100) | \(.run.idle_wait_s * 10 | round / 10) | " +
			"\(.run.vmhwm_kb / 1024 * 10 | round / 10) MiB (\(.ready / 1024 * 10 | round / 10) MiB) | " +
			"\(.bpf_ns / 1e6 | round) ms (\(if .sent > 0 then (.bpf_ns / .sent | round) else "–" end)) | \(.load) | \(.foreign) |"'
	done
	for l in "${AGENT_RUNS[@]}"; do
		[ -f "$RAW/${l%%|*}/output_stats.json" ] || continue
		agent_facts "${l%%|*}" "${l#*|}" | jq -r '
			(.o.by_name // {}) as $b |
			"\nOutput check (\(.label)): \(.o.bytes) bytes, \(.o.lines) lines, \(.o.spans) spans written " +
			"(\($b | to_entries | map("\(.key) \(.value)") | join(", "))); the counters say publish \(.a.nats.publish), " +
			"process \(.a.nats.process), deliver \(.a.nats.deliver), spans_out \(.a.spans_out): " +
			(if ($b.publish // 0) == .a.nats.publish and ($b.process // 0) == .a.nats.process and
			    ($b.deliver // 0) == .a.nats.deliver and .o.spans == .a.spans_out
			 then "they match." else "**they do not match.**" end)'
	done
	echo
	echo "Verdicts. Unaccounted = expected − emitted − drops counted in spans. The agent has no"
	echo "counter in spans or frames (only bytes), so every missing span is unaccounted in those units;"
	echo "the byte check and the gap-bytes estimate below say whether the missing spans are at least"
	echo "consistent with what was counted. Ring-buffer losses do not choose a stream, so with gaps"
	echo "spread over the 4 streams about 3/4 of the gap frames should be missing spans."
	echo
	for l in "${AGENT_RUNS[@]}"; do
		agent_facts "${l%%|*}" "${l#*|}" | jq -r '
			"- \(.label): " +
			(if .missing == 0 then "complete: every message gave its 3 spans, unaccounted 0"
			 else "**\(.missing) of \(.exp | add) spans missing (\(.missing / (.exp | add) * 10000 | round / 100) %); unaccounted in spans: \(.missing), not 0**" end) +
			"; ring buffer full \(.m.kernel.rb_full_events // 0) times (\(.m.kernel.rb_full_bytes // 0) bytes)" +
			"; bytes: " + (if .ctl_bytes >= 1500 and .ctl_bytes <= 3000 then "all accounted (data + gaps = messages + \(.ctl_bytes) handshake bytes)"
			              else "**\(.ctl_bytes) bytes beyond the message bytes, not the ~2 KB of handshakes**" end) +
			(if .missing > 0 then
			   "; gap bytes ≈ \(.gap_frames | round) frames, 3/4 of which = \(.gap_frames * 3 / 4 | round) vs \(.missing) missing spans (" +
			   (if .gap_frames > 0 then "ratio \(.missing / (.gap_frames * 3 / 4) * 1000 | round / 1000))" else "no gaps at all)" end) +
			   (if .missing <= (.gap_frames | round) then ", no more than the frames in gaps: consistent with the counters"
			    else ", **\(.missing - (.gap_frames | round)) more than the frames in gaps: not explained by any counter**" end)
			 else "" end) +
			(if .proc_ended != (.a.nats.process // 0) then "; **process spans started \(.a.nats.process) ≠ ended \(.proc_ended)**" else "" end) +
			(if .other != 0 then "; **spans_out − (publish + process + deliver) = \(.other)**" else "" end) +
			(if .rc != "0" then "; **agent exit status \(.rc)**" else "" end) + "."'
	done
}
