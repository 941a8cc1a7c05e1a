# SPDX-License-Identifier: Apache-2.0
"""Connection and process churn (issue 9 item 4, docs/RELIABILITY.md) under
`wirespan agent`, parameterised like tests/integration/reliability.py:
tests/integration/test_reliability_churn.py runs short versions in `make
test`, tests/reliability/run.py the long ones (`make reliability`).

The load is build/churn_load (tests/reliability/churn_load.c): an epoll
server speaking just enough NATS and HTTP on two loopback ports, and clients
that hold N connections, open R new ones a second, or exec R short-lived
processes a second, each connection doing one exchange (NATS: CONNECT, PUB,
PING -> PONG; HTTP: GET -> 200). The agent watches the two ports.

Each scenario returns the report dict of reliability.py (operations, seen,
out, drops, unaccounted) plus, sampled with SIGUSR1 while the load runs and
once more after it: the BPF hash maps' entries vs max_entries (the metrics
line's `maps`), the agent's userspace tables (connections, process identity,
peer endpoints and waiting lookups) at baseline, peak and after, and the
agent's RSS (baseline, VmHWM, after). Two accountings, both must be 0:
  - spans: seen = the spans the exchanges promise (NATS 1 publish, HTTP a
    client and a server span), out = those printed, counted = loss events
    the counters report (records lost to the ring buffer, connections not
    tracked, ...; none expected);
  - connections: seen = 2 per connection (both ends are traced), out = those
    the kernel classified, counted = map-full and classification give-ups.
After the load and the server have gone, the userspace tables must be back
at their baseline.
"""

import json
import os
import re
import signal
import subprocess
import threading
import time

from harness import BUILD, Agent, Env, check, find_metrics, free_port, log, peer_result, start_peer, stop_process
from reliability import _proc_stat

CHURN = BUILD / "churn_load"

# Counters of the metrics line (kernel.*, user.*) and agent_metrics whose
# growth means something was lost or dropped: each is a loss event.
KERNEL_LOSS = ("rb_full_events", "conn_map_full", "args_map_full", "listen_map_full", "open_lost", "close_lost",
               "proc_exit_lost", "fault_events")
# How far above its baseline the agent's RSS may stay after a load.
RSS_KEPT_KIB = 32 * 1024


def _agent_lines(agent, kind, since):
    with agent._lock:
        lines = agent.stderr_lines[since:]
    out = None
    for line in lines:
        s = line.strip()
        if s.startswith("{") and '"%s"' % kind in s:
            try:
                d = json.loads(s)
            except ValueError:
                continue
            if d.get("type") == kind:
                out = d
    return out


def snapshot(agent, timeout=20.0):
    """SIGUSR1: the agent's (metrics, agent_metrics) lines, now."""
    with agent._lock:
        k = len(agent.stderr_lines)
    agent.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m, am = _agent_lines(agent, "metrics", k), _agent_lines(agent, "agent_metrics", k)
        if m is not None and am is not None:
            return m, am
        check(agent.proc.poll() is None, "the agent exited: %s", agent.stderr_tail())
        time.sleep(0.02)
    raise AssertionError("the agent did not answer SIGUSR1 within %.0f s" % timeout)


def tables(m, am):
    """The sizes that must stay bounded and come back: BPF hash maps
    (entries) and the agent's userspace tables."""
    t = {"map." + k: v["entries"] for k, v in (m.get("maps") or {}).items()}
    t["conns.live"] = m["user"]["conns"]["live"]
    t["identity.cached"] = am["identity"]["cached"]
    t["peers.endpoints"] = am["peers"]["endpoints"]
    t["peers.pending_now"] = am["peers"]["pending_now"]
    return t


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))


