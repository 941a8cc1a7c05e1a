# SPDX-License-Identifier: Apache-2.0
"""The reliability scenarios of issue 9 (docs/RELIABILITY.md), parameterised
so that tests/integration/test_reliability.py runs short versions in `make
test` and tests/reliability/run.py runs long ones (`make reliability`).

Each scenario raises TestFailure on a problem and returns a report dict:
  test, operations, spans_out (or bytes captured for the capture), drops
  (counted, by reason), seen, unaccounted = seen - out - counted (must be 0),
  plus the scenario's own figures (recovery time, VmHWM, CPU per MB...).
"""

import os
import random
import re
import signal
import socket
import subprocess
import time

from harness import (PYTHON, RAW_PEER, SINK_PEER, Agent, Capture, Env, check, free_port, log, metric,
                     find_metrics, nobody_copy, peer_result, start_peer)

# --------------------------------------------------------------------------
# 1. ring-buffer saturation


def _start_sink(env, port, timeout):
    sink = env.spawn([PYTHON, SINK_PEER, "--port", port, "--timeout", timeout],
                     stdout=env.path("sink.%d.out" % port), stderr=env.path("sink.%d.err" % port), name="natssink")
    deadline = time.monotonic() + 10
    while "listening" not in env.path("sink.%d.err" % port).read_text():  # no probe: the sink takes one connection
        check(time.monotonic() < deadline and sink.poll() is None, "sink did not start: %s",
              env.path("sink.%d.err" % port).read_text())
        time.sleep(0.05)
    return sink


