# SPDX-License-Identifier: Apache-2.0
"""`wirespan relay`: real nats-server, OTLP batches encoded by protobufjs
(tests/peers/node/otlppub.js) and a fake OTLP/HTTP backend
(tests/peers/py/otlpbackend.py, its own protobuf wire decoder) that answers
by a plan: every span arrives with the content that was published, the OTLP
retry rules hold (503/429 retried, Retry-After honoured, 400 never retried,
partial success counted), headers come from a file and are never logged,
a queue group shares the load, and in JetStream mode nothing is lost when
the relay is killed while the backend is down."""
import json
import signal
import time

from harness import PYTHON, PEERS_SRC, Env, check, free_port, log, start_nats, start_peer, tail
from test_tail import WORKLOAD, Tail, _publish, _span

BACKEND = PEERS_SRC / "py" / "otlpbackend.py"


class Backend:
    def __init__(self, env, plan):
        self.port = free_port()
        self.log = env.path("backend.%d.jsonl" % self.port)
        self.plan_file = env.path("backend.%d.plan" % self.port)
        self.proc = start_peer(env, [PYTHON, BACKEND, "--port", self.port, "--log", self.log, "--plan", plan,
                                     "--plan-file", self.plan_file], "otlpbackend", ready=True)
        self.url = "http://127.0.0.1:%d" % self.port

    def requests(self):
        if not self.log.exists():
            return []
        return [json.loads(l) for l in self.log.read_text().splitlines() if l.strip()]

    def set_plan(self, plan):
        tmp = self.plan_file.with_suffix(".tmp")
        tmp.write_text(plan)
        tmp.rename(self.plan_file)

    def accepted(self):
        """Spans of the requests answered 200, in order."""
        return [s for r in self.requests() if r["status"] == 200 for s in r.get("spans", [])]

    def wait(self, pred, what, timeout=15.0):
        deadline = time.monotonic() + timeout
        while not pred(self):
            check(time.monotonic() < deadline, "backend: no %s within %.0f s; requests: %s", what, timeout,
                  [(r["status"], len(r.get("spans", []))) for r in self.requests()])
            time.sleep(0.05)


def _published_spans(spec):
    """What the backend must see for each span of a workload, by span id."""
    out = {}
    for m in spec["messages"]:
        if not m["subject"].startswith("otel.traces.") or "spans" not in m:
            continue
        for s in m["spans"]:
            out[(s["trace_id"], s["span_id"])] = {
                "trace_id": s["trace_id"], "span_id": s["span_id"], "parent_span_id": s.get("parent_span_id", ""),
                "name": s["name"], "kind": s["kind"], "start": s["start"], "end": s["end"],
                "attributes": s["attributes"], "status": (s.get("status") or {}).get("code", 0),
                "resource": m["resource"],
            }
    return out


def _check_same(got, want):
    keyed = {}
    for s in got:
        k = (s["trace_id"], s["span_id"])
        check(k not in keyed, "span %s delivered twice", k)
        keyed[k] = s
    check(set(keyed) == set(want), "delivered spans %s, published %s", sorted(keyed), sorted(want))
    for k, w in want.items():
        check(keyed[k] == w, "span %s arrived as\n%s\npublished as\n%s", k, keyed[k], w)


