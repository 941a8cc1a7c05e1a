#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Do two builds of the agent's userspace path emit the same spans? Runs two
# bench_agent_replay binaries (tests/bench/bench_agent_replay.c, e.g. one
# built from an older commit) on the same synthesised capture with
# --stage json --output, normalises what differs from run to run by design
# (random trace/span ids become their order of first appearance, so parents
# and links are still compared; times become offsets from the first start;
# process.* resource attributes and thread ids, which carry the bench's
# pid), and compares the OTLP/JSON byte for byte, batching included.
#
#   bash tests/bench/replay_compare.sh OLD_BIN NEW_BIN [MESSAGES]
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OLD_BIN NEW_BIN [MESSAGES]" >&2; exit 2; }
n=${3:-20000}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
norm() {
	python3 -c '
import json, sys
ids, t0 = {}, [None]
def nid(h):
    return ids.setdefault(h, "id%d" % len(ids))
def tt(v):
    v = int(v)
    if t0[0] is None:
        t0[0] = v
    return v - t0[0]
for line in sys.stdin:
    d = json.loads(line)
    for rs in d["resourceSpans"]:
        for a in rs["resource"]["attributes"]:
            if a["key"].startswith("process."):
                a["value"] = "process"
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                for k in ("traceId", "spanId", "parentSpanId"):
                    if k in s:
                        s[k] = nid(s[k])
                for k in ("startTimeUnixNano", "endTimeUnixNano"):
                    s[k] = tt(s[k])
                for l in s.get("links", []):
                    l["traceId"], l["spanId"] = nid(l["traceId"]), nid(l["spanId"])
                for a in s["attributes"]:
                    if a["key"] == "thread.id":
                        a["value"]["intValue"] = nid("tid" + a["value"]["intValue"])
                    elif a["key"] == "wirespan.nats.delivery_id":
                        a["value"]["stringValue"] = nid(a["value"]["stringValue"])
    print(json.dumps(d))
'
}
"$1" --stage json --reps 1 --messages "$n" --output "$d/old.jsonl" >/dev/null
"$2" --stage json --reps 1 --messages "$n" --output "$d/new.jsonl" >/dev/null
norm <"$d/old.jsonl" >"$d/old.norm"
norm <"$d/new.jsonl" >"$d/new.norm"
if cmp -s "$d/old.norm" "$d/new.norm"; then
	echo "replay_compare: identical ($(wc -l <"$d/new.norm") OTLP/JSON lines, $((3 * n)) spans)"
else
	echo "replay_compare: DIFFERENT; first difference:" >&2
	diff <(tr ',' '\n' <"$d/old.norm") <(tr ',' '\n' <"$d/new.norm") | head -20 >&2
	exit 1
fi