def saturation(stop_seconds=2.0, before=0.5, after=1.0, pairs=2, ringbuf=262144):
    """`pairs` flood senders (rawclient --flood, 64 KiB sends) into as many
    sinks, one pair per core, under `wirespan capture --summary` with a small
    ring buffer; the capture is SIGSTOPped for stop_seconds while they flood.
    Every byte each peer moved must be captured or counted as a gap (per
    connection and direction), the kernel's rb_full_bytes must equal the
    userspace 'lost' gap bytes, and the consumer must answer a SIGUSR1 sent
    at SIGCONT (recovery_ms: the time it takes to drain and come back)."""
    flood_seconds = before + stop_seconds + after
    with Env("saturation") as env:
        ports = [free_port() for _ in range(pairs)]
        sinks = [_start_sink(env, p, flood_seconds + 60) for p in ports]
        args = ["--ringbuf-size", ringbuf, "--summary"]
        for p in ports:
            args += ["--port", p]
        cap = Capture(env, args)
        senders = [start_peer(env, [PYTHON, RAW_PEER, "--url", "nats://127.0.0.1:%d" % p, "--flood", 1 << 40,
                                    "--flood-chunk", 65536, "--flood-seconds", flood_seconds], "rawclient")
                   for p in ports]
        time.sleep(before)
        m0 = cap.metrics_now()
        check(m0 is not None, "capture did not answer SIGUSR1 before the stop")
        cap.proc.send_signal(signal.SIGSTOP)
        time.sleep(stop_seconds)
        # SIGUSR1 stays pending while stopped; it is handled once the loop
        # has drained what the ring holds.
        with cap._lock:
            k = len(cap.stderr_lines)
        cap.proc.send_signal(signal.SIGUSR1)
        t_cont = time.monotonic()
        cap.proc.send_signal(signal.SIGCONT)
        m1 = None
        while m1 is None and time.monotonic() - t_cont < 10:
            with cap._lock:
                new = cap.stderr_lines[k:]
            m1 = find_metrics(new)
            time.sleep(0.001)
        recovery_ms = (time.monotonic() - t_cont) * 1000
        check(m1 is not None, "capture did not answer SIGUSR1 within 10 s of SIGCONT")
        sres = [peer_result(s, s.wirespan_out, s.wirespan_err, "rawclient") for s in (_finish(s) for s in senders)]
        for s in sinks:
            s.wait(30)
        kres = [peer_result(s, env.path("sink.%d.out" % p), env.path("sink.%d.err" % p), "natssink") for s, p in zip(sinks, ports)]
        pids = {r["_pid"] for r in sres} | {s.pid for s in sinks}
        cap.wait_for(lambda ls: {l.get("pid") for l in ls if l.get("type") == "close"} >= pids, 15, "flood closes")
        res = cap.stop()
        res.check_well_formed()

        problems, seen, captured, gaps = [], 0, 0, 0
        for sr, sink, kr in zip(sres, sinks, kres):
            sc, (sk,) = sr["conn"], kr["conns"]
            if sk["ingress_bytes"] != sc["egress_bytes"]:
                problems.append("sink got %d bytes, sender sent %d" % (sk["ingress_bytes"], sc["egress_bytes"]))
            for pid, d, want in ((sr["_pid"], "egress", sc["egress_bytes"]), (sr["_pid"], "ingress", sc["ingress_bytes"]),
                                 (sink.pid, "ingress", sk["ingress_bytes"]), (sink.pid, "egress", sk["egress_bytes"])):
                cs = [c for c in res.by_pid(pid) if c.close is not None]
                if len(cs) != 1:
                    problems.append("pid %d: %d closed connections in the capture, expected 1" % (pid, len(cs)))
                    continue
                cd = cs[0].close[d]
                seen += want
                captured += cd["captured"]
                gaps += cd["gap"]
                if cd["bytes"] != want:
                    problems.append("pid %d %s: close.bytes %d, the peer moved %d" % (pid, d, cd["bytes"], want))
        mx = res.metrics
        reasons = dict((mx.get("user") or {}).get("gap_bytes") or {})
        counted = sum(v for v in reasons.values() if isinstance(v, int))
        lost, rb_bytes = reasons.get("lost"), metric(mx, "rb_full_bytes")
        if lost != rb_bytes:
            problems.append("user gap_bytes.lost %s != kernel rb_full_bytes %s" % (lost, rb_bytes))
        if counted != gaps:
            problems.append("gap bytes by reason %s sum to %d, the close lines count %d" % (reasons, counted, gaps))
        rb0, rb1 = metric(m0, "rb_full_events") or 0, metric(m1, "rb_full_events") or 0
        if rb1 <= rb0:
            problems.append("the ring buffer did not overflow while the consumer was stopped (rb_full_events %d -> %d)" % (rb0, rb1))
        report = {
            "test": "saturation",
            "stop_s": stop_seconds,
            "pairs": pairs,
            "ringbuf": ringbuf,
            "operations": sum(r["conn"]["frames"] for r in sres),
            "seen": seen,
            "spans_out": None,
            "out": captured,
            "drops": {k: v for k, v in reasons.items() if v},
            "rb_full_events": metric(mx, "rb_full_events"),
            "rb_full_events_during_stop": rb1 - rb0,
            "unaccounted": seen - captured - gaps,
            "recovery_ms": round(recovery_ms, 1),
        }
        log("saturation: %s", report)
        if report["unaccounted"]:
            problems.append("%d bytes unaccounted (seen %d, captured %d, gaps %d)" % (report["unaccounted"], seen, captured, gaps))
        check(not problems, "%s\n(report %s)", "\n".join(problems), report)
        return report


def _finish(p, timeout=120):
    p.wait(timeout)
    return p



# --------------------------------------------------------------------------
# 3. adversarial traffic on real sockets

NATS_INFO = b'INFO {"server_id":"WIRESPANADV","version":"2.9.10","proto":1,"headers":true,"max_payload":1048576}\r\n'
HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class _Sink:
    """A threaded loopback listener: each connection gets `greeting` first
    (NATS: INFO), is read until EOF, and gets HTTP_OK once per request head
    whose path starts with /ok (the well-formed probes)."""

    def __init__(self, greeting=b""):
        import threading

        self.greeting = greeting
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.ls.settimeout(0.2)
        self.port = self.ls.getsockname()[1]
        self.stop = False
        self.received = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                s, _ = self.ls.accept()
            except OSError:
                continue
            with s:
                s.settimeout(10)
                if self.greeting:
                    s.sendall(self.greeting)
                buf = b""
                try:
                    while True:
                        d = s.recv(1 << 16)
                        if not d:
                            break
                        self.received += len(d)
                        buf = (buf + d)[-70000:]
                        while b"\r\n\r\n" in buf and buf.startswith(b"GET /ok"):
                            buf = buf[buf.index(b"\r\n\r\n") + 4:]
                            s.sendall(HTTP_OK)
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.ls.close()