def test_relay_retries_headers_content():
    """503 then 429 (Retry-After: 1) then 200: the same batch is retried, the
    second retry no sooner than 1 s later; every span arrives once, field for
    field; the token header comes from a file, gzip is used, garbage is
    dropped and counted, and the token never appears in the relay's log."""
    with Env("relay") as env:
        nats = start_nats(env)
        be = Backend(env, "503,429:ra=1,200")
        token = "tok-%d-secret" % be.port
        tok = env.path("token")
        tok.write_text(token + "\n")
        relay = Tail(env, nats, ["-e", be.url, "--header-file", "lightstep-access-token=%s" % tok,
                                 "-H", "x-test: yes", "--compression", "gzip", "--batch-delay", "300",
                                 "--backoff", "100", "-v"], "retry", command="relay")
        _publish(env, nats, WORKLOAD)
        want = _published_spans(WORKLOAD)
        be.wait(lambda b: len(b.accepted()) >= len(want), "%d accepted spans" % len(want))
        time.sleep(0.3)
        m = relay.stop()
        log("relay metrics: %s", m)
        reqs = be.requests()
        check([r["status"] for r in reqs] == [503, 429, 200], "statuses %s", [r["status"] for r in reqs])
        ids = [sorted((s["trace_id"], s["span_id"]) for s in r["spans"]) for r in reqs]
        check(ids[0] == ids[1] == ids[2], "the retries did not resend the same batch: %s", ids)
        check(reqs[2]["t"] - reqs[1]["t"] >= 0.95, "Retry-After: 1 not honoured: %.3f s",
              reqs[2]["t"] - reqs[1]["t"])
        check(reqs[1]["t"] - reqs[0]["t"] < 0.9, "the backoff after 503 took %.3f s", reqs[1]["t"] - reqs[0]["t"])
        _check_same(be.accepted(), want)
        for r in reqs:
            check(r["path"] == "/v1/traces", "path %s", r["path"])
            h = r["headers"]
            check(h.get("lightstep-access-token") == token and h.get("x-test") == "yes", "headers %s", h)
            check(h.get("content-type") == "application/x-protobuf" and h.get("content-encoding") == "gzip",
                  "headers %s", h)
        check(m["spans_in"] == 5 and m["spans_out"] == 5 and m["batches_out"] == 1, "metrics %s", m)
        check(m["posts"] == 3 and m["retries"] == 2 and m["retry_after_used"] == 1, "retry metrics %s", m)
        check(m["dropped_messages"]["bad_message"] == 2 and not any(m["dropped_spans"].values()),
              "drops %s %s", m["dropped_messages"], m["dropped_spans"])
        check(m["status"] == {"2xx": 1, "4xx": 1, "5xx": 1, "transport_errors": 0}, "status %s", m["status"])
        check(token not in relay.stderr() and token not in relay.text(), "the token appears in the relay's output")
        check("HTTP 503" in relay.stderr() and "HTTP 429" in relay.stderr(), "failures not logged: %s",
              tail(relay.err))


def test_relay_reject_partial_queue_group():
    """400 is dropped, never retried; a partial success is counted, not
    retried; two relays in one queue group deliver every span once."""
    with Env("relay-qg") as env:
        nats = start_nats(env)
        be = Backend(env, "400,200:partial=1,200")
        args = ["-e", be.url, "--batch-delay", "100", "--backoff", "100"]
        relays = [Tail(env, nats, args, "qg%d" % i, command="relay") for i in range(2)]

        def msg(k, n):
            return {"subject": "otel.traces.nats.n%d" % k, "resource": {"service.name": "s%d" % k},
                    "spans": [_span("%032x" % (k + 1), j + 1, 0, "op%d.%d" % (k, j), 1, j, 1) for j in range(n)]}

        first = {"messages": [msg(0, 2)]}
        _publish(env, nats, first)
        be.wait(lambda b: len(b.requests()) >= 1, "the first request")
        second = {"messages": [msg(1, 3)]}
        _publish(env, nats, second)
        be.wait(lambda b: len(b.requests()) >= 2, "the second request")
        rest = {"messages": [msg(k, 1) for k in range(2, 22)]}
        _publish(env, nats, rest)
        be.wait(lambda b: len(b.accepted()) >= 3 + 20, "23 accepted spans")
        time.sleep(0.5)  # a wrong retry of the 400 batch would come now
        ms = [r.stop() for r in relays]
        log("metrics: %s", ms)
        reqs = be.requests()
        check(reqs[0]["status"] == 400 and len(reqs[0]["spans"]) == 2, "first request %s", reqs[0])
        names = [s["name"] for r in reqs[1:] for s in r["spans"]]
        check("op0.0" not in names and "op0.1" not in names, "the batch refused with 400 was sent again")
        want = _published_spans(second)
        want.update(_published_spans(rest))
        _check_same(be.accepted(), want)
        total = {k: sum(m[k] for m in ms) for k in ("messages_in", "spans_in", "spans_out")}
        check(total == {"messages_in": 22, "spans_in": 25, "spans_out": 22}, "totals %s", total)
        check(sum(m["dropped_spans"]["rejected"] for m in ms) == 2, "rejected %s", [m["dropped_spans"] for m in ms])
        check(sum(m["dropped_spans"]["partial_success"] for m in ms) == 1, "partial %s",
              [m["dropped_spans"] for m in ms])
        check(sum(m["retries"] for m in ms) == 0, "retries %s", [m["retries"] for m in ms])
        log("queue group split: %s", [m["messages_in"] for m in ms])