class _Sampler:
    """Every `interval` s while the load runs: SIGUSR1 snapshots (peak of
    every table) and the agent's RSS."""

    def __init__(self, agent, interval):
        self.agent, self.interval = agent, interval
        self.peak, self.samples, self.stop_ev = {}, 0, threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_ev.wait(self.interval):
            try:
                m, am = snapshot(self.agent)
            except Exception as e:  # noqa: BLE001 - reported by the scenario
                self.error = str(e)
                return
            self.samples += 1
            for k, v in tables(m, am).items():
                self.peak[k] = max(self.peak.get(k, 0), v)

    def finish(self):
        self.stop_ev.set()
        self.thread.join(60)
        check(self.error is None, "sampling the agent failed: %s", self.error)


def _count_spans(path):
    """Spans of the load in the agent's output, by (name, kind), counted with
    grep: the long runs print hundreds of MB."""
    r = subprocess.run(["grep", "-o", "-E", r'"name":"(publish churn\.[a-z]+|GET /churn-[a-z]+|GET)","kind":[0-9]', str(path)],
                       capture_output=True, env=dict(os.environ, LC_ALL="C"))
    counts = {}
    for line in r.stdout.decode().splitlines():
        name, kind = re.match(r'"name":"(.*)","kind":(\d)', line).groups()
        counts[(name, int(kind))] = counts.get((name, int(kind)), 0) + 1
    return counts


def _stop_agent(agent):
    """SIGINT; exit 0 and both metrics lines required (Agent.stop without
    parsing every span)."""
    with agent._lock:
        k = len(agent.stderr_lines)
    agent.proc.send_signal(signal.SIGINT)
    try:
        rc = agent.proc.wait(60)
    except subprocess.TimeoutExpired:
        agent.proc.kill()
        raise AssertionError("the agent did not exit within 60 s of SIGINT")
    agent._reader.join(5)
    check(rc == 0, "the agent exited %s after SIGINT: %s", rc, agent.stderr_tail())
    m, am = _agent_lines(agent, "metrics", k), _agent_lines(agent, "agent_metrics", k)
    check(m is not None and am is not None, "no metrics lines at exit: %s", agent.stderr_tail())
    return m, am


def _delta(after, before, path):
    a, b = after, before
    for p in path:
        a, b = a.get(p, {}), b.get(p, {})
    return (a or 0) - (b or 0)


