# SPDX-License-Identifier: Apache-2.0
"""Issue 9, item 2: the telemetry NATS server goes away (docs/RELIABILITY.md).

Three scenarios, each returning a report dict like those of reliability.py
(test, operations, seen, out, drops by reason, unaccounted = seen - out -
counted, which must be 0) with one row per export mode in report["agents"]:

  - kill_outage(outage_s): nats-server SIGKILLed for outage_s, then started
    again on the same port and JetStream store, under a steady NATS load,
    with two agents side by side: core mode (a small queue, so the outage
    overflows it and the drops are counted) and JetStream mode (every span
    stored exactly once);
  - blackhole(blackhole_s): the telemetry server runs in a network namespace
    reached over a veth pair; the `blackhole` qdisc on both ends drops every
    packet silently for blackhole_s, then is removed. The agents must see it
    (PING/PONG and flush timeouts, a stale connection), count what they drop,
    and recover;
  - slow_consumer(): a reader on the telemetry subjects that reads a few KiB
    per tick, so nats-server's pending limit trips and it cuts the reader off
    as a slow consumer (its counters and /connz say so), while the agent and
    a normal consumer carry on untouched.

Figures per agent: spans in, delivered (received by the core consumer /
stored in the stream), counted drops by reason, unaccounted, time to
reconnect (server back -> the agent's "reconnected" line), time to catch up
(server back -> queue empty and every span sent), queue peak and VmHWM.
"""

import json
import os
import random
import re
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from harness import NATS_SERVER, NODE, Env, TestFailure, check, finish_peer, free_port, log, start_peer, tail, wait_port
from reliability import _proc_stat
from test_export import GO, SUB_JS, ExportAgent, Sub, app_server, check_once, node_js, read_stream, spans_of, tel_server

SUBJECT = "orders.outage"


# --------------------------------------------------------------------------
# the load: nats.go publishers, one after the other, until stopped


class Repeat:
    """A peer (argv) run again and again, one at a time, in a thread until
    stop(); `total` sums the field `key` of their JSON result lines. A failed
    run stops the loop and fails stop(), unless keep_going (the soak, whose
    servers restart under the clients): then it is counted in `failed`."""

    def __init__(self, env, argv, name, key, pause=0.0, keep_going=False):
        self.env, self.argv, self.name, self.key, self.pause = env, argv, name, key, pause
        self.keep_going = keep_going
        self.total = 0
        self.runs = 0
        self.failed = 0
        self.errors = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                r = finish_peer(start_peer(self.env, self.argv, self.name), timeout=150)
                self.total += r.get(self.key, 0)
                self.runs += 1
            except TestFailure as e:
                if not self.keep_going:
                    self.errors.append(str(e))
                    return
                self.failed += 1
                self._stop.wait(0.5)
            self._stop.wait(self.pause)

    def stop(self):
        self._stop.set()
        self._t.join(180)
        check(not self._t.is_alive(), "%s did not stop", self.name)
        check(not self.errors, "%s failed: %s", self.name, self.errors[:1])
        return self.total


class Load(Repeat):
    """nats.go publishers in a row (count per process, flush + sleep after
    each message); stop() returns the messages published."""

    def __init__(self, env, url, subject=SUBJECT, count=200, interval="5ms", size=64):
        super().__init__(env, GO + ["--url", url, "--mode", "pub", "--subject", subject, "--count", count, "--interval", interval,
                                    "--size", size, "--timeout", "120s"], "pub-go", "published")


# --------------------------------------------------------------------------
# the agents and their figures


class Watched:
    """An ExportAgent with its stderr watched for connection events."""

    def __init__(self, env, mode, args):
        self.mode = mode
        self.agent = ExportAgent(env, args)
        self.hwm_ready = _proc_stat(self.agent.proc.pid)[1]

    def lines(self):
        return self.agent.stderr().splitlines()

    def mark(self):
        return len(self.lines())

    def caught_up(self, ops):
        """Every span of ops in and nothing left queued or in flight."""
        ex = self.agent.metrics()["export"]
        done = ex["spans_in"] >= ops and not ex["queue_batches"] and not ex["inflight"]
        return done, ex