def test_relay_jetstream_kill_while_backend_down():
    """JetStream: the backend answers 503 and the relay is killed (SIGKILL)
    in the middle of retrying; a new relay on the same durable consumer
    delivers every span once the backend is back, and garbage is terminated
    rather than redelivered."""
    with Env("relay-js") as env:
        nats = start_nats(env, jetstream=True)
        be = Backend(env, "503")
        spec = {"messages": [
            {"subject": "otel.traces.nats.n", "resource": {"service.name": "js"},
             "spans": [_span("%032x" % (k + 1), 1, 0, "js%d" % k, 4, k, 1)]} for k in range(10)
        ] + [{"subject": "otel.traces.nats.n", "raw_hex": "ffff"}]}
        _publish(env, nats, spec, stream="OTEL")
        args = ["-e", be.url, "--jetstream", "--stream", "OTEL", "--durable", "relay", "--ack-wait", "2",
                "--batch-delay", "100", "--backoff", "100", "--backoff-max", "200"]
        r1 = Tail(env, nats, args, "js1", command="relay")
        be.wait(lambda b: len(b.requests()) >= 3, "three refused requests")
        r1.proc.send_signal(signal.SIGKILL)
        r1.proc.wait(5)
        refused = len(be.requests())
        check(not be.accepted(), "accepted while answering 503")
        be.set_plan("200")
        r2 = Tail(env, nats, args, "js2", command="relay")
        be.wait(lambda b: len(b.accepted()) >= 10, "10 accepted spans after the restart", timeout=20)
        time.sleep(0.5)
        m = r2.stop()
        log("after %d refused requests; metrics: %s", refused, m)
        _check_same(be.accepted(), _published_spans(spec))
        check(m["spans_out"] == 10 and m["jetstream"]["acks"] == 10, "metrics %s", m)
        # the garbage was terminated by the first relay (never redelivered)
        # or, if it had not fetched it yet, by this one
        check(m["messages_in"] - m["dropped_messages"]["bad_message"] == 10
              and m["jetstream"]["terms"] == m["dropped_messages"]["bad_message"], "garbage: %s", m)
        check(m["jetstream"]["ack_errors"] == 0, "ack errors %s", m["jetstream"])
        # everything acked: a third relay finds nothing to send
        n = len(be.requests())
        r3 = Tail(env, nats, args, "js3", command="relay")
        time.sleep(2.5)  # longer than AckWait: anything unacked would be redelivered
        m3 = r3.stop()
        check(len(be.requests()) == n and m3["messages_in"] == 0, "redelivered after acks: %s", m3)


def test_relay_usage_and_stdout():
    """Wrong flags exit 2 with the usage (a header value is never echoed);
    --output stdout prints every span as a JSON line."""
    import subprocess

    from harness import WIRESPAN

    for args in (["--bogus"], [], ["-e", "ftp://x"], ["-e", "http://x", "-o", "stdout"],
                 ["-e", "http://x", "-H", "no-colon-secret"], ["-e", "http://x", "--compression", "lz4"],
                 ["-e", "http://x", "--jetstream", "-q", "g"]):
        r = subprocess.run([str(WIRESPAN), "relay"] + args, capture_output=True, timeout=10)
        err = r.stderr.decode()
        check(r.returncode == 2, "relay %s: exit %s, expected 2", args, r.returncode)
        check(err.startswith("wirespan: ") and "usage: wirespan relay" in err, "relay %s: %r", args, err[:300])
        check("no-colon-secret" not in err, "a header value was echoed: %r", err[:300])
    r = subprocess.run([str(WIRESPAN), "relay", "--header-file", "k=/nonexistent", "-e", "http://x"],
                       capture_output=True, timeout=10)
    check(r.returncode != 0 and b"cannot read" in r.stderr, "unreadable header file: %s %r", r.returncode, r.stderr)
    with Env("relay-stdout") as env:
        nats = start_nats(env)
        relay = Tail(env, nats, ["-o", "stdout"], "stdout", command="relay")
        _publish(env, nats, WORKLOAD)
        relay.wait(lambda t: len(t.json_lines()) >= 5, "five spans")  # trace C is on other.subject
        time.sleep(0.3)
        m = relay.stop()
        got = [(o["trace_id"], o["span_id"]) for o in relay.json_lines()]
        want = set(_published_spans(WORKLOAD))
        check(len(got) == 5 and set(got) == want, "stdout spans %s, expected %s", got, sorted(want))
        check(m["spans_out"] == 5 and m["dropped_messages"]["bad_message"] == 2, "metrics %s", m)
