# SPDX-License-Identifier: Apache-2.0
"""`wirespan tail`: a real nats-server, OTLP batches encoded by protobufjs
(tests/peers/node/otlppub.js, independent of the agent's encoder) and several
`wirespan tail` processes reading them: the tree, the JSON objects, the
filters, the subscription subject, and garbage counted rather than fatal."""
import json
import re
import signal
import subprocess
import time

from harness import NODE, PEERS_SRC, WIRESPAN, Env, check, free_port, log, start_nats, tail

OTLPPUB = PEERS_SRC / "node" / "otlppub.js"
T0 = 1700000000000000000
MS = 1000000
TID_A = "4bf92f3577b34da6a3ce929d0e0e4736"
TID_B = "02020202020202020202020202020202"
TID_C = "03030303030303030303030303030303"


def _sid(n):
    return "aa000000000000%02x" % n


def _span(tid, sid, parent, name, kind, start_ms, dur_ms, attributes=None, status=None):
    s = {
        "trace_id": tid,
        "span_id": _sid(sid),
        "name": name,
        "kind": kind,
        "start": str(T0 + int(start_ms * MS)),
        "end": str(T0 + int((start_ms + dur_ms) * MS)),
        "attributes": attributes or {},
    }
    if parent:
        s["parent_span_id"] = _sid(parent)
    if status:
        s["status"] = status
    return s


# Trace A: four spans of two services in two messages, the child first.
# Trace B: one span of a third service. Trace C: on a subject outside
# otel.traces.>. Then garbage on a telemetry subject.
WORKLOAD = {
    "messages": [
        {
            "subject": "otel.traces.nats.node-b",
            "resource": {"process.executable.name": "billing-worker", "nats.account": "ACME"},
            "spans": [
                _span(TID_A, 3, 2, "process orders.created", 5, 1.5, 3,
                      {"nats.user": "bob", "messaging.destination.name": "orders.created"},
                      {"code": 2, "message": "boom"}),
            ],
        },
        {
            "subject": "otel.traces.http.node-a",
            "resource": {"service.name": "orders"},
            "spans": [
                _span(TID_A, 1, 0, "GET /orders", 2, 0, 12.5,
                      {"enduser.id": "alice", "http.response.status_code": 201}, {"code": 1}),
                _span(TID_A, 2, 1, "publish orders.created", 4, 1, 0.2,
                      {"messaging.destination.name": "orders.created"}),
                _span(TID_A, 4, 1, "SELECT orders", 3, 5, 0.1),
            ],
        },
        {
            "subject": "otel.traces.nats.node-c",
            "resource": {"service.name": "inventory"},
            "spans": [_span(TID_B, 9, 0, "process inv.check", 5, 0, 2, {"messaging.destination.name": "inv.check"})],
        },
        {
            "subject": "other.subject",
            "resource": {"service.name": "elsewhere"},
            "spans": [_span(TID_C, 7, 0, "lonely", 1, 0, 1, {}, {"code": 2})],
        },
        {"subject": "otel.traces.nats.node-x", "raw_hex": "deadbeef" * 8},
        {"subject": "otel.traces.nats.node-x", "raw_hex": "0a7f00"},
    ]
}