def _wait_lines(agents, pattern, marks, t0, timeout):
    """Per agent: seconds from t0 to the first stderr line after marks[mode]
    matching pattern (None if none within timeout of t0); all polled at once."""
    out = {a.mode: None for a in agents}
    while any(v is None for v in out.values()) and time.monotonic() - t0 < timeout:
        for a in agents:
            if out[a.mode] is None and any(re.search(pattern, l) for l in a.lines()[marks[a.mode]:]):
                out[a.mode] = round(time.monotonic() - t0, 3)
            check(a.agent.proc.poll() is None, "the %s agent exited: %s", a.mode, tail(a.agent.err, 1500))
        time.sleep(0.02)
    return out


def _agents(env, tel_url, app_port, core_queue, extra=()):
    base = ["--nats-url", tel_url, "--port", app_port, "--set", "export.batch.max_delay_ms=200"] + list(extra)
    core = Watched(env, "core", base + ["--node", "nodec", "--set", "export.queue.max_bytes=%d" % core_queue,
                                        "--set", "export.batch.max_bytes=16KiB"])
    js = Watched(env, "jetstream", base + ["--node", "nodej", "--mode", "jetstream", "--stream", "OTEL_J",
                                           "--set", "export.jetstream.max_wait_ms=2000"])
    return core, js


def _wait_drained(agents, t0, timeout):
    """Seconds from t0 until each agent's backlog is gone (nothing queued or
    in flight, load still running), None if not within timeout."""
    out = {a.mode: None for a in agents}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(v is None for v in out.values()):
        for a in agents:
            if out[a.mode] is None:
                ex = a.agent.metrics()["export"]
                if ex["connected"] and not ex["queue_batches"] and not ex["inflight"]:
                    out[a.mode] = round(time.monotonic() - t0, 2)
        time.sleep(0.1)
    return out


def _wait_caught_up(agents, ops, t0, timeout=90):
    """Seconds from t0 until each agent has caught up (None if it did not)."""
    out = {a.mode: None for a in agents}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(v is None for v in out.values()):
        for a in agents:
            if out[a.mode] is None and a.caught_up(ops)[0]:
                out[a.mode] = round(time.monotonic() - t0, 2)
        time.sleep(0.2)
    return out


COUNTED = ("dropped_spans", "exit_dropped_spans", "oversize_spans", "encode_errors")


def _row(a, ex, ops, delivered, dups, hwm):
    """One agent's figures. Core: batches dropped after a round whose
    PING/PONG failed (dropped_unconfirmed_spans) may have reached the
    consumer; those that did are delivered, not lost, so they leave the
    counted drops (at most dropped_unconfirmed_spans of them)."""
    drops = {"export." + k: ex[k] for k in COUNTED if ex[k]}
    unconfirmed = ex.get("dropped_unconfirmed_spans", 0)
    arrived = delivered - ex["sent_spans"]
    if unconfirmed:
        drops["export.dropped_unconfirmed_spans (part of the above)"] = unconfirmed
    counted = sum(ex[k] for k in COUNTED) - (arrived if 0 < arrived <= unconfirmed else 0)
    return {
        "mode": a.mode,
        "operations": ops,
        "spans_in": ex["spans_in"],
        "sent_spans": ex["sent_spans"],
        "out": delivered,
        "duplicate_msgs": dups,
        "drops": drops,
        "unaccounted": ops - delivered - counted,
        "unconfirmed_arrived": arrived if 0 < arrived <= unconfirmed else 0,
        "resent": ex["resent"],
        "flush_errors": ex["flush_errors"],
        "js_timeouts": ex["js_timeouts"],
        "js_errors": ex["js_errors"],
        "disconnects": ex["disconnects"],
        "reconnects": ex["reconnects"],
        "queue_peak_bytes": ex["queue_peak_bytes"],
        "queue_max_bytes": ex["queue_max_bytes"],
        "vmhwm_ready_kib": a.hwm_ready,
        "vmhwm_kib": hwm,
    }