def _send(port, chunks, per_byte=None):
    """One connection: send chunks (from chunk per_byte on, one byte per send(2)),
    half-close, read until the sink closes. Returns the bytes sent."""
    n = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for k, ch in enumerate(chunks):
            if per_byte is not None and k >= per_byte:
                for i in range(len(ch)):
                    n += c.send(ch[i:i + 1])
            else:
                c.sendall(ch)
                n += len(ch)
        c.shutdown(socket.SHUT_WR)
        while c.recv(1 << 16):
            pass
    return n


def adversarial_cases(rng, random_kib):
    """(name, protocol, chunks, per_byte) for every item of issue 9's list;
    per_byte is None (one sendall per chunk) or the index of the first chunk
    sent one byte per send(2)."""
    big = b"x" * 65536
    whole = None
    return [
        ("http 64 KiB header", "http", [b"GET /big HTTP/1.1\r\nHost: a\r\nX-Big: " + big + b"\r\n\r\n"], whole),
        ("http 10k tiny headers", "http", [b"GET /many HTTP/1.1\r\n" + b"a: b\r\n" * 10000 + b"\r\n"], whole),
        ("http Content-Length larger than the body", "http",
         [b"POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\nshort"], whole),
        ("http Content-Length overflowing 64 bits", "http",
         [b"POST /cl2 HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\nabc"], whole),
        ("http negative and doubled Content-Length", "http",
         [b"POST /cl3 HTTP/1.1\r\nContent-Length: -5\r\nContent-Length: 7\r\n\r\nabcdefg"], whole),
        ("http chunk size overflowing 64 bits", "http",
         [b"POST /ch HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nabc\r\n0\r\n\r\n"], whole),
        ("http chunk size larger than the chunk", "http",
         [b"POST /ch2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\nabc\r\n0\r\n\r\n"], whole),
        ("http chunk size not hex", "http",
         [b"POST /ch3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"], whole),
        ("nats control line over 4 KiB", "nats", [b"CONNECT {}\r\nPUB " + b"s" * 5000 + b" 5\r\nhello\r\n"], whole),
        ("nats HPUB header length over total", "nats", [b"CONNECT {}\r\nHPUB adv 100 10\r\nNATS/1.0\r\n\r\n0123456789\r\n"], whole),
        ("nats PUB size lying (larger)", "nats", [b"CONNECT {}\r\nPUB adv 100000\r\nshort\r\n"], whole),
        ("http random bytes", "http", [rng.randbytes(random_kib * 1024)], whole),
        ("nats random bytes", "nats", [rng.randbytes(random_kib * 1024)], whole),
        # the first write carries the verb and the byte after it (what the
        # kernel classifies a connection by: "CONNECT " alone is HTTP or
        # NATS), then one byte per write
        ("http one byte per write after the method", "http", [b"GET /ok", b"-bytewise HTTP/1.1\r\nHost: a\r\n\r\n"], 1),
        ("nats one byte per write after the verb", "nats", [b"CONNECT {", b"}\r\nPUB ok.bytewise 5\r\nhello\r\n"], 1),
        # every byte its own write: the first buffer cannot be classified
        ("http one byte per write", "http", [b"GET /ok-allbytes HTTP/1.1\r\nHost: a\r\n\r\n"], 0),
        ("nats one byte per write", "nats", [b"CONNECT {}\r\nPUB ok.allbytes 5\r\nhello\r\n"], 0),
    ]