class Tail:
    """A running `wirespan tail ARGS` (or another NATS command: relay) with
    stdout and stderr in files."""

    def __init__(self, env, nats, args, name, command="tail"):
        self.name = name
        self.command = command
        self.out = env.path("%s-%s.out" % (command, name))
        self.err = env.path("%s-%s.err" % (command, name))
        self.cmd = [str(WIRESPAN), command, "--nats-url", nats.url] + list(args)
        self.proc = env.spawn(self.cmd, stdout=self.out, stderr=self.err, name="wirespan-" + command)
        deadline = time.monotonic() + 10
        while "ready" not in self.stderr():
            check(self.proc.poll() is None, "`%s` exited %s before ready: %s", " ".join(self.cmd),
                  self.proc.returncode, tail(self.err))
            check(time.monotonic() < deadline, "`%s` not ready in 10 s: %s", " ".join(self.cmd), tail(self.err))
            time.sleep(0.02)

    def stderr(self):
        return self.err.read_text(errors="replace") if self.err.exists() else ""

    def text(self):
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def json_lines(self):
        return [json.loads(l) for l in self.text().splitlines() if l.strip()]

    def wait(self, pred, what, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not pred(self):
            check(self.proc.poll() is None, "%s: tail exited %s: %s", self.name, self.proc.returncode, tail(self.err))
            check(time.monotonic() < deadline, "%s: no %s within %.0f s; output:\n%s", self.name, what, timeout,
                  self.text()[-2000:])
            time.sleep(0.05)

    def stop(self):
        """SIGINT: exit 0 and the <command>_metrics line."""
        self.proc.send_signal(signal.SIGINT)
        rc = self.proc.wait(15)
        check(rc == 0, "%s: exit %s after SIGINT: %s", self.name, rc, tail(self.err))
        for line in reversed(self.stderr().splitlines()):
            if line.startswith("{") and '"%s_metrics"' % self.command in line:
                return json.loads(line)
        raise AssertionError("%s: no %s_metrics line on stderr: %s" % (self.name, self.command, tail(self.err)))


def _publish(env, nats, spec, stream=None):
    path = env.path("workload.%d.json" % len(env.procs))
    path.write_text(json.dumps(spec))
    res = env.run_peer([NODE, OTLPPUB, "--url", nats.url] + (["--stream", stream] if stream else []) + [path],
                       name="otlppub", timeout=30)
    check(res["published"] == len(spec["messages"]), "published %s of %d", res["published"], len(spec["messages"]))
    return res


def _tree_rows(text, tid):
    """The span lines under trace tid's header, as (tree prefix, [fields])."""
    lines = text.splitlines()
    heads = [i for i, l in enumerate(lines) if l.startswith("trace %s" % tid)]
    check(len(heads) == 1, "trace %s printed %d times in:\n%s", tid, len(heads), text)
    rows = []
    for l in lines[heads[0] + 1:]:
        if l.startswith("trace "):
            break
        m = re.match(r"^  ((?:[\u2502 ] {2}|[\u251c\u2514]\u2500 )*)(.*)$", l)
        check(m, "not a span line: %r", l)
        rows.append((m.group(1), re.split(r"\s{2,}", m.group(2).strip())))
    return lines[heads[0]], rows


def test_tail_tree_json_filters_garbage():
    """Traces from several messages and subjects, printed as a tree and as
    JSON; --service/--errors/--trace-id/--destination/--subject select whole
    traces; garbage payloads are counted and the rest flows."""
    with Env("tail") as env:
        nats = start_nats(env)
        common = ["--flush-after", "300"]
        tails = {
            "text": Tail(env, nats, common + ["--no-color"], "text"),
            "json": Tail(env, nats, common + ["--json"], "json"),
            "billing_errors": Tail(env, nats, common + ["--json", "--service", "billing-worker", "--errors"],
                                   "billing_errors"),
            "trace_b": Tail(env, nats, common + ["--trace-id", TID_B, "--no-color"], "trace_b"),
            "dest": Tail(env, nats, common + ["--json", "--destination", "inv.*"], "dest"),
            "other": Tail(env, nats, common + ["--json", "--subject", "other.subject"], "other"),
        }
        _publish(env, nats, WORKLOAD)

        tails["text"].wait(lambda t: t.text().count("\ntrace ") + t.text().startswith("trace ") >= 2, "two traces")
        text = tails["text"].text()
        log("text output:\n%s", text)
        head, rows = _tree_rows(text, TID_A)
        check(re.match(r"^trace %s  4 spans  12\.5ms  1 error$" % TID_A, head), "header: %r", head)
        want = [
            ("", ["GET /orders", "12.5ms", "+0", "orders", "server", "enduser=alice", "OK"]),
            ("\u251c\u2500 ", ["publish orders.created", "200us", "+1ms", "orders", "producer"]),
            ("\u2502  \u2514\u2500 ", ["process orders.created", "3ms", "+1.5ms", "billing-worker", "consumer",
                                       "nats.user=bob", "account=ACME", "ERROR boom"]),
            ("\u2514\u2500 ", ["SELECT orders", "100us", "+5ms", "orders", "client"]),
        ]
        check(rows == want, "trace A tree:\n%s\nexpected:\n%s", rows, want)
        _, rows = _tree_rows(text, TID_B)
        check(rows == [("", ["process inv.check", "2ms", "+0", "inventory", "consumer"])], "trace B: %s", rows)
        check(TID_C not in text, "a trace on other.subject reached a tail of otel.traces.>")
        check("\033" not in text, "colour codes with --no-color")

        tails["json"].wait(lambda t: len(t.json_lines()) >= 5, "five JSON spans")
        js = tails["json"].json_lines()
        keys = {"trace_id", "span_id", "parent_span_id", "depth", "parent_seen", "name", "kind", "start_unix_nano",
                "end_unix_nano", "duration_ns", "service", "status", "status_message", "identity", "subject",
                "attributes", "resource"}
        for o in js:
            check(set(o) == keys, "JSON fields %s, expected %s", sorted(o), sorted(keys))
        a = [o for o in js if o["trace_id"] == TID_A]
        check([o["name"] for o in a] == ["GET /orders", "publish orders.created", "process orders.created",
                                         "SELECT orders"], "JSON order: %s", [o["name"] for o in a])
        check([o["depth"] for o in a] == [0, 1, 2, 1], "depths %s", [o["depth"] for o in a])
        check([o["parent_span_id"] for o in a] == [None, _sid(1), _sid(2), _sid(1)], "parents %s",
              [o["parent_span_id"] for o in a])
        root, proc = a[0], a[2]
        check(root["start_unix_nano"] == str(T0) and root["duration_ns"] == 12500000, "root times: %s", root)
        check(root["attributes"] == {"enduser.id": "alice", "http.response.status_code": 201},
              "root attributes: %s", root["attributes"])
        check(root["identity"] == {"enduser.id": "alice"} and root["status"] == "ok", "root: %s", root)
        check(root["subject"] == "otel.traces.http.node-a" and root["resource"] == {"service.name": "orders"},
              "root subject/resource: %s", root)
        check(proc["service"] == "billing-worker" and proc["status"] == "error" and proc["status_message"] == "boom",
              "consumer span: %s", proc)
        check(proc["identity"] == {"nats.user": "bob", "nats.account": "ACME"}, "identity %s", proc["identity"])
        check(proc["kind"] == "consumer" and proc["subject"] == "otel.traces.nats.node-b", "consumer span: %s", proc)

        tails["billing_errors"].wait(lambda t: len(t.json_lines()) >= 4, "trace A")
        tails["trace_b"].wait(lambda t: "trace " in t.text(), "trace B")
        tails["dest"].wait(lambda t: len(t.json_lines()) >= 1, "trace B")
        tails["other"].wait(lambda t: len(t.json_lines()) >= 1, "trace C")
        time.sleep(0.5)  # anything else would have been printed by now
        m = {name: t.stop() for name, t in tails.items()}
        log("metrics: %s", m)

        check({o["trace_id"] for o in tails["billing_errors"].json_lines()} == {TID_A},
              "--service billing-worker --errors printed %s", tails["billing_errors"].text())
        check(len(tails["billing_errors"].json_lines()) == 4, "the whole trace A is printed, not only the match")
        check("trace %s" % TID_B in tails["trace_b"].text() and TID_A not in tails["trace_b"].text(),
              "--trace-id printed: %s", tails["trace_b"].text())
        check([o["trace_id"] for o in tails["dest"].json_lines()] == [TID_B], "--destination inv.*: %s",
              tails["dest"].text())
        other = tails["other"].json_lines()
        check([(o["trace_id"], o["service"], o["status"]) for o in other] == [(TID_C, "elsewhere", "error")],
              "--subject other.subject: %s", other)

        for name in ("text", "json", "billing_errors", "trace_b", "dest"):
            mm = m[name]
            check(mm["messages"] == 5 and mm["bad_messages"] == 2, "%s: messages %s, bad %s", name, mm["messages"],
                  mm["bad_messages"])
            check(mm["spans_in"] == 5 and mm["bad_spans"] == 0, "%s: spans_in %s", name, mm["spans_in"])
            check(mm["held_spans"] == 0 and mm["evicted"] == 0 and mm["nats"]["dropped"] == 0,
                  "%s: held/evicted/dropped: %s", name, mm)
        check(m["text"]["traces_printed"] == 2 and m["text"]["spans_printed"] == 5, "text metrics %s", m["text"])
        check(m["billing_errors"]["traces_printed"] == 1 and m["billing_errors"]["traces_filtered"] == 1,
              "billing_errors metrics %s", m["billing_errors"])
        check(m["trace_b"]["other_trace"] == 4, "trace_b skipped %s spans of other traces",
              m["trace_b"]["other_trace"])
        check(m["other"]["messages"] == 1 and m["other"]["bad_messages"] == 0, "other metrics %s", m["other"])
        check("not OTLP protobuf" in tails["text"].stderr(), "garbage was not logged: %s", tail(tails["text"].err))


def test_tail_bounds_and_usage():
    """--max-traces prints the oldest trace early (counted); --count exits;
    wrong flags exit 2 with the usage; an unreachable server exits 1."""
    with Env("tail-bounds") as env:
        nats = start_nats(env)
        t = Tail(env, nats, ["--json", "--max-traces", "2", "--flush-after", "60000", "--count", "3"], "bounded")
        spec = {"messages": [
            {"subject": "otel.traces.nats.n", "resource": {"service.name": "s"},
             "spans": [_span("%032x" % (k + 1), 1, 0, "op%d" % k, 1, k, 1)]} for k in range(5)
        ]}
        _publish(env, nats, spec)
        # five traces, room for two and a minute of quiet period: the first
        # three are printed early, by the bound, and --count 3 ends the run
        rc = t.proc.wait(10)
        check(rc == 0, "exit %s: %s", rc, tail(t.err))
        names = [o["name"] for o in t.json_lines()]
        check(names == ["op0", "op1", "op2"], "printed %s", names)
        m = [json.loads(l) for l in t.stderr().splitlines() if '"tail_metrics"' in l][-1]
        check(m["evicted"] == 3 and m["held_traces"] == 2 and m["peak_held_spans"] <= 3, "metrics %s", m)

    for args in (["--bogus"], ["--trace-id", "xyz"], ["--flush-after", "0"], ["--max-spans", "-1"], ["extra"]):
        r = subprocess.run([str(WIRESPAN), "tail"] + args, capture_output=True, timeout=10)
        err = r.stderr.decode()
        check(r.returncode == 2, "tail %s: exit %s, expected 2", args, r.returncode)
        check(err.startswith("wirespan: ") and "usage: wirespan tail" in err, "tail %s: stderr %r", args, err[:300])
    r = subprocess.run([str(WIRESPAN), "tail", "--help"], capture_output=True, timeout=10)
    check(r.returncode == 0 and b"--nats-url" in r.stdout and b"--flush-after" in r.stdout, "tail --help: %s", r)
    port = free_port()
    r = subprocess.run([str(WIRESPAN), "tail", "--nats-url", "nats://127.0.0.1:%d" % port], capture_output=True,
                       timeout=20)
    check(r.returncode == 1 and b"nats connect" in r.stderr, "unreachable server: exit %s, %r", r.returncode,
          r.stderr[-300:])
