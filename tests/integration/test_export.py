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
    PEERS_BIN,
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

    def pipeline_metrics(self):
        """The last capture-pipeline metrics line ({"type":"metrics"})."""
        ms = [m for m in _jsonl(self.err) if m.get("type") == "metrics"]
        check(ms, "no metrics line at exit: %s", tail(self.err))
        return ms[-1]

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
        check(h.get("Otel-Signal") == "traces", "Otel-Signal %r", h.get("Otel-Signal"))
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
        # A `wirespan tail` connecting now: its CONNECT (name wirespan-tail)
        # is seen on the server's side, which is then unfollowed by name.
        tail_p = start_peer(env, [str(WIRESPAN), "tail", "--nats-url", tel.url, "--json"], name="tail")
        p, s = workload(env, app, n, "orders.core")
        finish_peer(p)
        finish_peer(s)
        time.sleep(1.5)
        stop_process(tail_p, signal.SIGINT)
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
        # The server's side of the agent's own connection (CONNECT name
        # wirespan-agent ...) is no longer copied out of the kernel.
        user = agent.pipeline_metrics()["user"]
        check(user["unfollowed"] == 2 and user["unfollowed_kernel_miss"] == 0,
              "the telemetry server's sides of the agent's and the tail's connections were not both unfollowed in the kernel: %s", user)
        tail_spans = [json.loads(l) for l in Path(tail_p.wirespan_out).read_text().splitlines() if l.startswith("{")]
        check(len(tail_spans) >= 3 * n, "the tail printed %d spans, expected at least %d", len(tail_spans), 3 * n)
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
        user = agent.pipeline_metrics()["user"]
        check(user["unfollowed"] == 0, "connections unfollowed with the filter off: %s", user)
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


# --------------------------------------------------------------------------
# 3. scoped permissions (deploy/nats/nats-server.conf)


def nkeygen(env, name):
    seed = env.path("%s.seed" % name)
    r = finish_peer(start_peer(env, GO + ["--mode", "nkeygen", "--seed-out", seed], "nkeygen"))
    check(r.get("nkey", "").startswith("U"), "nkeygen: %s", r)
    return seed, r["nkey"]


def deploy_conf(keys):
    """deploy/nats/nats-server.conf with our keys, without its listen line."""
    text = (DEPLOY / "nats-server.conf").read_text()
    text = re.sub(r"(?m)^listen:.*$", "", text)
    for k, v in keys.items():
        check("@%s@" % k in text, "deploy/nats/nats-server.conf has no @%s@", k)
        text = text.replace("@%s@" % k, v)
    return text


def test_export_permissions():
    """The shipped server config: node1's agent publishes its spans and the
    consumer reads them; an agent with node1's key publishing as node2 is
    refused on every batch, and each refusal is counted (not_permitted) and
    logged; the consumer may not publish."""
    with Env("export-perm") as env:
        keys = {}
        seeds = {}
        for who in ("NODE1", "NODE2", "CONSUMER"):
            seeds[who], keys["%s_NKEY" % who] = nkeygen(env, who.lower())
        app = app_server(env)
        tel = tel_server(env, deploy_conf(keys))
        sub = Sub(env, tel.url, ["--nkey-seed", seeds["CONSUMER"]])
        common = ["--nats-url", tel.url, "--port", app.port, "--nats-nkey", seeds["NODE1"], "--set", "export.batch.max_delay_ms=100"]
        agent = ExportAgent(env, common + ["--node", "node1"])
        p, _ = workload(env, app, 10, "orders.perm", sub=False)
        finish_peer(p)
        time.sleep(1.0)
        am = agent.stop()
        ex = am["export"]
        check(ex["not_permitted"] == 0 and ex["sent_spans"] == 10, "node1 on its own subjects: %s", ex)
        time.sleep(0.3)
        got = len(spans_of(sub.msgs())[0])
        check(got == 10, "the consumer received %d spans of node1's 10", got)
        # node1's key, node2's subjects
        agent = ExportAgent(env, common + ["--node", "node2"])
        p, _ = workload(env, app, 10, "orders.perm2", sub=False)
        finish_peer(p)
        time.sleep(1.5)
        am = agent.stop()
        ex = am["export"]
        check(ex["batches"] >= 1 and ex["not_permitted"] >= ex["batches"], "denied publishes not counted: %s", ex)
        check("Permissions Violation" in agent.stderr(), "no permission violation logged: %s", tail(agent.err))
        time.sleep(0.3)
        msgs = sub.stop()
        bad = [m for m in msgs if m["subject"].endswith(".node2")]
        check(not bad, "the consumer received %d messages on node2's subjects", len(bad))
        r = node_js(env, tel.url, ["--nkey-seed", seeds["CONSUMER"], "--publish", "otel.traces.nats.node1"], "pub.js")
        log("consumer publish: %s", r)
        check(r.get("denied"), "the consumer's publish was not refused: %s", r)