def _churn(name, load, interval, settle, rss_growth_kib):
    """The frame of every scenario: server, agent, baseline, `load(ports)`
    (returns the load's JSON results) under the sampler, the server stopped,
    `settle` s, the after-snapshot, the accounting."""
    check(CHURN.exists(), "%s does not exist (run make)", CHURN)
    with Env("churn-" + re.sub(r"[^a-z0-9]+", "-", name)) as env:
        pn, ph = free_port(), free_port()
        server = start_peer(env, [CHURN, "serve", "--nats-port", pn, "--http-port", ph], "churn-serve", ready=True)
        agent = Agent(env, ["--port", pn, "--port", ph])
        time.sleep(0.5)
        m0, am0 = snapshot(agent)
        base, rss0 = tables(m0, am0), _rss_kib(agent.proc.pid)
        cpu0, _ = _proc_stat(agent.proc.pid)
        sampler = _Sampler(agent, interval)
        t0 = time.monotonic()
        try:
            results = load(env, pn, ph)
        finally:
            sampler.finish()
        load_s = time.monotonic() - t0
        cpu1, hwm = _proc_stat(agent.proc.pid)
        stop_process(server)
        sres = peer_result(server, server.wirespan_out, server.wirespan_err, "churn-serve")
        time.sleep(settle)
        m1, am1 = snapshot(agent)
        after, rss1 = tables(m1, am1), _rss_kib(agent.proc.pid)
        m2, am2 = _stop_agent(agent)
        spans = _count_spans(agent.out_path)
        load1 = os.getloadavg()[0]

    peak = dict(sampler.peak)
    for k, v in after.items():
        peak[k] = max(peak.get(k, 0), v)
    nats_ops = sum(r.get("nats_exchanges", 0) for r in results)
    http_ops = sum(r.get("http_exchanges", 0) for r in results)
    conns = sum(r.get("conns", 0) for r in results)
    got_nats = sum(v for (n, k), v in spans.items() if n.startswith("publish churn.") and k == 4)
    got_http = sum(v for (n, k), v in spans.items() if (n.startswith("GET /churn-") and k == 2) or (n == "GET" and k == 3))
    seen, out = nats_ops + 2 * http_ops, got_nats + got_http
    kernel = m2["kernel"]
    drops = {"kernel." + c: _delta(m2, m0, ("kernel", c)) for c in KERNEL_LOSS}
    drops.update({"user.conns." + c: _delta(m2, m0, ("user", "conns", c)) for c in ("evicted", "nomem")})
    drops.update({"user.gap_bytes." + g: v for g, v in m2["user"]["gap_bytes"].items()})
    for part, keys in (("nats", ("nomem", "pending_evicted", "recent_evicted", "gap_bytes", "parse_errors")),
                       ("http", ("nomem", "pending_dropped", "pending_evicted", "gap_bytes")),
                       ("identity", ("evicted",)), ("peers", ("evicted", "pending_evicted"))):
        drops.update({"%s.%s" % (part, k): (am2.get(part) or {}).get(k, 0) for k in keys})
    drops = {k: v for k, v in drops.items() if v}
    counted = sum(v for k, v in drops.items() if k.startswith("kernel.") or k.startswith("user.conns."))
    classified = _delta(m2, m0, ("kernel", "classified_nats")) + _delta(m2, m0, ("kernel", "classified_http"))
    conn_counted = _delta(m2, m0, ("kernel", "conn_map_full")) + _delta(m2, m0, ("kernel", "classify_giveup"))
    report = {
        "test": "churn",
        "scenario": name,
        "load": results,
        "server": {k: v for k, v in sres.items() if not k.startswith("_")},
        "load_seconds": round(load_s, 1),
        "loadavg_end": round(load1, 2),
        "operations": nats_ops + http_ops,
        "nats_exchanges": nats_ops,
        "http_exchanges": http_ops,
        "seen": seen,
        "out": out,
        "spans_out": am2.get("spans_out"),
        "spans_by_name": {"%s/%d" % k: v for k, v in sorted(spans.items())},
        "drops": drops,
        "counted": counted,
        "unaccounted": max(0, seen - out - counted),
        "conns": conns,
        "conn_ends_seen": 2 * conns,
        "conn_ends_classified": classified,
        "conn_ends_counted": conn_counted,
        "conn_unaccounted": 2 * conns - classified - conn_counted,
        "conn_ends_closed": _delta(m2, m0, ("kernel", "conn_closed")),
        "user_opens": _delta(m2, m0, ("user", "records_by_type", "open")),
        "user_inserted": _delta(m2, m0, ("user", "conns", "inserted")),
        "user_removed": _delta(m2, m0, ("user", "conns", "removed")),
        "proc_exit_records": _delta(m2, m0, ("user", "records_by_type", "proc_exit")),
        "identity": {k: am2["identity"][k] for k in ("misses", "proc_gone", "forgotten", "swept", "evicted")},
        "peers": {k: am2["peers"][k] for k in ("learned", "scanned", "pending", "late", "scan_limited", "forgotten", "swept")},
        "max_entries": {"map." + k: v["max_entries"] for k, v in (m2.get("maps") or {}).items()},
        "baseline": base,
        "peak": peak,
        "after": after,
        "samples": sampler.samples,
        "rss_kib": {"baseline": rss0, "peak_vmhwm": hwm, "after": rss1},
        "agent_cpu_s": round(cpu1 - cpu0, 2),
    }
    log("churn %s: %s", name, json.dumps(report))
    problems = []
    if report["unaccounted"]:
        problems.append("%d spans unaccounted (seen %d, out %d, counted %d): %s"
                        % (report["unaccounted"], seen, out, counted, report["spans_by_name"]))
    if out > seen:
        problems.append("more spans (%d) than the exchanges promise (%d): %s" % (out, seen, report["spans_by_name"]))
    if report["conn_unaccounted"]:
        problems.append("%d connection ends unaccounted (seen %d, classified %d, counted %d)"
                        % (report["conn_unaccounted"], 2 * conns, classified, conn_counted))
    if report["conn_ends_closed"] != classified:
        problems.append("the kernel closed %d connection ends, classified %d" % (report["conn_ends_closed"], classified))
    if report["user_inserted"] != report["user_removed"] + after["conns.live"] - base["conns.live"]:
        problems.append("userspace connections: %d inserted, %d removed, live %d -> %d"
                        % (report["user_inserted"], report["user_removed"], base["conns.live"], after["conns.live"]))
    for k in ("conns.live", "identity.cached", "peers.endpoints", "peers.pending_now"):
        if after[k] != base[k]:
            problems.append("%s did not return to its baseline: %d -> peak %d -> %d" % (k, base[k], peak.get(k, 0), after[k]))
    # the conns map also holds every other process's sockets (ignored,
    # swept when they exit): the host's own churn is allowed for
    if after.get("map.conns", 0) > base.get("map.conns", 0) + 1024:
        problems.append("BPF map conns did not return near its baseline: %d -> peak %d -> %d"
                        % (base["map.conns"], peak.get("map.conns", 0), after["map.conns"]))
    for k, mx in report["max_entries"].items():
        if peak.get(k, 0) >= mx:
            problems.append("BPF map %s was full (%d of %d)" % (k, peak[k], mx))
    if hwm - rss0 > rss_growth_kib:
        problems.append("agent RSS grew %d KiB (%d -> VmHWM %d), over the %d KiB bound" % (hwm - rss0, rss0, hwm, rss_growth_kib))
    # a burst's memory is given back once its connections have gone (the
    # pipeline's malloc_trim); what stays is the bounded caches and rings
    if rss1 - rss0 > RSS_KEPT_KIB:
        problems.append("agent RSS stayed %d KiB above its baseline after the load (%d -> VmHWM %d -> %d)"
                        % (rss1 - rss0, rss0, hwm, rss1))
    check(not problems, "%s\n(report %s)", "\n".join(problems), json.dumps(report))
    return report


