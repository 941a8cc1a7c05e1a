#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Part 8 of `make bench` (root), or alone: bash tests/bench/agent_nats.sh [RATE [SECONDS]]
# wirespan agent --output nats (default) at RATE msg/s of 128 B through a real
# nats-server, spans exported to a second (telemetry) nats-server.
# AGENT_ARGS: more agent arguments, e.g. "--set capture.ringbuf_size=4194304".
RATE=${1:-100000}; SECS=${2:-3}
cd "$(dirname "$0")/../.." || exit 1
W=$(pwd)/build
fp() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
P=$(fp); Q=$(fp)
LOG=$(mktemp -d)
trap 'rm -rf "$LOG"' EXIT
nats-server -a 127.0.0.1 -p $P > "$LOG/ns.log" 2>&1 & NS1=$!
nats-server -a 127.0.0.1 -p $Q > "$LOG/ns2.log" 2>&1 & NS2=$!
sleep 0.5
$W/wirespan agent --nats-url nats://127.0.0.1:$Q --port $P --node bench ${AGENT_ARGS:-} > /dev/null 2> "$LOG/agent.err" & A=$!
for i in $(seq 1 150); do grep -q ready "$LOG/agent.err" && break; sleep 0.2; done
T0=$(awk '{print $14+$15}' /proc/$A/stat)
$W/bench/nats_pub --url nats://127.0.0.1:$P --rate $RATE --seconds $SECS --size 128
sleep 3
T1=$(awk '{print $14+$15}' /proc/$A/stat)
HWM=$(grep VmHWM /proc/$A/status)
kill -INT $A; wait $A
echo "rate $RATE msg/s: agent CPU: $(( (T1-T0)*10 )) ms for $SECS s of load; $HWM"
grep agent_metrics "$LOG/agent.err" | python3 -c '
import json,sys
m=json.loads(sys.stdin.read()); n=m["nats"]; e=m["export"]
print("spans by kind:", {k:n[k] for k in ("publish","process","deliver")}, "pending_evicted", n["pending_evicted"], "gap_bytes", n["gap_bytes"])
print("export:", {k:e[k] for k in ("spans_in","sent_spans","dropped_spans","exit_dropped_spans","encode_errors")})'
grep '"type":"metrics"' "$LOG/agent.err" | python3 -c '
import json,sys
m=json.loads(sys.stdin.read()); print("kernel:", {k:m["kernel"][k] for k in ("rb_full_events","rb_full_bytes","trunc_cap_bytes")}, "user gaps:", m["user"]["gap_bytes"])'
kill $NS1 $NS2
