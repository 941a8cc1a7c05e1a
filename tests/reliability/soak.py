#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""`make soak DURATION=600`: issue 9 item 7, the agent under a mixed load for
DURATION seconds with the NATS servers restarted periodically
(docs/RELIABILITY.md, "Soak").

  soak.py [--duration S] [--restart-every S] [--down S] [--sample-every S]
          [--out DIR]

The load, all on loopback, each part a loop of short-lived client processes
(so process and connection churn come with it):
  - NATS pub/sub: nats.go publishers (200 messages, 20 ms apart, per
    process) and one nats.go subscriber on the app server;
  - NATS request/reply: a nats.go replier and nats.go requesters (20
    requests per process, 1 s between processes);
  - HTTP: httpload.py (50 requests over 2 keep-alive connections per
    process, 2 s between processes) through caddy and through nginx to one
    Python backend.
One `wirespan agent` (core mode, default settings) traces the app server,
both gateways and the backend, and exports to a telemetry nats-server that a
counting consumer (a raw NATS subscriber here, deduplicating by
Nats-Msg-Id) reads. Every --restart-every seconds a nats-server is killed
for --down seconds and started again on the same port: the telemetry server
and the app server in turn (client runs that fail while the app server is
away are counted, not fatal; the subscriber and the replier, which do not
reconnect, are started again).

Every --sample-every seconds: the agent's VmRSS, VmHWM, open fds, threads
and its agent_metrics (SIGUSR1). At the end: RSS and fd growth per hour (a
least-squares line through the samples after the first fifth of the run),
the drop rate (counted export drops / spans in), unaccounted = spans in -
sent - counted (must be 0), and what the consumer received (between sent
and sent + dropped_unconfirmed_spans distinct spans). Writes DIR/soak.json
(every sample) and DIR/soak.md (the tables for docs/RELIABILITY.md). Exit
status 1 if the agent exited, spans are unaccounted or the consumer's count
is out of range. Needs root (BPF).
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
from harness import HTTP_BACKEND, PYTHON, Env, check, free_port, wait_port  # noqa: E402
from reliability_outage import GO, Repeat  # noqa: E402
from test_capture import start_caddy, start_nginx  # noqa: E402
from test_export import ExportAgent, tel_server  # noqa: E402
from test_http_agent import HTTPLOAD  # noqa: E402


class Consumer:
    """A raw NATS subscriber to otel.traces.> that reconnects every 50 ms
    while the server is away; counts messages and, per distinct Nats-Msg-Id,
    the spans of its Wirespan-Spans header."""

    def __init__(self, port):
        self.port = port
        self.msgs = self.dups = self.spans = self.connects = 0
        self.ids = set()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        deadline = time.monotonic() + 10
        while not self.connects and time.monotonic() < deadline:
            time.sleep(0.05)
        check(self.connects, "the consumer did not connect")

    def _run(self):
        while not self._stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=1)
            except OSError:
                time.sleep(0.05)
                continue
            try:
                self._session(s)
            except OSError:
                pass
            finally:
                s.close()

    def _session(self, s):
        s.settimeout(0.5)
        buf = b""
        while b"\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                return
            buf += d
        buf = buf.split(b"\r\n", 1)[1]
        s.sendall(b'CONNECT {"verbose":false,"headers":true,"name":"soak-consumer"}\r\nSUB otel.traces.> 1\r\nPING\r\n')
        self.connects += 1
        while not self._stop.is_set():
            i = buf.find(b"\r\n")
            if i >= 0:
                line = buf[:i]
                if line.startswith(b"HMSG "):
                    f = line.split()
                    hlen, total = int(f[-2]), int(f[-1])
                    if len(buf) < i + 2 + total + 2:
                        i = -1
                    else:
                        self._msg(buf[i + 2:i + 2 + hlen])
                        buf = buf[i + 2 + total + 2:]
                        continue
                else:
                    buf = buf[i + 2:]
                    if line == b"PING":
                        s.sendall(b"PONG\r\n")
                    continue
            try:
                d = s.recv(1 << 20)
            except socket.timeout:
                continue
            if not d:
                return
            buf += d

    def _msg(self, hdr):
        h = {}
        for ln in hdr.split(b"\r\n")[1:]:
            if b":" in ln:
                k, v = ln.split(b":", 1)
                h[k.strip().decode()] = v.strip().decode()
        self.msgs += 1
        mid = h.get("Nats-Msg-Id")
        if mid in self.ids:
            self.dups += 1
            return
        self.ids.add(mid)
        self.spans += int(h.get("Wirespan-Spans", 0))

    def stop(self):
        self._stop.set()
        self._t.join(5)