def _proc_stat(pid):
    """(utime + stime in seconds, VmHWM in KiB) of pid."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with open("/proc/%d/status" % pid) as f:
        hwm = int(re.search(r"^VmHWM:\s+(\d+)", f.read(), re.M).group(1))
    return cpu, hwm


def adversarial(rounds=1, random_kib=64, hwm_growth_kib=16 * 1024):
    """Every adversarial case of issue 9 on its own connection, `rounds`
    times, each case followed by a well-formed HTTP request and NATS PUB on a
    new connection (the probes). The agent must exit 0 at SIGINT, count parse
    errors for HTTP and NATS, print exactly one client span per probe (the
    rest of the data flows), and its VmHWM may grow by at most hwm_growth_kib
    over its value at ready (BTF and BPF loading peak there); reports the
    agent's CPU per MB sent."""
    rng = random.Random(9)
    with Env("adversarial") as env:
        hs, ns = _Sink(), _Sink(NATS_INFO)
        try:
            agent = Agent(env, ["--port", hs.port, "--port", ns.port])
            cpu0, hwm0 = _proc_stat(agent.proc.pid)
            sent = probes_http = probes_nats = 0
            want_http, want_nats, unclassifiable = set(), set(), 0
            for r in range(rounds):
                for name, proto, chunks, per_byte in adversarial_cases(rng, random_kib):
                    sent += _send(hs.port if proto == "http" else ns.port, chunks, per_byte=per_byte)
                    if per_byte == 1:
                        (want_http if proto == "http" else want_nats).add("%s.%d" % (proto, r))
                    elif per_byte == 0:
                        unclassifiable += 1
                    sent += _send(hs.port, [b"GET /ok-%d HTTP/1.1\r\nHost: a\r\n\r\n" % probes_http])
                    sent += _send(ns.port, [b"CONNECT {}\r\nPUB ok.%d 2\r\nhi\r\n" % probes_nats])
                    probes_http += 1
                    probes_nats += 1
            probes_http += len(want_http)
            probes_nats += len(want_nats)
            ok = agent.wait_for(lambda sp: _probe_spans(sp)[0] >= probes_http and _probe_spans(sp)[1] >= probes_nats,
                                20, "probe spans")
            cpu1, hwm = _proc_stat(agent.proc.pid)
            res = agent.stop()
        finally:
            hs.close()
            ns.close()
        res.check_well_formed()
        am = res.agent_metrics
        http_errs = {k: v for k, v in ((am.get("http") or {}).get("parse_errors") or {}).items() if v}
        nats_errs = (am.get("nats") or {}).get("parse_errors", 0)
        got_http, got_nats = _probe_spans(res.spans)
        drops = {"http.parse_errors." + k: v for k, v in http_errs.items()}
        drops["nats.parse_errors"] = nats_errs
        for k in ("gap_bytes", "skipped_bytes", "stopped_bytes", "truncated", "nomem", "pending_dropped", "pending_evicted"):
            if (am.get("http") or {}).get(k):
                drops["http." + k] = am["http"][k]
        for k in ("gap_bytes", "nomem", "pending_evicted", "recent_evicted"):
            if (am.get("nats") or {}).get(k):
                drops["nats." + k] = am["nats"][k]
        # Every byte its own write on a fresh connection: the kernel gives
        # up classifying it (its first buffer is one byte) and counts that.
        # The client ends of those connections and of the random-bytes ones
        # must all be in classify_giveup; the sink ends may add more.
        giveup, unclassified = metric(res.metrics, "classify_giveup") or 0, metric(res.metrics, "unclassified_bytes") or 0
        all_bytes = sum(1 for s in res.spans if s.kind == 3 and (_path(s).startswith("/ok-allbytes") or s.name == "publish ok.allbytes"))
        counted_ops = unclassifiable - all_bytes
        drops["kernel.classify_giveup(conns)"] = giveup
        drops["kernel.unclassified_bytes"] = unclassified
        ops = probes_http + probes_nats + unclassifiable
        report = {
            "test": "adversarial",
            "rounds": rounds,
            "cases": len(adversarial_cases(random.Random(0), 0)),
            "unclassifiable_ops": unclassifiable,
            "counted_ops": counted_ops,
            "bytes_sent": sent,
            "operations": ops,
            "seen": ops,
            "spans_out": am.get("spans_out"),
            "out": got_http + got_nats + all_bytes,
            "drops": drops,
            "unaccounted": ops - got_http - got_nats - all_bytes - counted_ops,
            "vmhwm_kib": hwm,
            "vmhwm_start_kib": hwm0,
            "cpu_s": round(cpu1 - cpu0, 3),
            "cpu_ms_per_mb": round((cpu1 - cpu0) * 1000 / (sent / 1e6), 2),
        }
        log("adversarial: %s", report)
        problems = []
        if not ok or report["unaccounted"]:
            problems.append("probe client spans: %d/%d HTTP, %d/%d NATS (the data after bad input must still flow)"
                            % (got_http, probes_http, got_nats, probes_nats))
        giveup_min = (2 + 2) * rounds  # client ends: random bytes (2 cases), every byte its own write (2)
        if giveup < giveup_min:
            problems.append("kernel classify_giveup %d < %d (the unclassifiable connections are not all counted)" % (giveup, giveup_min))
        if not http_errs:
            problems.append("no HTTP parse error counted: %s" % (am.get("http") or {}).get("parse_errors"))
        if not nats_errs:
            problems.append("no NATS parse error counted")
        if hwm - hwm0 > hwm_growth_kib:
            problems.append("agent VmHWM grew %d KiB (%d -> %d), over the %d KiB bound" % (hwm - hwm0, hwm0, hwm, hwm_growth_kib))
        check(not problems, "%s\n(report %s; agent_metrics %s)", "\n".join(problems), report, am)
        return report