# --------------------------------------------------------------------------
# 4. outages: nats-server killed for 5 s and for 30 s under a steady load


def test_export_outages():
    """Two agents on one steady workload (200 msg/s), the telemetry server
    killed for 5 s and then for 30 s: JetStream (node j): every span stored
    exactly once; core (node c, 256 KiB queue): sent = received and
    spans = sent + counted drops; queues never above their bound and RSS
    growth within it."""
    n = 9000
    with Env("export-outage") as env:
        app = app_server(env)
        port = free_port()
        store = env.path("tel-js")
        tel = tel_server(env, jetstream=True, port=port, store=store)
        r = node_js(env, tel.url, ["--create-stream", "OTEL_J", "--subject", "otel.traces.*.nodej", "--dupe-window-ms", "300000"])
        check(r.get("created"), "stream: %s", r)
        sub = Sub(env, tel.url, ["--subject", "otel.traces.*.nodec", "--reconnect-wait", 20])
        base = ["--nats-url", tel.url, "--port", app.port, "--set", "export.batch.max_delay_ms=200"]
        core_q = 256 * 1024
        js_q = 32 << 20
        ac = ExportAgent(env, base + ["--node", "nodec", "--set", "export.queue.max_bytes=%d" % core_q, "--set", "export.batch.max_bytes=64KiB",
                                      "--set", "export.nats.reconnect_wait_ms=1000"])
        aj = ExportAgent(env, base + ["--node", "nodej", "--mode", "jetstream", "--stream", "OTEL_J", "--set", "export.queue.max_bytes=%d" % js_q,
                                      "--set", "export.jetstream.max_wait_ms=2000"])
        rss0 = {"c": ac.rss_kb(), "j": aj.rss_kb()}
        p, _ = workload(env, app, n, "orders.fault", interval="5ms", sub=False)
        samples = []

        def sample():
            for name, a, bound in (("c", ac, core_q), ("j", aj, js_q)):
                ex = a.metrics()["export"]
                samples.append((name, ex["queue_bytes"], ex["queue_peak_bytes"], a.rss_kb()))
                check(ex["queue_bytes"] <= bound and ex["queue_peak_bytes"] <= bound, "agent %s: queue %d bytes (peak %d), bound %d",
                      name, ex["queue_bytes"], ex["queue_peak_bytes"], bound)

        events = []  # (epoch ms, what): to explain a loss, should one happen
        for outage in (5, 30):
            time.sleep(3)
            check(p.poll() is None, "the workload ended before the %d s outage; make n larger", outage)
            log("killing nats-server for %d s", outage)
            events.append((int(time.time() * 1000), "kill"))
            tel.kill()
            tel.wait(5)
            t_end = time.monotonic() + outage
            while time.monotonic() < t_end:
                time.sleep(min(5, max(0, t_end - time.monotonic())))
                sample()
            events.append((int(time.time() * 1000), "restart"))
            tel = tel_server(env, jetstream=True, port=port, store=store)
            events.append((int(time.time() * 1000), "listening"))
        finish_peer(p, timeout=120)
        # let both queues empty
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            mc, mj = ac.metrics()["export"], aj.metrics()["export"]
            if not (mc["queue_batches"] or mj["queue_batches"] or mj["inflight"]) and mc["spans_in"] >= n and mj["spans_in"] >= n:
                break
            time.sleep(1)
        sample()
        time.sleep(1.0)
        exc, exj = ac.stop()["export"], aj.stop()["export"]
        time.sleep(0.5)
        msgs = sub.stop()
        log("core %s", json.dumps(exc))
        log("jetstream %s", json.dumps(exj))
        log("samples (agent, queue_bytes, peak, rss_kb): %s; rss at start %s", samples, rss0)
        # JetStream: exactly once
        smsgs = read_stream(env, tel.url, "OTEL_J")
        sspans, sdups, _ = spans_of(smsgs)
        check(sdups == 0, "%d duplicate messages in the stream", sdups)
        check(exj["spans_in"] == n, "jetstream agent saw %d publish spans, expected %d", exj["spans_in"], n)
        check_once(sspans, {"publish orders.fault": n}, "jetstream after outages")
        check(exj["dropped_spans"] == 0 and exj["exit_dropped_spans"] == 0, "jetstream agent dropped spans: %s", exj)
        check(exj["disconnects"] >= 2 and exj["reconnects"] >= 2, "jetstream agent saw %s disconnects, %s reconnects",
              exj["disconnects"], exj["reconnects"])
        # core: sent = received, in = sent + counted drops
        cspans, cdups, _ = spans_of(msgs)
        check_once(cspans, {}, "core after outages")
        check(exc["spans_in"] == n, "core agent saw %d publish spans, expected %d", exc["spans_in"], n)
        # batches of a round whose PING/PONG failed may have arrived before they were dropped (counted as such)
        check(exc["sent_spans"] <= len(cspans) <= exc["sent_spans"] + exc["dropped_unconfirmed_spans"],
              "core: sent_spans %d (+ %d dropped unconfirmed) but the subscriber received %d distinct spans (%d duplicate messages); %s",
              exc["sent_spans"], exc["dropped_unconfirmed_spans"], len(cspans), cdups, _seq_story(msgs, events, sub.err))
        lost = exc["dropped_spans"] + exc["exit_dropped_spans"] + exc["oversize_spans"] + exc["encode_errors"]
        check(exc["spans_in"] == exc["sent_spans"] + lost, "core: %d spans in, %d sent + %d counted lost", exc["spans_in"], exc["sent_spans"], lost)
        check(exc["dropped_spans"] > 0, "core: a 30 s outage with a 256 KiB queue dropped nothing? %s", exc)
        for name, bound in (("c", core_q), ("j", js_q)):
            grow = max(s[3] for s in samples if s[0] == name) - rss0[name]
            check(grow * 1024 <= bound + (16 << 20), "agent %s: RSS grew %d KiB during the outages (queue bound %d KiB + 16 MiB)",
                  name, grow, bound // 1024)


def _seq_story(msgs, events, sub_err):
    """Which batches (Wirespan-Seq) never arrived, next to when the ones
    around them did, the outages and the subscriber's reconnects (epoch ms)."""
    got = {}
    for m in msgs:
        try:
            got.setdefault(int(m["headers"].get("Wirespan-Seq", "")), m.get("t"))
        except ValueError:
            pass
    if not got:
        return "no batches received"
    missing = [q for q in range(1, max(got) + 1) if q not in got]
    runs = []
    for q in missing:
        if runs and runs[-1][1] == q - 1:
            runs[-1][1] = q
        else:
            runs.append([q, q])
    story = ["seqs %d-%d missing (received: %s before, %s after)" % (a, b, got.get(a - 1), got.get(b + 1)) for a, b in runs[:12]]
    status = [line for line in _read(sub_err).splitlines() if line.startswith("sub.js:")][-12:]
    return "batches: %s; test events: %s; subscriber: %s" % ("; ".join(story) or "none missing", events, status)


def test_export_jetstream_resend():
    """JetStream before the stream exists: every publish fails (no
    responders), is counted and sent again with the same Nats-Msg-Id; once the
    stream is created every span is stored exactly once."""
    n = 20
    with Env("export-js-resend") as env:
        app = app_server(env)
        tel = tel_server(env, jetstream=True)
        agent = ExportAgent(env, ["--nats-url", tel.url, "--node", "rs", "--port", app.port, "--mode", "jetstream",
                                  "--set", "export.batch.max_delay_ms=100", "--set", "export.batch.max_spans=5",
                                  "--set", "export.jetstream.max_wait_ms=500"])
        p, _ = workload(env, app, n, "orders.rs", sub=False)
        finish_peer(p)
        deadline = time.monotonic() + 15
        while agent.metrics()["export"]["js_errors"] < 3 and time.monotonic() < deadline:
            time.sleep(0.3)
        r = node_js(env, tel.url, ["--create-stream", "OTEL"])
        check(r.get("created"), "stream: %s", r)
        deadline = time.monotonic() + 20
        while agent.metrics()["export"]["sent_spans"] < n and time.monotonic() < deadline:
            time.sleep(0.3)
        ex = agent.stop()["export"]
        check(ex["js_errors"] >= 3 and ex["resent"] >= ex["js_errors"], "failures not counted or not resent: %s", ex)
        spans, dups, _ = spans_of(read_stream(env, tel.url, "OTEL"))
        check(dups == 0, "%d duplicates stored", dups)
        check_once(spans, {"publish orders.rs": n}, "after resends")
        check(ex["sent_spans"] == n and ex["dropped_spans"] == 0, "sent %s of %d: %s", ex["sent_spans"], n, ex)


# --------------------------------------------------------------------------
# 5. authentication and TLS; configuration file, environment, SIGHUP


def openssl(env, *args):
    r = subprocess.run(["openssl"] + [str(a) for a in args], cwd=str(env.tmp), capture_output=True, timeout=60)
    check(r.returncode == 0, "openssl %s: %s", " ".join(map(str, args[:3])), r.stderr.decode()[-400:])


def make_pki(env):
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(env, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=wirespan test CA")
    env.path("san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        openssl(env, "req", *ec, "-keyout", "%s.key" % who, "-out", "%s.csr" % who, "-subj", "/CN=%s" % who)
        openssl(env, "x509", "-req", "-in", "%s.csr" % who, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "%s.pem" % who, "-days", "2", "-extfile", "san.ext")
    return {k: env.path(k) for k in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def run_auth(env, name, conf, agent_args, sub_args, environ=None, n=5):
    app = app_server(env)
    tel = tel_server(env, conf)
    sub = Sub(env, tel.url, sub_args)
    agent = ExportAgent(env, ["--nats-url", tel.url, "--node", name, "--port", app.port, "--set", "export.batch.max_delay_ms=100"] + agent_args,
                        environ=environ)
    p, _ = workload(env, app, n, "orders.%s" % name, sub=False)
    finish_peer(p)
    time.sleep(1.0)
    am = agent.stop()
    time.sleep(0.3)
    spans, _, _ = spans_of(sub.stop())
    ex = am["export"]
    check(len(spans) == n and ex["sent_spans"] == n, "%s: received %d, sent %s of %d: %s", name, len(spans), ex["sent_spans"], n, ex)
    check(ex["async_errors"] == 0, "%s: asynchronous errors: %s", name, ex)
    return agent


def test_export_auth_modes():
    """user/password (config file + WIRESPAN_EXPORT_NATS_PASSWORD), token
    (environment), TLS with a CA made here and a client certificate the
    server requires: spans arrive; no secret in the agent's output."""
    with Env("export-auth") as env:
        pw, token = "pw-%s" % os.urandom(6).hex(), "tok-%s" % os.urandom(6).hex()
        cfg = env.path("wirespan.yaml")
        cfg.write_text("export:\n  nats:\n    user: agent\n")
        conf = 'authorization { users = [ {user: agent, password: "%s"}, {user: reader, password: "r3ader-pw"} ] }' % pw
        a = run_auth(env, "userpw", conf, ["--config", cfg], ["--user", "reader", "--pass", "r3ader-pw"],
                     environ={"WIRESPAN_EXPORT_NATS_PASSWORD": pw})
        check(pw not in a.stderr(), "the password appears in the agent's stderr")
        conf = 'authorization { token: "%s" }' % token
        a = run_auth(env, "token", conf, [], ["--token", token], environ={"WIRESPAN_EXPORT_NATS_TOKEN": token})
        check(token not in a.stderr(), "the token appears in the agent's stderr")
        pki = make_pki(env)
        conf = 'tls { cert_file: "%s", key_file: "%s", ca_file: "%s", verify: true }' % (pki["server.pem"], pki["server.key"], pki["ca.pem"])
        run_auth(env, "tls", conf, ["--tls-ca", pki["ca.pem"], "--tls-cert", pki["client.pem"], "--tls-key", pki["client.key"]],
                 ["--tls-ca", pki["ca.pem"], "--tls-cert", pki["client.pem"], "--tls-key", pki["client.key"]])


def test_export_config_errors_and_reload():
    """A bad config stops the agent before it starts (exit 2, the key named);
    SIGHUP applies batch limits at once, keeps keys that need a restart (and
    says so), and survives a broken file (counted)."""
    with Env("export-reload") as env:
        cfg = env.path("wirespan.yaml")
        cfg.write_text("export:\n  batch:\n    max_spanz: 3\n")
        r = subprocess.run([str(WIRESPAN), "agent", "--config", str(cfg)], capture_output=True, timeout=30)
        err = r.stderr.decode()
        check(r.returncode == 2 and "line 3: export.batch.max_spanz: unknown key" in err, "bad key: exit %s, %r", r.returncode, err[-300:])
        check("ready" not in err, "the agent started with a bad config: %r", err[-300:])
        app = app_server(env)
        tel = tel_server(env)
        sub = Sub(env, tel.url)
        cfg.write_text("export:\n  node: n1\n  batch: {max_spans: 1000, max_delay_ms: 60000}\n")
        agent = ExportAgent(env, ["--config", cfg, "--nats-url", tel.url, "--port", app.port])
        p, _ = workload(env, app, 6, "orders.hup", sub=False)
        finish_peer(p)
        time.sleep(0.5)
        check(agent.metrics()["export"]["batches"] == 0, "a batch left before its 60 s delay")
        cfg.write_text("export:\n  node: n2\n  batch: {max_spans: 2, max_delay_ms: 60000}\n")
        agent.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while agent.metrics()["export"]["sent_spans"] < 6 and time.monotonic() < deadline:
            time.sleep(0.2)
        am = agent.metrics()
        check(am["config"]["reloads"] == 1 and am["export"]["sent_spans"] == 6, "after SIGHUP: %s", am["export"])
        check(am["export"]["node"] == "n1", "export.node changed without a restart")
        e = agent.stderr()
        check("export.batch.max_spans changed: applied" in e and "export.node changed: needs a restart" in e, "reload log: %s", tail(agent.err))
        cfg.write_text("export: [broken\n")
        agent.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        am = agent.stop()
        check(am["config"]["reload_errors"] == 1 and am["config"]["reloads"] == 1, "broken file on SIGHUP: %s", am["config"])
        got = collections.Counter(m["subject"] for m in sub.stop())
        check(set(got) == {"otel.traces.nats.n1"}, "subjects %s", dict(got))


# --------------------------------------------------------------------------
# 6. credential rotation: creds file (operator mode, JWTs made offline)


def natsjwt(env, d, *args):
    r = subprocess.run([str(PEERS_BIN / "natsjwt"), "--dir", str(d), "--users", "agent1,agent2,reader"] + list(args),
                       capture_output=True, timeout=30)
    out = json.loads(r.stdout.decode().strip().splitlines()[-1])
    check(r.returncode == 0 and out.get("ok"), "natsjwt: %s %s", out, r.stderr.decode()[-300:])
    return out


def operator_conf(d, mport):
    return 'http: "127.0.0.1:%d"\noperator: "%s"\nresolver: MEMORY\nresolver_preload: { %s: "%s" }\n' % (
        mport, d / "operator.jwt", (d / "account.pub").read_text(), (d / "account.jwt").read_text())


def connz_user(mport, name, timeout=10.0):
    """The user of connection `name` in the server's /connz, waiting up to
    timeout for it to show (a loaded machine connects late); None if never."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen("http://127.0.0.1:%d/connz?auth=1" % mport, timeout=5) as r:
            conns = json.load(r).get("connections") or []
        users = [c.get("authorized_user") or c.get("nkey") for c in conns if c.get("name") == name]
        if users or time.monotonic() > deadline:
            return users[0] if users else None
        time.sleep(0.2)


def test_export_creds_rotation():
    """Operator mode, the agent on a creds file: replace the file with another
    user's creds, revoke the old user and restart nats-server; nats.c reads
    the file again on reconnect and spans keep flowing as the new user."""
    with Env("export-creds") as env:
        d = env.path("jwt")
        d.mkdir()
        keys = natsjwt(env, d)["users"]
        creds = env.path("agent.creds")
        creds.write_bytes((d / "agent1.creds").read_bytes())
        port, mport = free_port(), free_port()
        app = app_server(env)
        tel = tel_server(env, operator_conf(d, mport), port=port)
        sub = Sub(env, tel.url, ["--creds", d / "reader.creds"])
        agent = ExportAgent(env, ["--nats-url", tel.url, "--node", "rot", "--port", app.port, "--nats-creds", creds,
                                  "--set", "export.batch.max_delay_ms=100"])
        p, _ = workload(env, app, 10, "orders.rot1", sub=False)
        finish_peer(p)
        time.sleep(1.0)
        who = connz_user(mport, "wirespan-agent rot")
        check(who == keys["agent1"], "the agent connected as %s, expected agent1 %s", who, keys["agent1"])
        # rotate: new creds in place (atomic rename), old user revoked
        tmp = env.path("agent.creds.new")
        natsjwt(env, d, "--revoke", "agent1")
        tmp.write_bytes((d / "agent2.creds").read_bytes())
        os.rename(tmp, creds)
        tel.kill()
        tel.wait(5)
        tel = tel_server(env, operator_conf(d, mport), port=port)
        deadline = time.monotonic() + 15
        while not agent.metrics()["export"]["connected"] and time.monotonic() < deadline:
            time.sleep(0.3)
        p, _ = workload(env, app, 10, "orders.rot2", sub=False)
        finish_peer(p)
        time.sleep(1.5)
        who = connz_user(mport, "wirespan-agent rot")
        check(who == keys["agent2"], "after rotation the agent connected as %s, expected agent2 %s", who, keys["agent2"])
        old = node_js(env, tel.url, ["--creds", d / "agent1.creds", "--publish", "x"], "old-creds")
        check("published" not in old, "the revoked agent1 creds still connect: %s", old)
        ex = agent.stop()["export"]
        spans, _, _ = spans_of(sub.stop())
        names = collections.Counter(s["name"] for s in spans)
        check(names["publish orders.rot1"] == 10 and names["publish orders.rot2"] == 10, "spans before/after rotation: %s", dict(names))
        check(ex["reconnects"] >= 1 and ex["sent_spans"] == 20, "export after rotation: %s", ex)


def test_export_jetstream_stall():
    """nats-server stopped (SIGSTOP) for 4 s under load, JetStream mode: the
    PubAcks do not come, MaxWait fires, the batches are sent again with the
    same Nats-Msg-Id and the stream drops the copies it already had: every
    span stored exactly once, the duplicates counted."""
    n = 300
    with Env("export-js-stall") as env:
        app = app_server(env)
        tel = tel_server(env, jetstream=True)
        r = node_js(env, tel.url, ["--create-stream", "OTEL"])
        check(r.get("created"), "stream: %s", r)
        agent = ExportAgent(env, ["--nats-url", tel.url, "--node", "stall", "--port", app.port, "--mode", "jetstream",
                                  "--set", "export.batch.max_delay_ms=100", "--set", "export.jetstream.max_wait_ms=1000"])
        p, _ = workload(env, app, n, "orders.stall", interval="10ms", sub=False)
        time.sleep(1.0)
        tel.send_signal(signal.SIGSTOP)
        time.sleep(4)
        tel.send_signal(signal.SIGCONT)
        finish_peer(p)
        deadline = time.monotonic() + 20
        while agent.metrics()["export"]["sent_spans"] < n and time.monotonic() < deadline:
            time.sleep(0.3)
        ex = agent.stop()["export"]
        check(ex["js_timeouts"] >= 1 and ex["resent"] >= ex["js_timeouts"], "no MaxWait timeout or resend: %s", ex)
        spans, dups, _ = spans_of(read_stream(env, tel.url, "OTEL"))
        check(dups == 0, "%d duplicate messages stored", dups)
        check_once(spans, {"publish orders.stall": n}, "after the stall")
        check(ex["sent_spans"] == n and ex["dropped_spans"] == 0 and ex["exit_dropped_spans"] == 0, "export: %s", ex)


def test_export_several_urls():
    """--nats-url with several servers, the first of them down: the agent
    connects to one that is up and every span arrives exactly once, nothing
    dropped."""
    n = 20
    with Env("export-urls") as env:
        app = app_server(env)
        tel = tel_server(env)
        sub = Sub(env, tel.url)
        dead = "nats://127.0.0.1:%d" % free_port()
        agent = ExportAgent(env, ["--nats-url", "%s,%s" % (dead, tel.url), "--node", "urls", "--port", app.port,
                                  "--set", "export.batch.max_delay_ms=200"])
        p, s = workload(env, app, n, "orders.urls")
        finish_peer(p)
        finish_peer(s)
        time.sleep(1.5)
        am = agent.stop()
        time.sleep(0.3)
        msgs = sub.stop()
        ex = am["export"]
        spans, dups, by_id = spans_of(msgs)
        check_once([x for x in spans if x["dest"] == "orders.urls"],
                   {"publish orders.urls": n, "process orders.urls": n, "deliver orders.urls": n}, "several urls")
        check(ex["sent_spans"] == ex["spans_in"] == len(spans), "sent_spans %s, spans_in %s, received %d",
              ex["sent_spans"], ex["spans_in"], len(spans))
        check(ex["dropped_spans"] == 0 and ex["exit_dropped_spans"] == 0, "drops: %s", ex)