def _finish(test, agents, ops, sub_msgs, stream_msgs, extra, problems):
    """Stop both agents, account for every span, build the report."""
    hwm = {a.mode: _proc_stat(a.agent.proc.pid)[1] for a in agents}
    exs = {a.mode: a.agent.stop()["export"] for a in agents}
    msgs = {"core": sub_msgs(), "jetstream": stream_msgs()}
    rows = []
    for a in agents:
        ex = exs[a.mode]
        spans, dups, _ = spans_of(msgs[a.mode])
        mine = [s for s in spans if s["dest"] == SUBJECT]
        try:
            check_once(mine, {}, a.mode)
        except TestFailure as e:
            problems.append(str(e))
        row = _row(a, ex, ops, len(mine), dups, hwm[a.mode])
        row.update(extra.get(a.mode, {}))
        rows.append(row)
        counted = sum(ex[k] for k in COUNTED)
        if ex["spans_in"] != ops:
            problems.append("%s: the agent made %d publish spans of %d messages" % (a.mode, ex["spans_in"], ops))
        if ex["spans_in"] != ex["sent_spans"] + counted:
            problems.append("%s: %d spans in, %d sent + %d counted" % (a.mode, ex["spans_in"], ex["sent_spans"], counted))
        unconfirmed = ex.get("dropped_unconfirmed_spans", 0)
        if a.mode == "core" and not ex["sent_spans"] <= len(mine) <= ex["sent_spans"] + unconfirmed:
            problems.append("core: the consumer received %d distinct spans; sent_spans %d, dropped after an unconfirmed round %d"
                            % (len(mine), ex["sent_spans"], unconfirmed))
        if a.mode == "jetstream" and (dups or counted or len(mine) != ops):
            problems.append("jetstream: %d of %d spans stored, %d duplicate messages, %d counted drops"
                            % (len(mine), ops, dups, counted))
        if row["unaccounted"]:
            problems.append("%s: %d spans unaccounted" % (a.mode, row["unaccounted"]))
        if ex["queue_peak_bytes"] > ex["queue_max_bytes"]:
            problems.append("%s: queue peak %d over its bound %d" % (a.mode, ex["queue_peak_bytes"], ex["queue_max_bytes"]))
    report = {
        "test": test,
        "operations": ops,
        "seen": ops * len(rows),
        "out": sum(r["out"] for r in rows),
        "spans_out": sum(r["sent_spans"] for r in rows),
        "drops": {"%s.%s" % (r["mode"], k): v for r in rows for k, v in r["drops"].items()},
        "unaccounted": sum(r["unaccounted"] for r in rows),
        "agents": rows,
    }
    log("%s: %s", test, json.dumps(report))
    check(not problems, "%s\n(report %s)", "\n".join(problems), json.dumps(report))
    return report


def _create_stream(env, url):
    r = node_js(env, url, ["--create-stream", "OTEL_J", "--subject", "otel.traces.*.nodej", "--dupe-window-ms", "600000"])
    check(r.get("created"), "stream: %s", r)


# --------------------------------------------------------------------------
# 2a. nats-server killed, then restarted


def kill_outage(outage_s=5.0, before_s=3.0, after_s=3.0, core_queue=256 * 1024):
    """nats-server SIGKILLed for outage_s under ~150 msg/s, restarted on the
    same port and store. Core (queue core_queue): received = sent, in = sent +
    counted drops; JetStream: every span stored exactly once, nothing dropped.
    Both agents must reconnect (time measured) and catch up."""
    with Env("outage-kill") as env:
        app = app_server(env)
        port, store = free_port(), env.path("tel-js")
        tel = tel_server(env, jetstream=True, port=port, store=store)
        _create_stream(env, tel.url)
        sub = Sub(env, tel.url, ["--subject", "otel.traces.*.nodec", "--reconnect-wait", 20])
        core, js = agents = _agents(env, tel.url, app.port, core_queue)
        load = Load(env, app.url)
        time.sleep(before_s)
        marks = {a.mode: a.mark() for a in agents}
        tel.kill()
        tel.wait(5)
        t_kill = time.monotonic()
        detect = _wait_lines(agents, r"nats: disconnected", marks, t_kill, outage_s)
        time.sleep(max(0.0, outage_s - (time.monotonic() - t_kill)))
        tel = tel_server(env, jetstream=True, port=port, store=store)
        t_back = time.monotonic()
        reconnect = _wait_lines(agents, r"nats: reconnected", marks, t_back, 30)
        drained = _wait_drained(agents, t_back, 60)
        time.sleep(max(0.0, after_s - (time.monotonic() - t_back)))
        ops = load.stop()
        caught = _wait_caught_up(agents, ops, t_back)
        problems = ["%s: no reconnect within 30 s of the restart" % m for m, v in reconnect.items() if v is None]
        problems += ["%s: backlog not sent within 60 s of the restart" % m for m, v in drained.items() if v is None]
        problems += ["%s: not caught up within 90 s" % m for m, v in caught.items() if v is None]
        extra = {m: {"outage_s": outage_s, "detect_s": detect[m],
                     "reconnect_s": reconnect[m], "drained_s": drained[m]} for m in reconnect}
        time.sleep(0.5)
        return _finish("kill_outage", agents, ops, sub.stop, lambda: read_stream(env, tel.url, "OTEL_J"), extra, problems)


