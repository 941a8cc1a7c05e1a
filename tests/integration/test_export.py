# SPDX-License-Identifier: Apache-2.0
"""Integration tests of `wirespan agent --output nats` (root only).

Two nats-servers per test: the "app" server the traced workload talks to
(the agent follows it with --port) and the "telemetry" server the agent
publishes to. A plain consumer (tests/otlp/sub.js: nats.js + protobufjs, an
implementation independent of the agent's protobuf-c) subscribes to
`otel.traces.>` or reads the JetStream stream, decodes every message and
checks every span of a known workload: N messages published by a nats.go
peer give exactly N `publish` spans (plus N `process` and N `deliver` spans
where a subscriber runs), each exactly once after deduplication by
Nats-Msg-Id.
"""

import collections
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from harness import (
    NATS_SERVER,
    NODE,
    REPO,
    ROLE_GO_PEER,
    WIRESPAN,
    Env,
    TestFailure,
    check,
    finish_peer,
    free_port,
    log,
    start_nats_conf,
    start_peer,
    stop_process,
    tail,
    wait_port,
)

SUB_JS = REPO / "tests" / "otlp" / "sub.js"
DEPLOY = REPO / "deploy" / "nats"
GO = [ROLE_GO_PEER]


# --------------------------------------------------------------------------
# the telemetry consumer


class Sub:
    """tests/otlp/sub.js subscribed (core) until stop()."""

    def __init__(self, env, url, args=()):
        self.out = env.path("sub.%d.out" % len(env.procs))
        self.err = env.path("sub.%d.err" % len(env.procs))
        self.proc = env.spawn([NODE, SUB_JS, "--url", url] + [str(a) for a in args], stdout=self.out, stderr=self.err, name="sub.js")
        deadline = time.monotonic() + 20
        while '"ready"' not in _read(self.out):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise TestFailure("sub.js not ready (exit %s): %s" % (self.proc.returncode, tail(self.err)))
            time.sleep(0.05)

    def msgs(self):
        return [m for m in _jsonl(self.out) if "subject" in m]

    def stop(self):
        stop_process(self.proc)
        return self.msgs()


def _read(p):
    try:
        return Path(p).read_text(errors="replace")
    except OSError:
        return ""


def _jsonl(p):
    out = []
    for line in _read(p).splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def read_stream(env, url, stream, args=()):
    outp = env.path("stream.%d.out" % len(env.procs))
    p = env.spawn([NODE, SUB_JS, "--url", url, "--stream", stream] + list(args), stdout=outp, stderr=env.path("stream.err"), name="sub.js")
    try:
        p.wait(60)
    except subprocess.TimeoutExpired:
        stop_process(p)
        raise TestFailure("reading stream %s timed out" % stream)
    lines = _jsonl(outp)
    check(p.returncode == 0 and lines and lines[-1].get("done"), "reading stream %s failed: %s", stream, tail(env.path("stream.err")))
    check(lines[-1]["msgs"] == lines[-1]["stream_messages"], "stream %s: read %s of %s messages", stream, lines[-1]["msgs"], lines[-1]["stream_messages"])
    return [m for m in lines if "subject" in m]


def node_js(env, url, args, name="sub.js"):
    """Run sub.js to completion (create a stream, publish once); its last JSON line."""
    outp = env.path("%s.%d.out" % (name, len(env.procs)))
    p = env.spawn([NODE, SUB_JS, "--url", url] + [str(a) for a in args], stdout=outp, stderr=env.path("%s.err" % name), name=name)
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        stop_process(p)
    lines = _jsonl(outp)
    return lines[-1] if lines else {"error": tail(env.path("%s.err" % name))}


# --------------------------------------------------------------------------
# the agent