def _run_load(env, args, name, timeout):
    p = start_peer(env, [CHURN] + [str(a) for a in args], name)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        stop_process(p)
        raise AssertionError("%s did not finish within %.0f s" % (name, timeout))
    return peer_result(p, p.wirespan_out, p.wirespan_err, name)


def concurrent(conns=10000, hold_seconds=5.0, interval=2.0, settle=6.0, rss_growth_kib=256 * 1024):
    """`conns` connections open at once (half NATS, half HTTP), one exchange
    each, held `hold_seconds` (sampled), one more exchange each, closed."""

    def load(env, pn, ph):
        p = start_peer(env, [CHURN, "hold", "--nats-port", pn, "--http-port", ph, "--conns", conns], "churn-hold",
                       ready=True, timeout=120 + conns / 100)
        time.sleep(hold_seconds)
        p.send_signal(signal.SIGUSR1)
        try:
            p.wait(120 + conns / 100)
        except subprocess.TimeoutExpired:
            stop_process(p)
            raise AssertionError("churn_load hold did not finish")
        r = peer_result(p, p.wirespan_out, p.wirespan_err, "churn-hold")
        n = conns // 2  # even: NATS, odd: HTTP
        return [{"conns": r["opened"], "nats_exchanges": 2 * (conns - n), "http_exchanges": 2 * n, "hold": r}]

    return _churn("concurrent %d" % conns, load, interval, settle, rss_growth_kib)


def new_conns(rate=5000, seconds=60.0, workers=4, interval=5.0, settle=6.0, rss_growth_kib=256 * 1024):
    """`rate` new connections a second for `seconds` (half NATS, half HTTP):
    connect, one exchange, close."""

    def load(env, pn, ph):
        r = _run_load(env, ["rate", "--nats-port", pn, "--http-port", ph, "--rate", rate, "--seconds", seconds,
                            "--workers", workers], "churn-rate", seconds * 4 + 60)
        return [{"conns": r["conns_ok"], "nats_exchanges": r["nats_ok"], "http_exchanges": r["http_ok"], "rate": r}]

    return _churn("new connections %d/s for %g s" % (rate, seconds), load, interval, settle, rss_growth_kib)