# --------------------------------------------------------------------------
# 2b. a blackholed server (network namespace, veth, `blackhole` qdisc)


class Netns:
    """A network namespace joined to this one by a veth pair (a /30 of
    10.213.0.0/16). `blackhole(True)` puts the `blackhole` qdisc on both
    ends: every packet either way is dropped without an error to the sender,
    as a cut cable or a dropping firewall does."""

    def __init__(self):
        tag = "%d%d" % (os.getpid() % 100000, random.randrange(100))
        self.name, self.host_if, self.ns_if = "wsbh" + tag, "wsbh%sa" % tag, "wsbh%sb" % tag
        k = random.randrange(1, 16000)
        net = "10.213.%d.%d" % (k // 64, (k % 64) * 4)
        base = net.rsplit(".", 1)[0] + "."
        last = int(net.rsplit(".", 1)[1])
        self.host_ip, self.ns_ip = base + str(last + 1), base + str(last + 2)
        self._made = False
        self._ip("netns", "add", self.name)
        self._made = True
        self._ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        self._ip("link", "set", self.ns_if, "netns", self.name)
        self._ip("addr", "add", self.host_ip + "/30", "dev", self.host_if)
        self._ip("link", "set", self.host_if, "up")
        self._ip("-n", self.name, "addr", "add", self.ns_ip + "/30", "dev", self.ns_if)
        self._ip("-n", self.name, "link", "set", self.ns_if, "up")
        self._ip("-n", self.name, "link", "set", "lo", "up")

    @staticmethod
    def _run(args):
        r = subprocess.run(args, capture_output=True, timeout=20)
        check(r.returncode == 0, "%s: %s", " ".join(args), r.stderr.decode(errors="replace").strip())

    def _ip(self, *args):
        self._run(["ip"] + list(args))

    def exec_prefix(self):
        return ["ip", "netns", "exec", self.name]

    def blackhole(self, on):
        verb = "add" if on else "del"
        self._run(["tc", "qdisc", verb, "dev", self.host_if, "root"] + (["blackhole"] if on else []))
        self._run(self.exec_prefix() + ["tc", "qdisc", verb, "dev", self.ns_if, "root"] + (["blackhole"] if on else []))

    def close(self):
        if not self._made:
            return
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=20)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=20)


def _ns_server(env, ns, store):
    cfg = env.path("tel-ns.conf")
    cfg.write_text('listen: "0.0.0.0:4222"\n')
    Path(store).mkdir(exist_ok=True)
    p = env.spawn(ns.exec_prefix() + [NATS_SERVER, "-c", cfg, "-js", "-sd", store], stdout=env.path("tel-ns.log"),
                  stderr=subprocess.STDOUT, name="nats-server")
    wait_port(ns.ns_ip, 4222, 10.0, p)
    return p


class _NsSub(Sub):
    """sub.js inside the namespace (on its loopback), so the blackhole cuts
    only the agents' path."""

    def __init__(self, env, ns, args):
        self.out = env.path("nssub.out")
        self.err = env.path("nssub.err")
        self.proc = env.spawn(ns.exec_prefix() + [NODE, SUB_JS, "--url", "nats://127.0.0.1:4222"] + [str(a) for a in args],
                              stdout=self.out, stderr=self.err, name="sub.js")
        deadline = time.monotonic() + 20
        while '"ready"' not in (self.out.read_text(errors="replace") if self.out.exists() else ""):
            check(self.proc.poll() is None and time.monotonic() < deadline, "sub.js in the namespace not ready: %s", tail(self.err))
            time.sleep(0.05)