def _probe_spans(spans):
    """Client spans of the well-formed probes: (HTTP GET /ok-*, NATS publish ok.*)."""
    h = sum(1 for s in spans if s.kind == 3 and _path(s).startswith("/ok-") and not _path(s).startswith("/ok-allbytes"))
    n = sum(1 for s in spans if s.name.startswith("publish ok.") and s.name != "publish ok.allbytes")
    return h, n


def _path(span):
    return str(span.attrs.get("url.path", ""))


# --------------------------------------------------------------------------
# 6. least privilege


def least_privilege():
    """Starting from exactly the capabilities deploy/systemd/wirespan.service
    declares, as user nobody (so no CAP_SYS_ADMIN stands in for CAP_BPF or
    CAP_PERFMON): with the full set `wirespan agent --duration 1` exits 0 (the
    control); with each capability that `wirespan doctor --caps` lists as
    required removed in turn, the agent exits 4 naming it without printing
    ready, and `wirespan doctor --no-nats` reports FAIL for it. Complements
    test_cli.py::test_missing_capability (drops from root's full set) and
    test_deploy.py::test_deploy_least_privilege_agent (spans with the set)."""
    import shutil

    from test_deploy import agent_caps, unit_caps

    required = sorted(agent_caps())
    declared = sorted(unit_caps()[0])
    check(required, "wirespan doctor --caps lists no required capability")
    check(set(required) <= set(declared), "deploy/ declares %s, the agent requires %s", declared, required)
    # the HMAC secret in a state directory nobody owns, as the unit's
    # StateDirectory= gives it (test_deploy_least_privilege_agent does too)
    bindir, binary, state = nobody_copy("wirespan-rel-lp-")
    try:
        agent = ["agent", "--output", "stdout", "--duration", "1", "--key-hash-secret-file", os.path.join(state, "key-hash.secret")]

        def run(caps, *args):
            c = ",".join(x.lower() for x in caps)
            wrap = ["capsh", "--caps=%s%scap_setpcap,cap_setuid,cap_setgid+eip" % (c, "," if c else ""), "--keep=1",
                    "--user=nobody"] + (["--addamb=%s" % c] if c else []) + ["--", "-c", 'exec "$0" "$@"']
            r = subprocess.run(wrap + [binary] + list(args), capture_output=True, timeout=60, cwd=bindir)
            return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")

        rc, _, err = run(declared, *agent)
        check(rc == 0, "the agent with the declared capabilities %s as nobody: exit %s: %s", declared, rc, err[-400:])
        rows, problems = [], []
        for cap in required:
            rest = [c for c in declared if c != cap]
            rc, _, err = run(rest, *agent)
            named = "missing capability " + cap in err
            drc, dout, _ = run(rest, "doctor", "--no-nats")
            doc = drc == 1 and re.search(r"^FAIL\s+%s\b" % cap, dout, re.M) is not None
            rows.append({"removed": cap, "exit": rc, "named": named, "ready": bool(re.search(r"\bready\b", err)), "doctor_fail": doc})
            if rc != 4 or not named or rows[-1]["ready"]:
                problems.append("without %s: exit %s (want 4), named %s, ready printed %s; stderr: %s"
                                % (cap, rc, named, rows[-1]["ready"], err[-300:]))
            if not doc:
                problems.append("doctor without %s: exit %s and no FAIL line for it:\n%s" % (cap, drc, dout))
    finally:
        shutil.rmtree(bindir, ignore_errors=True)
    report = {
        "test": "least_privilege",
        "declared": declared,
        "operations": len(required),
        "seen": len(required),
        "out": sum(1 for r in rows if r["exit"] == 4 and r["named"] and not r["ready"] and r["doctor_fail"]),
        "spans_out": None,
        "drops": {},
        "removals": rows,
    }
    report["unaccounted"] = report["seen"] - report["out"]
    log("least_privilege: %s", report)
    check(not problems, "%s", "\n".join(problems))
    return report