class ExportAgent:
    """`wirespan agent` publishing over NATS (the default output)."""

    def __init__(self, env, args, environ=None):
        self.env = env
        self.err = env.path("agent.%d.err" % len(env.procs))
        self.cmd = [str(WIRESPAN), "agent"] + [str(a) for a in args]
        log("agent: %s", " ".join(self.cmd))
        e = dict(os.environ)
        e.update(environ or {})
        self.proc = env.spawn(self.cmd, stdout=env.path("agent.out"), stderr=self.err, env=e, name="wirespan")
        deadline = time.monotonic() + 30
        while not re.search(r"\bready\b", _read(self.err)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise TestFailure("agent not ready (exit %s): %s" % (self.proc.returncode, tail(self.err, 1500)))
            time.sleep(0.05)
        self.rss_ready = self.rss_kb()

    def rss_kb(self):
        try:
            for line in Path("/proc/%d/status" % self.proc.pid).read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def metrics(self):
        """SIGUSR1: the newest agent_metrics line."""
        n = len(self._all())
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ms = self._all()
            if len(ms) > n:
                return ms[-1]
            time.sleep(0.05)
        raise TestFailure("no agent_metrics after SIGUSR1: %s" % tail(self.err))

    def _all(self):
        return [m for m in _jsonl(self.err) if m.get("type") == "agent_metrics"]

    def stop(self):
        check(self.proc.poll() is None, "the agent exited during the test (%s): %s", self.proc.returncode, tail(self.err, 1500))
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise TestFailure("agent did not exit within 40 s of SIGINT")
        check(rc == 0, "agent exit %s: %s", rc, tail(self.err, 1500))
        ms = self._all()
        check(ms, "no agent_metrics at exit: %s", tail(self.err))
        return ms[-1]

    def stderr(self):
        return _read(self.err)


def app_server(env):
    return start_nats_conf(env)


def tel_server(env, conf="", jetstream=False, port=None, store=None):
    """The telemetry server; with port/store it can be restarted in place."""
    port = port or free_port()
    cfg = env.path("tel.%d.conf" % port)
    cfg.write_text('listen: "127.0.0.1:%d"\n%s\n' % (port, conf))
    args = [NATS_SERVER, "-c", str(cfg)]
    if jetstream:
        store = store or env.path("tel-js")
        Path(store).mkdir(exist_ok=True)
        args += ["-js", "-sd", str(store)]
    p = env.spawn(args, stdout=env.path("tel.%d.%d.log" % (port, len(env.procs))), stderr=subprocess.STDOUT, name="nats-server")
    wait_port("127.0.0.1", port, 10.0, p)
    p.port = port
    p.url = "nats://127.0.0.1:%d" % port
    return p


def workload(env, srv, n, subject, interval=None, sub=True):
    """N messages from a nats.go publisher (and one nats.go subscriber)."""
    s = None
    if sub:
        s = start_peer(env, GO + ["--url", srv.url, "--mode", "sub", "--subject", subject, "--count", n], "sub-go", ready=True)
    args = GO + ["--url", srv.url, "--mode", "pub", "--subject", subject, "--count", n]
    if interval:
        args += ["--interval", interval]
    p = start_peer(env, args, "pub-go")
    return p, s


def spans_of(msgs):
    """(spans deduplicated by Nats-Msg-Id, duplicate messages, messages by id)."""
    by_id = {}
    dups = 0
    for m in msgs:
        mid = m["headers"].get("Nats-Msg-Id")
        check(mid, "a message without Nats-Msg-Id: %s", m["headers"])
        check("error" not in m, "a message did not decode: %s", m.get("error"))
        if mid in by_id:
            dups += 1
            check([s["id"] for s in by_id[mid]["spans"]] == [s["id"] for s in m["spans"]],
                  "two messages with Nats-Msg-Id %s carry different spans", mid)
            continue
        by_id[mid] = m
    spans = [s for m in by_id.values() for s in m["spans"]]
    return spans, dups, by_id


def check_once(spans, want, what):
    """want: {name: n}; each span id exactly once."""
    c = collections.Counter(s["id"] for s in spans)
    twice = [i for i, k in c.items() if k > 1]
    check(not twice, "%s: %d span ids arrive more than once after dedupe, e.g. %s", what, len(twice), twice[:3])
    names = collections.Counter(s["name"] for s in spans)
    for name, n in want.items():
        check(names[name] == n, "%s: %d `%s` spans, expected %d (all: %s)", what, names[name], name, n, dict(names))


def check_headers(by_id, node, prefix="otel"):
    """Subjects, headers, a gap-free per-agent sequence, ids node:boot:seq."""
    seqs = []
    for mid, m in by_id.items():
        h = m["headers"]
        check(h.get("Content-Type") == "application/x-protobuf", "Content-Type %r", h.get("Content-Type"))
        check(h.get("Wirespan-Node") == node, "Wirespan-Node %r, expected %r", h.get("Wirespan-Node"), node)
        seq = int(h["Wirespan-Seq"])
        check(mid == "%s:%s:%d" % (node, h["Wirespan-Boot"], seq), "Nats-Msg-Id %r is not node:boot:seq (%s)", mid, h)
        check(int(h["Wirespan-Spans"]) == len(m["spans"]), "Wirespan-Spans %s but %d spans", h["Wirespan-Spans"], len(m["spans"]))
        dom = {s["name"].split(" ")[0] for s in m["spans"]}
        check(m["subject"] == "%s.traces.nats.%s" % (prefix, node), "subject %r", m["subject"])
        check(all(s["scope"] == "wirespan" for s in m["spans"]), "a span outside scope wirespan")
        check(dom, "an empty batch")
        seqs.append(seq)
    return sorted(seqs)


# --------------------------------------------------------------------------
# 1. core mode, no feedback loop, own traffic never traced


def test_export_core():
    """Core mode: every span of a known workload exactly once, headers and
    subjects as documented, a gap-free sequence; the telemetry server is traced
    too, yet no span is about otel.traces.> (the subject filter) and none is
    from the agent's own pid (the capture excludes it)."""
    n = 40
    with Env("export-core") as env:
        app = app_server(env)
        tel = tel_server(env)
        sub = Sub(env, tel.url)
        agent = ExportAgent(env, ["--nats-url", tel.url, "--node", "node-a.example", "--port", app.port, "--port", tel.port,
                                  "--set", "export.batch.max_delay_ms=200", "--set", "export.batch.max_spans=16"])
        p, s = workload(env, app, n, "orders.core")
        finish_peer(p)
        finish_peer(s)
        time.sleep(1.5)
        am = agent.stop()
        time.sleep(0.3)
        msgs = sub.stop()
        ex = am["export"]
        spans, dups, by_id = spans_of(msgs)
        app_spans = [x for x in spans if x["dest"] == "orders.core"]
        check_once(app_spans, {"publish orders.core": n, "process orders.core": n, "deliver orders.core": n}, "core")
        telemetry = [x for x in spans if (x["dest"] or "").startswith("otel.traces")]
        check(not telemetry, "%d spans about the telemetry subjects were exported (feedback loop): %s", len(telemetry), telemetry[:3])
        mine = [x for x in spans if x["pid"] == agent.proc.pid]
        check(not mine, "%d spans of the agent's own process: %s", len(mine), mine[:3])
        check(am["nats"]["excluded"] > 0, "the telemetry server's frames were not seen excluded: %s", am["nats"])
        seqs = check_headers(by_id, "node-a_example")
        check(seqs == list(range(1, len(seqs) + 1)), "sequence has gaps: %s", seqs)
        check(ex["sent_spans"] == len(spans) == ex["spans_in"], "sent_spans %s, spans_in %s, received %d", ex["sent_spans"], ex["spans_in"], len(spans))
        check(ex["sent_batches"] == len(by_id) == ex["seq"], "sent_batches %s, seq %s, received %d", ex["sent_batches"], ex["seq"], len(by_id))
        for k in ("dropped_spans", "exit_dropped_spans", "oversize_spans", "encode_errors", "not_permitted", "publish_errors"):
            check(ex[k] == 0, "export.%s = %s", k, ex[k])
        check(ex["flush_spans"] > 0, "no batch was flushed by span count (max_spans 16): %s", ex)
        check(am["spans_out"] == ex["spans_in"], "spans_out %s != spans_in %s", am["spans_out"], ex["spans_in"])


def test_export_feedback_filter_off():
    """With spans.exclude_own_telemetry=false the telemetry server's traffic
    does give spans (so test_export_core's absence is the filter's doing), and
    still none from the agent's own process: its connection is never traced."""
    with Env("export-nofilter") as env:
        app = app_server(env)
        tel = tel_server(env)
        sub = Sub(env, tel.url)
        agent = ExportAgent(env, ["--nats-url", tel.url, "--node", "nf", "--port", app.port, "--port", tel.port,
                                  "--set", "export.batch.max_delay_ms=100", "--set", "spans.exclude_own_telemetry=false"])
        p, s = workload(env, app, 5, "orders.nf")
        finish_peer(p)
        finish_peer(s)
        time.sleep(2.0)
        am = agent.stop()
        msgs = sub.stop()
        spans, _, _ = spans_of(msgs)
        tel_spans = [x for x in spans if (x["dest"] or "").startswith("otel.traces")]
        check(tel_spans, "no spans about otel.traces.> even with the filter off: %s", collections.Counter(x["name"] for x in spans))
        check(am["nats"]["excluded"] == 0, "excluded %s with the filter off", am["nats"]["excluded"])
        mine = [x for x in spans if x["pid"] == agent.proc.pid]
        check(not mine, "%d spans of the agent's own process: %s", len(mine), mine[:3])
        pids = {x["pid"] for x in tel_spans}
        check(agent.proc.pid not in pids, "the agent's pid among %s", pids)


# --------------------------------------------------------------------------
# 2. JetStream mode


def test_export_jetstream():
    """JetStream mode with a stream: every span stored exactly once, one PubAck
    per batch, nothing resent or dropped."""
    n = 40
    with Env("export-js") as env:
        app = app_server(env)
        tel = tel_server(env, jetstream=True)
        r = node_js(env, tel.url, ["--create-stream", "OTEL"])
        check(r.get("created") == "OTEL", "stream not created: %s", r)
        agent = ExportAgent(env, ["--nats-url", tel.url, "--node", "jsnode", "--port", app.port, "--mode", "jetstream",
                                  "--stream", "OTEL", "--set", "export.batch.max_delay_ms=200", "--set", "export.batch.max_spans=25"])
        p, s = workload(env, app, n, "orders.js")
        finish_peer(p)
        finish_peer(s)
        time.sleep(1.0)
        am = agent.stop()
        ex = am["export"]
        msgs = read_stream(env, tel.url, "OTEL")
        spans, dups, by_id = spans_of(msgs)
        check(dups == 0, "%d duplicate messages stored in the stream", dups)
        check_once(spans, {"publish orders.js": n, "process orders.js": n, "deliver orders.js": n}, "jetstream")
        check_headers(by_id, "jsnode")
        check(ex["mode"] == "jetstream" and ex["js_acks"] == ex["batches"] == len(msgs), "acks %s, batches %s, stored %d",
              ex["js_acks"], ex["batches"], len(msgs))
        check(ex["sent_spans"] == ex["spans_in"] == len(spans), "sent %s, in %s, stored %d", ex["sent_spans"], ex["spans_in"], len(spans))
        for k in ("resent", "js_errors", "dropped_spans", "exit_dropped_spans"):
            check(ex[k] == 0, "export.%s = %s", k, ex[k])