def exec_churn(rate=1000, seconds=60.0, interval=5.0, settle=6.0, rss_growth_kib=256 * 1024):
    """`rate` exec'd processes a second for `seconds`: each is `churn_load
    client` (one NATS exchange on its own connection, then exit), so each
    gets a process identity; the identity cache must empty again."""

    def load(env, pn, ph):
        r = _run_load(env, ["exec", "--rate", rate, "--seconds", seconds, "--", CHURN, "client", "--nats-port", pn],
                      "churn-exec", seconds * 4 + 60)
        return [{"conns": r["exited_ok"], "nats_exchanges": r["exited_ok"], "http_exchanges": 0, "exec": r}]

    return _churn("exec %d/s for %g s" % (rate, seconds), load, interval, settle, rss_growth_kib)


def mixed(conns=200, rate=200, exec_rate=100, seconds=1.0, interval=0.5, settle=0.5, rss_growth_kib=64 * 1024):
    """The three loads one after the other under one agent, short: what
    `make test` runs (test_reliability_churn.py)."""

    def load(env, pn, ph):
        n = conns // 2
        p = start_peer(env, [CHURN, "hold", "--nats-port", pn, "--http-port", ph, "--conns", conns], "churn-hold",
                       ready=True, timeout=60)
        time.sleep(interval)
        p.send_signal(signal.SIGUSR1)
        p.wait(60)
        h = peer_result(p, p.wirespan_out, p.wirespan_err, "churn-hold")
        r = _run_load(env, ["rate", "--nats-port", pn, "--http-port", ph, "--rate", rate, "--seconds", seconds,
                            "--workers", 2], "churn-rate", seconds * 4 + 60)
        e = _run_load(env, ["exec", "--rate", exec_rate, "--seconds", seconds, "--", CHURN, "client", "--nats-port", pn],
                      "churn-exec", seconds * 4 + 60)
        return [{"conns": h["opened"], "nats_exchanges": 2 * (conns - n), "http_exchanges": 2 * n, "hold": h},
                {"conns": r["conns_ok"], "nats_exchanges": r["nats_ok"], "http_exchanges": r["http_ok"], "rate": r},
                {"conns": e["exited_ok"], "nats_exchanges": e["exited_ok"], "http_exchanges": 0, "exec": e}]

    return _churn("mixed %d held, %d/s new, %d exec/s, %g s" % (conns, rate, exec_rate, seconds), load, interval, settle,
                  rss_growth_kib)