def agent_metrics(agent, timeout=30.0):
    """SIGUSR1 -> the agent's next agent_metrics line, or None after timeout
    (a starved agent on a loaded machine answers late; ExportAgent.metrics
    gives it 5 s)."""
    n = len(agent._all())
    agent.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ms = agent._all()
        if len(ms) > n:
            return ms[-1]
        time.sleep(0.1)
    return None


def proc_sample(pid):
    """VmRSS, VmHWM, threads, fds; and from smaps the RSS of the BPF map
    mappings (the ring buffer, mapped at start) and of the heap and other
    anonymous memory (what malloc holds: where a leak would show)."""
    st = {}
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            k, _, v = ln.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads", "RssAnon"):
                st[k] = int(v.split()[0])
    bpf, name = 0, ""
    with open("/proc/%d/smaps" % pid) as f:
        for ln in f:
            first = ln.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):
                parts = ln.split()
                name = parts[5] if len(parts) > 5 else ""
            elif first == "Rss:" and name.startswith("anon_inode:bpf"):
                bpf += int(ln.split()[1])
    return {"rss_kib": st["VmRSS"], "hwm_kib": st["VmHWM"], "anon_kib": st["RssAnon"], "bpf_maps_kib": bpf,
            "threads": st["Threads"], "fds": len(os.listdir("/proc/%d/fd" % pid))}


def slope_per_hour(samples, key, skip_frac=0.2):
    """Least-squares slope of samples[key] over t (s), per hour, after the
    first skip_frac of the run (start-up: BTF, maps, first caches)."""
    if not samples:
        return None
    t_end = samples[-1]["t"]
    pts = [(s["t"], s[key]) for s in samples if s["t"] >= skip_frac * t_end]
    if len(pts) < 3:
        return None
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    mv = sum(v for _, v in pts) / n
    var = sum((t - mt) ** 2 for t, _ in pts)
    return round(sum((t - mt) * (v - mv) for t, v in pts) / var * 3600, 1) if var else None




COUNTED = ("dropped_spans", "exit_dropped_spans", "oversize_spans", "encode_errors")