def _ns_stream(env, ns):
    outp = env.path("nsstream.out")
    p = env.spawn(ns.exec_prefix() + [NODE, SUB_JS, "--url", "nats://127.0.0.1:4222", "--stream", "OTEL_J"], stdout=outp,
                  stderr=env.path("nsstream.err"), name="sub.js")
    p.wait(120)
    lines = [json.loads(l) for l in outp.read_text().splitlines() if l.startswith("{")]
    check(p.returncode == 0 and lines and lines[-1].get("done"), "reading the stream in the namespace: %s", tail(env.path("nsstream.err")))
    return [m for m in lines if "subject" in m]


def blackhole(blackhole_s=30.0, before_s=3.0, after_s=3.0, core_queue=256 * 1024, ping_ms=None, write_deadline_ms=None):
    """The telemetry server in a network namespace; every packet between it
    and the agents dropped for blackhole_s, then the path restored. Each
    agent must drop the stale connection within 1.5 s more than the larger
    of (max_pings_out + 1) PING intervals (export.nats.ping_interval_ms:
    ping_ms, default 5 s) and the write deadline (a full socket buffer;
    export.nats.write_deadline_ms: write_deadline_ms, default 5 s), reconnect
    once the path is back, count what it drops and catch up; core: received
    = sent, in = sent + counted; JetStream: every span stored exactly once."""
    ping, wd = ping_ms or 5000, write_deadline_ms or 5000
    bound = max((2 + 1) * ping, wd) / 1000.0 + 1.5
    opts = ["--set", "export.nats.ping_interval_ms=%d" % ping, "--set", "export.nats.write_deadline_ms=%d" % wd]
    ns = Netns()
    try:
        with Env("outage-blackhole") as env:
            app = app_server(env)
            tel = _ns_server(env, ns, env.path("tel-js"))
            url = "nats://%s:4222" % ns.ns_ip
            _create_stream(env, url)
            sub = _NsSub(env, ns, ["--subject", "otel.traces.*.nodec", "--reconnect-wait", 20])
            core, js = agents = _agents(env, url, app.port, core_queue, opts)
            load = Load(env, app.url)
            time.sleep(before_s)
            marks = {a.mode: a.mark() for a in agents}
            ns.blackhole(True)
            t_cut = time.monotonic()
            try:
                detect = _wait_lines(agents, r"nats: disconnected", marks, t_cut, blackhole_s)
                mid = {a.mode: a.agent.metrics()["export"] for a in agents}
                time.sleep(max(0.0, blackhole_s - (time.monotonic() - t_cut)))
            finally:
                ns.blackhole(False)
            t_back = time.monotonic()
            # an agent that never disconnected has nothing to reconnect
            reconnect = _wait_lines([a for a in agents if detect[a.mode] is not None], r"nats: reconnected", marks, t_back, 120)
            drained = _wait_drained(agents, t_back, 300)
            time.sleep(max(0.0, after_s - (time.monotonic() - t_back)))
            ops = load.stop()
            caught = _wait_caught_up(agents, ops, t_back, timeout=60)
            problems = ["%s: backlog not sent within 300 s of the restore" % m for m, v in drained.items() if v is None]
            problems += ["%s: not caught up after the load" % m for m, v in caught.items() if v is None]
            for a in agents:
                m = mid[a.mode]
                if blackhole_s > bound and (detect[a.mode] is None or detect[a.mode] > bound):
                    problems.append("%s: the stale connection was not dropped within %.1f s of the blackhole (detected: %s)"
                                    % (a.mode, bound, detect[a.mode]))
                if detect[a.mode] is None and not (m["flush_errors"] or m["js_timeouts"]):
                    problems.append("%s: the blackhole went unnoticed for %.0f s (no disconnect, no failed flush or PubAck "
                                    "timeout): %s" % (a.mode, blackhole_s, m))
                if detect[a.mode] is not None and reconnect.get(a.mode) is None:
                    problems.append("%s: disconnected, no reconnect within 120 s of the restore" % a.mode)
            extra = {a.mode: {"blackhole_s": blackhole_s, "ping_ms": ping, "write_deadline_ms": wd, "detect_s": detect[a.mode], "reconnect_s": reconnect.get(a.mode),
                              "drained_s": drained[a.mode], "during": {k: mid[a.mode][k] for k in (
                                  "connected", "flush_errors", "js_timeouts", "resent", "dropped_spans", "queue_bytes")}}
                     for a in agents}
            time.sleep(0.5)
            rep = _finish("blackhole", agents, ops, sub.stop, lambda: _ns_stream(env, ns), extra, problems)
            tel.terminate()
            return rep
    finally:
        ns.close()