def tables_md(results):
    """Markdown tables of churn runs ({"name", "report"} dicts) for
    docs/RELIABILITY.md: accounting, then occupancy and memory."""
    if not results:
        return []
    out = ["| run | load achieved | exchanges (NATS + HTTP) | spans seen / out / counted | unaccounted | conn ends seen / classified / counted | conn unaccounted | loss counters | agent CPU | load avg at end |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        p = r["report"]
        ach = []
        for l in p["load"]:
            if "rate" in l:
                ach.append("%.0f conns/s over %.1f s" % (l["rate"]["rate"], l["rate"]["seconds"]))
            if "exec" in l:
                ach.append("%.0f exec/s over %.1f s" % (l["exec"]["rate"], l["exec"]["seconds"]))
            if "hold" in l:
                ach.append("%d held" % l["hold"]["opened"])
        out.append("| %s | %s | %d + %d | %d / %d / %d | %d | %d / %d / %d | %d | %s | %.1f s | %.1f |" % (
            r["name"], ", ".join(ach), p["nats_exchanges"], p["http_exchanges"], p["seen"], p["out"], p["counted"],
            p["unaccounted"], p["conn_ends_seen"], p["conn_ends_classified"], p["conn_ends_counted"], p["conn_unaccounted"],
            ", ".join("%s %s" % kv for kv in sorted(p["drops"].items())) or "none", p["agent_cpu_s"], p["loadavg_end"]))
    out.append("")
    keys = ["map.conns", "map.args", "map.listen_ports", "conns.live", "identity.cached", "peers.endpoints", "peers.pending_now"]
    out += ["| run | " + " | ".join("%s (max)" % k for k in keys) + " | agent RSS baseline / VmHWM / after |",
            "|---|" + "---|" * (len(keys) + 1)]
    for r in results:
        p = r["report"]
        cells = []
        for k in keys:
            mx = p["max_entries"].get(k)
            cells.append("%d → %d → %d%s" % (p["baseline"].get(k, 0), p["peak"].get(k, 0), p["after"].get(k, 0),
                                              " (%d)" % mx if mx else ""))
        rss = p["rss_kib"]
        out.append("| %s | %s | %.1f / %.1f / %.1f MiB |" % (r["name"], " | ".join(cells), rss["baseline"] / 1024,
                                                            rss["peak_vmhwm"] / 1024, rss["after"] / 1024))
    out.append("")
    return out


# What churn_load's exchanges move (tests/reliability/churn_load.c).
NATS_INFO = b'INFO {"server_id":"CHURN","version":"2.9.10","proto":1,"headers":true,"max_payload":1048576}\r\n'
HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _exchange_bytes(tag):
    """Bytes one NATS and one HTTP connection move (both directions) with
    one exchange tagged `tag`."""
    nats = len(b"CONNECT {}\r\nPUB churn.%s 2\r\nhi\r\nPING\r\n" % tag) + len(NATS_INFO) + len(b"PONG\r\n")
    http = len(b"GET /churn-%s HTTP/1.1\r\nHost: churn\r\n\r\n" % tag) + len(HTTP_OK)
    return nats, http


def capture_rate(rate=5000, seconds=60.0, workers=4, settle=6.0):
    """`rate` new connections a second for `seconds` under `wirespan capture
    --summary`: an open and a close line for each of the 2 ends of every
    connection, their bytes (captured + gap) summing to exactly what the
    exchanges moved, the capture's connection table and the conns map back
    at baseline."""
    check(CHURN.exists(), "%s does not exist (run make)", CHURN)
    from harness import Capture

    with Env("churn-capture") as env:
        pn, ph = free_port(), free_port()
        server = start_peer(env, [CHURN, "serve", "--nats-port", pn, "--http-port", ph], "churn-serve", ready=True)
        cap = Capture(env, ["--summary", "--port", pn, "--port", ph])
        m0 = cap.metrics_now(20)
        check(m0 is not None, "capture did not answer SIGUSR1")
        rss0 = _rss_kib(cap.proc.pid)
        r = _run_load(env, ["rate", "--nats-port", pn, "--http-port", ph, "--rate", rate, "--seconds", seconds,
                            "--workers", workers], "churn-rate", seconds * 4 + 60)
        _, hwm = _proc_stat(cap.proc.pid)
        stop_process(server)
        time.sleep(settle)
        m1 = cap.metrics_now(20)
        check(m1 is not None, "capture did not answer SIGUSR1")
        rss1 = _rss_kib(cap.proc.pid)
        cap.proc.send_signal(signal.SIGINT)
        rc = cap.proc.wait(60)
        cap._reader.join(5)
        check(rc == 0, "capture exited %s: %s", rc, cap.stderr_tail())
        m2 = find_metrics(cap.stderr_lines)
        opens = closes = 0
        moved = {"egress": 0, "ingress": 0}
        captured = gap = 0
        with open(cap.out_path, "rb") as f:
            for raw in f:
                if b'"type":"open"' in raw:
                    opens += 1
                elif b'"type":"close"' in raw:
                    closes += 1
                    c = json.loads(raw)
                    for d in moved:
                        moved[d] += c[d]["bytes"]
                        captured += c[d]["captured"]
                        gap += c[d]["gap"]
    nb, hb = _exchange_bytes(b"rate")
    seen = 2 * (r["nats_ok"] * nb + r["http_ok"] * hb)  # each byte leaves one end and reaches the other
    conns = r["conns_ok"]
    lost = {"kernel." + c: _delta(m2, m0, ("kernel", c)) for c in KERNEL_LOSS}
    lost = {k: v for k, v in lost.items() if v}
    gaps = {k: v for k, v in m2["user"]["gap_bytes"].items() if v}
    base = {"map.conns": m0["maps"]["conns"]["entries"], "conns.live": m0["user"]["conns"]["live"]}
    after = {"map.conns": m1["maps"]["conns"]["entries"], "conns.live": m1["user"]["conns"]["live"]}
    report = {
        "test": "churn_capture",
        "load": r,
        "operations": conns,
        "conn_ends_seen": 2 * conns,
        "opens": opens,
        "closes": closes,
        "conn_counted": sum(lost.values()),
        "seen": seen,
        "moved": moved,
        "out": captured,
        "gap": gap,
        "drops": dict(lost, **{"user.gap_bytes." + k: v for k, v in gaps.items()}),
        "unaccounted": seen - captured - gap,
        "spans_out": None,
        "baseline": base,
        "peak_conns_live": m2["user"]["conns"]["peak"],
        "after": after,
        "rss_kib": {"baseline": rss0, "peak_vmhwm": hwm, "after": rss1},
        "loadavg_end": round(os.getloadavg()[0], 2),
    }
    log("churn capture: %s", json.dumps(report))
    problems = []
    if report["unaccounted"]:
        problems.append("%d bytes unaccounted (moved %d, captured %d, gap %d)" % (report["unaccounted"], seen, captured, gap))
    if moved["egress"] != moved["ingress"] or moved["egress"] * 2 != seen:
        problems.append("close lines count %s bytes, the exchanges moved %d each way" % (moved, seen // 2))
    if 2 * conns - closes - report["conn_counted"] or opens != closes:
        problems.append("%d connection ends, %d opens, %d closes, %d counted losses" % (2 * conns, opens, closes, report["conn_counted"]))
    if after["conns.live"] != base["conns.live"] or after["map.conns"] > base["map.conns"] + 1024:
        problems.append("not back at baseline: %s -> %s" % (base, after))
    if rss1 - rss0 > RSS_KEPT_KIB:
        problems.append("capture RSS stayed %d KiB above its baseline (%d -> %d -> %d)" % (rss1 - rss0, rss0, hwm, rss1))
    check(not problems, "%s\n(report %s)", "\n".join(problems), json.dumps(report))
    return report


def capture_table_md(results):
    """Markdown table of capture_rate runs for docs/RELIABILITY.md."""
    if not results:
        return []
    out = ["| run | load achieved | conn ends / opens / closes | bytes moved (both ways) / captured / gap | unaccounted | loss counters | conns.live, map.conns: baseline → after | capture RSS baseline / VmHWM / after |",
           "|---|---|---|---|---|---|---|---|"]
    for r in results:
        p = r["report"]
        out.append("| %s | %.0f conns/s over %.1f s | %d / %d / %d | %d / %d / %d | %d | %s | %d → %d, %d → %d | %.1f / %.1f / %.1f MiB |" % (
            r["name"], p["load"]["rate"], p["load"]["seconds"], p["conn_ends_seen"], p["opens"], p["closes"], p["seen"], p["out"],
            p["gap"], p["unaccounted"], ", ".join("%s %s" % kv for kv in sorted(p["drops"].items())) or "none",
            p["baseline"]["conns.live"], p["after"]["conns.live"], p["baseline"]["map.conns"], p["after"]["map.conns"],
            p["rss_kib"]["baseline"] / 1024, p["rss_kib"]["peak_vmhwm"] / 1024, p["rss_kib"]["after"] / 1024))
    out.append("")
    return out