def soak(duration, restart_every, down, sample_every):
    with Env("soak") as env:
        app_port, tel_port = free_port(), free_port()

        def app_server():
            cfg = env.path("app.conf")
            cfg.write_text('listen: "127.0.0.1:%d"\n' % app_port)
            p = env.spawn([harness.NATS_SERVER, "-c", cfg], stdout=env.path("app.%d.log" % len(env.procs)),
                          stderr=subprocess.STDOUT, name="nats-server")
            wait_port("127.0.0.1", app_port, 10.0, p)
            return p

        app = app_server()
        tel = tel_server(env, port=tel_port)
        app_url = "nats://127.0.0.1:%d" % app_port
        bport, cport, nport = free_port(), free_port(), free_port()
        backend = env.spawn([PYTHON, HTTP_BACKEND, "--port", bport, "--timeout", duration + 600], stdout=env.path("backend.out"),
                            stderr=env.path("backend.err"), name="httpbackend")
        wait_port("127.0.0.1", bport, 10, backend)
        caddy, nginx = start_caddy(env, cport, bport), start_nginx(env, nport, bport)
        wait_port("127.0.0.1", cport, 15, caddy)
        wait_port("127.0.0.1", nport, 15, nginx)
        consumer = Consumer(tel_port)
        agent = ExportAgent(env, ["--nats-url", tel.url, "--node", "soak", "--port", app_port, "--port", cport, "--port", nport,
                                  "--port", bport])
        pid = agent.proc.pid
        stop_file = env.path("stop")
        long_peer = ["--stop-file", stop_file, "--count", 1 << 30, "--timeout", "%ds" % (duration + 600)]
        # the nats.go subscriber and replier (natsrole does not reconnect): started again after each app server restart
        def long_peers():
            return [harness.start_peer(env, GO + ["--url", app_url, "--mode", mode, "--subject", subj] + long_peer, name, ready=True)
                    for mode, subj, name in (("sub", "soak.orders", "sub-go"), ("reply", "soak.rpc", "reply-go"))]

        longs = long_peers()
        loops = {
            "nats_published": Repeat(env, GO + ["--url", app_url, "--mode", "pub", "--subject", "soak.orders", "--count", 200,
                                                "--interval", "20ms", "--timeout", "120s"], "pub-go", "published", keep_going=True),
            "nats_requests": Repeat(env, GO + ["--url", app_url, "--mode", "req", "--subject", "soak.rpc", "--count", 20,
                                               "--timeout", "120s"], "req-go", "replies", pause=1.0, keep_going=True),
            "http_caddy": Repeat(env, [PYTHON, HTTPLOAD, "--port", cport, "-n", 50, "-c", 2], "httpload", "ok", pause=2.0, keep_going=True),
            "http_nginx": Repeat(env, [PYTHON, HTTPLOAD, "--port", nport, "-n", 50, "-c", 2], "httpload", "ok", pause=2.0, keep_going=True),
        }
        t0 = time.monotonic()
        samples, restarts, problems = [], [], []
        next_sample, next_restart, which = 0.0, restart_every, 0
        late, prev = 0, {}
        while time.monotonic() - t0 < duration:
            t = time.monotonic() - t0
            if agent.proc.poll() is not None:
                problems.append("the agent exited (%s) at %.0f s" % (agent.proc.returncode, t))
                break
            if t >= next_sample:
                s = {"t": round(t, 1), "load1": os.getloadavg()[0]}
                s.update(proc_sample(pid))
                m = agent_metrics(agent)
                if m is None:
                    late += 1
                    m = {"export": prev}
                prev = m["export"]
                s.update({k: prev.get(k, 0) for k in ("spans_in", "sent_spans", "dropped_spans", "queue_bytes", "reconnects")})
                ident = m.get("identity")
                s["identity_cached"] = ident["cached"] if ident else (samples[-1]["identity_cached"] if samples else 0)
                samples.append(s)
                harness.log("sample %s", s)
                next_sample += sample_every
            if t >= next_restart:
                name = ("telemetry", "app")[which % 2]
                which += 1
                srv = tel if name == "telemetry" else app
                srv.kill()
                srv.wait(5)
                time.sleep(down)
                if name == "telemetry":
                    tel = tel_server(env, port=tel_port)
                else:
                    app = app_server()
                    for p in longs:
                        harness.stop_process(p)  # disconnected for good
                    longs = long_peers()
                restarts.append({"t": round(t, 1), "server": name, "down_s": down})
                next_restart += restart_every
            time.sleep(0.2)
        ops = {k: l.stop() for k, l in loops.items()}
        runs = sum(l.runs for l in loops.values())
        failed_runs = {k: l.failed for k, l in loops.items() if l.failed}
        stop_file.write_text("stop")
        for p in longs:
            p.wait(30)
        # let the queue empty, then stop
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and agent.proc.poll() is None:
            m = agent_metrics(agent)
            if m and m["export"]["connected"] and not m["export"]["queue_batches"] and not m["export"]["inflight"]:
                break
            time.sleep(0.5)
        last = proc_sample(pid) if agent.proc.poll() is None else {}
        am = agent.stop() if agent.proc.poll() is None else {}
        time.sleep(1.0)
        consumer.stop()
    ex = am.get("export", {})
    counted = sum(ex.get(k, 0) for k in COUNTED)
    unaccounted = ex.get("spans_in", 0) - ex.get("sent_spans", 0) - counted if ex else None
    if unaccounted:
        problems.append("%s spans unaccounted (in %s, sent %s, counted %d)" % (unaccounted, ex.get("spans_in"), ex.get("sent_spans"), counted))
    unconfirmed = ex.get("dropped_unconfirmed_spans", 0)
    if ex and not ex["sent_spans"] <= consumer.spans <= ex["sent_spans"] + unconfirmed:
        problems.append("the consumer received %d distinct spans; the agent sent %d (+ %d unconfirmed drops)"
                        % (consumer.spans, ex["sent_spans"], unconfirmed))
    rss = [s["rss_kib"] for s in samples]
    anon = [s["anon_kib"] for s in samples]
    fds = [s["fds"] for s in samples]
    return {
        "duration_s": duration,
        "restart_every_s": restart_every,
        "down_s": down,
        "operations": ops,
        "client_processes": runs,
        "client_runs_failed": failed_runs,
        "restarts": restarts,
        "spans_in": ex.get("spans_in"),
        "sent_spans": ex.get("sent_spans"),
        "drops": {k: ex[k] for k in COUNTED + ("dropped_unconfirmed_spans",) if ex.get(k)},
        "drop_rate": round(counted / ex["spans_in"], 6) if ex.get("spans_in") else None,
        "unaccounted": unaccounted,
        "consumer": {"msgs": consumer.msgs, "duplicate_msgs": consumer.dups, "distinct_spans": consumer.spans, "connects": consumer.connects},
        "export": {k: ex.get(k) for k in ("disconnects", "reconnects", "resent", "flush_errors", "publish_errors", "queue_peak_bytes")},
        "agent_metrics_final": am,
        "rss_kib": {"first": rss[0] if rss else None, "min": min(rss, default=None), "max": max(rss, default=None),
                    "last": last.get("rss_kib"), "growth_per_hour": slope_per_hour(samples, "rss_kib")},
        "anon_kib": {"first": anon[0] if anon else None, "max": max(anon, default=None), "last": last.get("anon_kib"),
                     "growth_per_hour": slope_per_hour(samples, "anon_kib")},
        "bpf_maps_kib_last": last.get("bpf_maps_kib"),
        "hwm_kib_last": last.get("hwm_kib"),
        "fds": {"first": fds[0] if fds else None, "min": min(fds, default=None), "max": max(fds, default=None),
                "last": last.get("fds"), "growth_per_hour": slope_per_hour(samples, "fds")},
        "samples": samples,
        "metrics_late": late,
        "problems": problems,
    }