# --------------------------------------------------------------------------
# 2c. a slow consumer of the telemetry


class SlowReader:
    """A raw NATS client subscribed to the telemetry subjects that reads at
    most `chunk` bytes per `tick` through a small receive buffer. Counts the
    messages it got and how it ended (the server's -ERR, EOF)."""

    def __init__(self, port, subject="otel.traces.>", chunk=1024, tick=0.1):
        self.msgs = 0
        self.bytes = 0
        self.ended = None
        self.err_line = None
        self.chunk, self.tick = chunk, tick
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.s.connect(("127.0.0.1", port))
        self.s.settimeout(10)
        self.buf = b""
        while b"\r\n" not in self.buf:
            self.buf += self.s.recv(4096)
        self.buf = self.buf.split(b"\r\n", 1)[1]
        self.s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"name":"slow-reader"}\r\n'
                       b"SUB %s 1\r\nPING\r\n" % subject.encode())
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _parse(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i < 0:
                return
            line = self.buf[:i]
            if line.startswith((b"MSG ", b"HMSG ")):
                total = int(line.split()[-1])
                if len(self.buf) < i + 2 + total + 2:
                    return
                self.buf = self.buf[i + 2 + total + 2:]
                self.msgs += 1
                continue
            self.buf = self.buf[i + 2:]
            if line == b"PING":
                self.s.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                self.err_line = line.decode(errors="replace")

    def _run(self):
        while not self._stop.is_set():
            try:
                d = self.s.recv(self.chunk)
            except OSError as e:
                self.ended = "error: %s" % e
                return
            if not d:
                self.ended = "closed by the server"
                self._parse()
                return
            self.bytes += len(d)
            self.buf += d
            self._parse()
            time.sleep(self.tick)

    def stop(self):
        self._stop.set()
        self._t.join(15)
        self.s.close()


def _http_json(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return json.load(r)


def slow_consumer(load_s=30.0, max_pending=256 * 1024):
    """A reader of the telemetry that cannot keep up (SlowReader) next to a
    normal one (sub.js), nats-server with max_pending = max_pending: the
    server cuts the slow one off (slow_consumers in /varz, reason in /connz),
    the agent is unaffected (no flush error, no drop, every span to the
    normal consumer; its own slow_consumer counter 0)."""
    with Env("outage-slow") as env:
        app = app_server(env)
        mport = free_port()
        tel = tel_server(env, conf='http: "127.0.0.1:%d"\nmax_payload: %d\nmax_pending: %d\nwrite_deadline: "2s"' % (mport, max_pending // 4, max_pending))
        sub = Sub(env, tel.url, ["--subject", "otel.traces.*.nodec"])
        agent = Watched(env, "core", ["--nats-url", tel.url, "--port", app.port, "--node", "nodec",
                                      "--set", "export.batch.max_delay_ms=50"])
        slow = SlowReader(tel.port)
        load = Load(env, app.url, interval="2ms", size=512)
        time.sleep(load_s)
        ops = load.stop()
        caught = _wait_caught_up([agent], ops, time.monotonic())
        slow.stop()
        varz = _http_json(mport, "/varz")
        closed = [c for c in _http_json(mport, "/connz?state=closed&limit=100").get("connections") or []
                  if c.get("name") == "slow-reader"]
        hwm = _proc_stat(agent.agent.proc.pid)[1]
        ex = agent.agent.stop()["export"]
        spans, dups, by_id = spans_of(sub.stop())
        mine = [s for s in spans if s["dest"] == SUBJECT]
        problems = []
        try:
            check_once(mine, {}, "core")
        except TestFailure as e:
            problems.append(str(e))
        row = _row(agent, ex, ops, len(mine), dups, hwm)
        reason = closed[0].get("reason") if closed else None
        row.update({"caught_up_s": caught["core"], "slow_reader_msgs": slow.msgs, "slow_reader_bytes": slow.bytes,
                    "slow_reader_end": slow.ended, "slow_reader_err": slow.err_line, "server_slow_consumers": varz.get("slow_consumers"),
                    "server_close_reason": reason, "server_out_msgs_to_reader": closed[0].get("out_msgs") if closed else None,
                    "agent_msgs": ex["sent_batches"]})
        counted = sum(ex[k] for k in COUNTED)
        if ex["spans_in"] != ops or ex["sent_spans"] != len(mine) or counted or row["unaccounted"]:
            problems.append("the agent was affected: %d ops, %d spans in, %d sent, %d received, %d counted drops"
                            % (ops, ex["spans_in"], ex["sent_spans"], len(mine), counted))
        for k in ("flush_errors", "publish_errors", "slow_consumer", "disconnects"):
            if ex[k]:
                problems.append("the agent's export.%s = %d" % (k, ex[k]))
        if not varz.get("slow_consumers") or not reason or "slow consumer" not in reason.lower():
            problems.append("nats-server did not flag the slow reader: slow_consumers %s, close reason %s"
                            % (varz.get("slow_consumers"), reason))
        if slow.msgs >= ex["sent_batches"]:
            problems.append("the slow reader got all %d messages: it was not slow" % slow.msgs)
        report = {
            "test": "slow_consumer",
            "operations": ops,
            "seen": ops,
            "out": len(mine),
            "spans_out": ex["sent_spans"],
            "drops": {"export." + k: ex[k] for k in COUNTED if ex[k]},
            "unaccounted": row["unaccounted"],
            "agents": [row],
        }
        log("slow_consumer: %s", json.dumps(report))
        check(not problems, "%s\n(report %s)", "\n".join(problems), json.dumps(report))
        return report


# --------------------------------------------------------------------------
# markdown tables for docs/RELIABILITY.md (tests/reliability/run.py)


def _fmt(v, unit=""):
    return "-" if v is None else "%s%s" % (v, unit)


def tables(results):
    """results: run.py's [{"name", "report"}]; the rows of this module's runs."""
    def drops(d):
        return ", ".join("%s %s" % (k, v) for k, v in sorted(d.items())) or "none"

    out = []
    rows = [(r["name"], a) for r in results if r["report"] and r["report"]["test"] in ("kill_outage", "blackhole") for a in r["report"]["agents"]]
    if rows:
        out += ["| run | mode | operations | spans in | delivered (distinct) | duplicate msgs | drops counted | unaccounted | "
                "outage seen after | reconnected after | backlog sent after | resent | queue peak / bound | VmHWM ready -> end |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, a in rows:
            out.append("| %s | %s | %d | %d | %d | %d | %s | %d | %s | %s | %s | %d | %d / %d KiB | %d -> %d KiB |" % (
                name, a["mode"], a["operations"], a["spans_in"], a["out"], a["duplicate_msgs"], drops(a["drops"]), a["unaccounted"],
                _fmt(a.get("detect_s"), " s"), _fmt(a.get("reconnect_s"), " s"), _fmt(a.get("drained_s"), " s"), a["resent"],
                a["queue_peak_bytes"] // 1024, a["queue_max_bytes"] // 1024, a["vmhwm_ready_kib"], a["vmhwm_kib"]))
        out.append("")
    slow = [(r["name"], r["report"]["agents"][0]) for r in results if r["report"] and r["report"]["test"] == "slow_consumer"]
    if slow:
        out += ["| run | operations | spans in | received by the normal consumer | agent drops / flush errors / disconnects | unaccounted | "
                "agent messages | to the slow reader before the cut | read by it | server: slow_consumers, close reason | VmHWM ready -> end |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, a in slow:
            out.append("| %s | %d | %d | %d | %s / %d / %d | %d | %d | %s | %d | %s, %s | %d -> %d KiB |" % (
                name, a["operations"], a["spans_in"], a["out"], drops(a["drops"]), a["flush_errors"], a["disconnects"], a["unaccounted"],
                a["agent_msgs"], _fmt(a["server_out_msgs_to_reader"]), a["slow_reader_msgs"], a["server_slow_consumers"],
                a["server_close_reason"], a["vmhwm_ready_kib"], a["vmhwm_kib"]))
        out.append("")
    return "\n".join(out)