def markdown(meta, r):
    out = ["Command `%s`, run %s on commit %s: %s. Load average over the run: %s (min-max of 1-minute averages sampled)."
           % (meta["command"], meta["date"], meta["commit"], meta["machine"], meta["load"]), ""]
    ops = r["operations"]
    out += ["| figure | value |", "|---|---|",
            "| duration | %d s, a nats-server killed for %d s every %d s (%d restarts: %s) |" % (
                r["duration_s"], r["down_s"], r["restart_every_s"], len(r["restarts"]),
                ", ".join("%s %d" % (k, sum(1 for x in r["restarts"] if x["server"] == k)) for k in ("telemetry", "app"))),
            "| operations | %d NATS messages published, %d requests answered, %d HTTP requests via caddy, %d via nginx (%d client processes; failed during restarts: %s) |" % (
                ops["nats_published"], ops["nats_requests"], ops["http_caddy"], ops["http_nginx"], r["client_processes"],
                ", ".join("%s %d" % kv for kv in sorted(r["client_runs_failed"].items())) or "none"),
            "| spans in / sent | %s / %s |" % (r["spans_in"], r["sent_spans"]),
            "| drops counted | %s |" % (", ".join("%s %s" % kv for kv in sorted(r["drops"].items())) or "none"),
            "| drop rate (counted / spans in) | %s |" % r["drop_rate"],
            "| unaccounted (in - sent - counted) | %s |" % r["unaccounted"],
            "| consumer: distinct spans, duplicate messages, connects | %d, %d, %d |" % (
                r["consumer"]["distinct_spans"], r["consumer"]["duplicate_msgs"], r["consumer"]["connects"]),
            "| export: disconnects, reconnects, resent batches, flush errors | %s, %s, %s, %s |" % (
                r["export"]["disconnects"], r["export"]["reconnects"], r["export"]["resent"], r["export"]["flush_errors"]),
            "| RSS first / min / max / last | %s / %s / %s / %s KiB |" % (
                r["rss_kib"]["first"], r["rss_kib"]["min"], r["rss_kib"]["max"], r["rss_kib"]["last"]),
            "| RSS growth (least squares after the first fifth) | %s KiB/h |" % r["rss_kib"]["growth_per_hour"],
            "| of which BPF map mappings (ring buffer) at the end | %s KiB |" % r["bpf_maps_kib_last"],
            "| anonymous RSS (malloc) first / max / last; growth | %s / %s / %s KiB; %s KiB/h |" % (
                r["anon_kib"]["first"], r["anon_kib"]["max"], r["anon_kib"]["last"], r["anon_kib"]["growth_per_hour"]),
            "| VmHWM at the end | %s KiB |" % r["hwm_kib_last"],
            "| samples (metrics answered late, > 30 s) | %d (%d) |" % (len(r["samples"]), r["metrics_late"]),
            "| fds first / min / max / last; growth | %s / %s / %s / %s; %s per hour |" % (
                r["fds"]["first"], r["fds"]["min"], r["fds"]["max"], r["fds"]["last"], r["fds"]["growth_per_hour"]),
            ""]
    step = max(1, len(r["samples"]) // 12)
    out += ["| t (s) | RSS (KiB) | anon RSS (KiB) | fds | threads | identities cached | spans in | sent | dropped | queue bytes | reconnects | load1 |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in r["samples"][::step] + ([r["samples"][-1]] if r["samples"] and (len(r["samples"]) - 1) % step else []):
        out.append("| %.0f | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %.1f |" % (
            s["t"], s["rss_kib"], s["anon_kib"], s["fds"], s["threads"], s["identity_cached"], s["spans_in"], s["sent_spans"],
            s["dropped_spans"], s["queue_bytes"], s["reconnects"], s["load1"]))
    out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--restart-every", type=float, default=60)
    ap.add_argument("--down", type=float, default=2)
    ap.add_argument("--sample-every", type=float, default=10)
    ap.add_argument("--out", default=str(harness.BUILD / "reliability"))
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    harness.VERBOSE = a.verbose or harness.VERBOSE
    if os.geteuid() != 0:
        print("the soak loads BPF programs: run it as root")
        return 0
    subprocess.run(["bash", str(harness.REPO / "tests" / "run-integration.sh"), "--list"], stdout=subprocess.DEVNULL, check=True)
    rev = subprocess.run(["git", "-C", str(harness.REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": harness.machine_text(), "commit": rev,
            "command": "make soak DURATION=%d" % a.duration}
    try:
        r = soak(a.duration, a.restart_every, a.down, a.sample_every)
    except harness.TestFailure as e:
        print("FAIL soak: %s" % e)
        return 1
    loads = [s["load1"] for s in r["samples"]]
    meta["load"] = "%.1f-%.1f" % (min(loads), max(loads)) if loads else "?"
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "soak.json"), "w") as f:
        json.dump({"meta": meta, "result": r}, f, indent=1)
    md = markdown(meta, r)
    with open(os.path.join(a.out, "soak.md"), "w") as f:
        f.write(md)
    print(md)
    print("results: %s/soak.json, %s/soak.md" % (a.out, a.out))
    for p in r["problems"]:
        print("FAIL %s" % p)
    print("soak %s" % ("failed" if r["problems"] else "passed"))
    return 1 if r["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
