# SPDX-License-Identifier: Apache-2.0
"""Integration tests of `wirespan capture` against real peers (root only).

One function per case; tests/integration/run.py runs them. Each test starts
its own servers and its own capture, filtered to the ports it uses, so tests
do not see each other's traffic (or anything else on the host).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from harness import (
    C_PEER,
    CADDY,
    CURL,
    GO_PEER,
    HTTP_BACKEND,
    NGINX,
    NODE,
    NODE_PEER,
    PEERS_SRC,
    PYTHON,
    RAW_PEER,
    SINK_PEER,
    Capture,
    Env,
    TestFailure,
    check,
    free_port,
    log,
    metric,
    nats_frames,
    payload,
    peer_result,
    render,
    sha256,
    show,
    start_nats,
    stop_process,
    wait_port,
)

sys.path.insert(0, str(PEERS_SRC / "py"))
import httpbackend  # noqa: E402  (the backend's body generators)

# --------------------------------------------------------------------------
# shared checks


def nats_pairs(res, client_pid, server, n_expected):
    """The client-side NATS connections of client_pid and their server ends."""
    clients = [c for c in res.by_pid(client_pid) if c.open is not None]
    check(
        len(clients) == n_expected,
        "expected %d connection(s) of pid %d in the capture, found %d; capture: %s\n      %s",
        n_expected, client_pid, len(clients), res.summary(), res.describe_conns(),
    )
    pairs = []
    for c in clients:
        s = res.peer_of(c)
        check(s is not None, "%r: no server-side connection with raddr/rport == %s/%s; capture:\n      %s",
              c, c.get("laddr"), c.get("lport"), res.describe_conns())
        check(s.pid == server.pid, "%r: its other end %r is not nats-server (pid %d)", c, s, server.pid)
        pairs.append((c, s))
    return pairs


def check_open(c, **want):
    for k, v in want.items():
        check(c.open.get(k) == v, "%r: open.%s is %r, expected %r (open line: %s)", c, k, c.open.get(k), v, c.open)


def check_lib_peer(res, peer, server, name):
    """A nats.go / nats.c / nats.js peer: byte-exact both ways, and the NATS
    frames in the capture are exactly what the peer says it published/received."""
    res.check_well_formed()
    ((c, s),) = nats_pairs(res, peer["_pid"], server, 1)
    check_open(c, role="client", proto="nats", family="ipv4", laddr="127.0.0.1", rport=server.port, preexisting=False)
    check_open(s, role="server", proto="nats", family="ipv4", lport=server.port, comm="nats-server", preexisting=False)
    res.check_conn(c)
    res.check_conn(s)
    res.check_pair(c, s)

    eg = c.stream("egress").contiguous()
    ing = c.stream("ingress").contiguous()
    efr, used = nats_frames(eg)
    check(used == len(eg), "%r egress: trailing partial NATS frame at %d: %s", c, used, show(eg[used:]))
    ifr, used = nats_frames(ing)
    check(used == len(ing), "%r ingress: trailing partial NATS frame at %d: %s", c, used, show(ing[used:]))
    check(ifr and ifr[0].op == "INFO", "%r ingress does not start with INFO: %s", c, show(ing))
    check(efr and efr[0].op == "CONNECT", "%r egress does not start with CONNECT: %s", c, show(eg))
    cj = json.loads(efr[0].args[0])
    check(cj.get("name") == "wirespan-peer-%s" % name, "CONNECT name %r", cj.get("name"))

    subj, reqsubj = peer["subject"], peer["request_subject"]
    pubs = [f for f in efr if f.op in ("PUB", "HPUB") and f.args[0] == subj]
    check(len(pubs) == peer["count"], "%r: %d PUBs on %s in egress, peer published %d", c, len(pubs), subj, peer["count"])
    check(sha256(b"".join(f.payload for f in pubs)) == peer["pub_sha256"], "%r: PUB payloads in the capture differ from what the peer published", c)
    msgs = [f for f in ifr if f.op in ("MSG", "HMSG") and f.args[0] == subj]
    check(len(msgs) == peer["received"], "%r: %d MSGs on %s in ingress, peer received %d", c, len(msgs), subj, peer["received"])
    check(sha256(b"".join(f.payload for f in msgs)) == peer["recv_sha256"], "%r: MSG payloads in the capture differ from what the peer received", c)

    reqs = [f for f in efr if f.op in ("PUB", "HPUB") and f.args[0] == reqsubj]
    check(len(reqs) == 1, "%r: %d request PUBs on %s (expected 1): %s", c, len(reqs), reqsubj, reqs)
    req = reqs[0]
    check(len(req.args) >= 3, "request PUB has no reply-to: %r", req)
    inbox = req.args[1]
    check(sha256(req.payload) == peer["request_sha256"], "request payload differs: %s", show(req.payload))
    replies_out = [f for f in efr if f.op in ("PUB", "HPUB") and f.args[0] == inbox]
    check(len(replies_out) == 1 and replies_out[0].payload == b"reply:" + req.payload, "%r: responder's reply PUB to %s not found: %s", c, inbox, replies_out)
    replies_in = [f for f in ifr if f.op in ("MSG", "HMSG") and f.args[0] == inbox]
    check(len(replies_in) == 1 and sha256(replies_in[0].payload) == peer["reply_sha256"], "%r: reply MSG on %s not found or differs: %s", c, inbox, replies_in)
    return c, s


def run_lib_peer_test(env, name, peer_cmd, count=20, size=512):
    ns = start_nats(env)
    cap = Capture(env, ["--port", ns.port])
    subj = "wirespan.%s" % name
    peer = env.run_peer(peer_cmd + ["--url", ns.url, "--count", count, "--size", size, "--subject", subj], name="natsclient-" + name)
    cap.wait_closes(lambda l: l.get("pid") in (peer["_pid"], ns.pid), 2)
    res = cap.stop()
    return res, peer, ns


def raw_pairs(res, peer, server, allow_gaps=(), byte_exact=True, syscalls=True):
    """Every connection of the raw client: in the capture, byte-exact against
    the peer's own recording (where captured), and paired with nats-server."""
    caps = {}
    for c in res.by_pid(peer["_pid"]):
        if c.open is not None:
            caps.setdefault((c.get("laddr"), c.get("lport")), []).append(c)
    out = []
    missing = []
    for row in peer["conns"]:
        cands = caps.get((row["laddr"], row["lport"]), [])
        if len(cands) != 1:
            missing.append("conn %d (fd %d, %s:%d): %d in capture" % (row["i"], row["fd"], row["laddr"], row["lport"], len(cands)))
            continue
        out.append((row, cands[0]))
    check(not missing, "%d of %d raw-client connections not found exactly once: %s; capture: %s",
          len(missing), len(peer["conns"]), "; ".join(missing[:5]), res.summary())
    extra = sum(len(v) for v in caps.values()) - len(out)
    check(extra == 0, "capture has %d connections of the raw client that it did not open", extra)

    pairs = []
    for row, c in out:
        check(c.fd == row["fd"], "%r: fd %d in conn id, the peer used fd %d", c, c.fd, row["fd"])
        check_open(c, role="client", proto="nats", family=row["family"], raddr=row["raddr"], rport=row["rport"], preexisting=False)
        res.check_conn(c, allow_gaps=allow_gaps)
        for d in ("egress", "ingress"):
            want = Path(row[d + "_dump"]).read_bytes()
            check(len(want) == row[d + "_bytes"], "dump %s has %d bytes, peer said %d", row[d + "_dump"], len(want), row[d + "_bytes"])
            check(c.close[d]["bytes"] == len(want), "%r %s: close.bytes %d but the peer moved %d", c, d, c.close[d]["bytes"], len(want))
            res.check_against(c, d, want, need_all=byte_exact)
            if syscalls:
                sc = {l.get("syscall") for l in c.stream(d).data_lines()}
                exp = "sendto" if d == "egress" else "recvfrom"
                check(sc == {exp}, "%r %s: syscalls %s, the peer only used %s", c, d, sorted(sc), exp)
        s = res.peer_of(c)
        check(s is not None, "%r: no server-side connection for it", c)
        check(s.pid == server.pid, "%r: other end %r is not nats-server", c, s)
        check_open(s, role="server", proto="nats", family=row["family"], lport=server.port, preexisting=False)
        res.check_conn(s, allow_gaps=allow_gaps)
        res.check_pair(c, s)
        pairs.append((row, c, s))
    return pairs


def raw_cmd(server, *extra):
    return [PYTHON, RAW_PEER, "--url", server.url] + [str(x) for x in extra]


# --------------------------------------------------------------------------
# NATS client libraries


def test_go_client():
    """nats.go: small messages + one request-reply, byte-exact both ways."""
    with Env("go") as env:
        res, peer, ns = run_lib_peer_test(env, "go", [GO_PEER])
        check_lib_peer(res, peer, ns, "go")


def test_c_client():
    """nats.c (libnats): small messages + one request-reply, byte-exact both ways."""
    with Env("c") as env:
        res, peer, ns = run_lib_peer_test(env, "c", [C_PEER])
        c, s = check_lib_peer(res, peer, ns, "c")
        check(c.get("lport") == peer["lport"], "%r: lport differs from the one nats.c reports (%s)", c, peer["lport"])


def test_node_client():
    """nats.js (npm nats) on node: small messages + request-reply, byte-exact."""
    with Env("node") as env:
        res, peer, ns = run_lib_peer_test(env, "node", [NODE, NODE_PEER])
        check_lib_peer(res, peer, ns, "node")


def test_py_raw_client():
    """Raw-socket client: capture == the exact bytes it recorded, both ways."""
    with Env("pyraw") as env:
        ns = start_nats(env)
        cap = Capture(env, ["--port", ns.port])
        peer = env.run_peer(raw_cmd(ns, "--conns", 3, "--count", 7, "--size", 300, "--dump-prefix", env.path("raw")), name="rawclient")
        cap.wait_closes(lambda l: True, 6)
        res = cap.stop()
        res.check_well_formed()
        raw_pairs(res, peer, ns)


# --------------------------------------------------------------------------
# large payloads and the per-syscall cap


def large_payload_test(name, extra_args, cap_bytes, records=8):
    """3 x 1 MiB through nats-server: records of at most cap_bytes, at most
    `records` of them per syscall; the client's 1 MiB sends exceed that, so
    their tails are 'cap' gaps; data + gap tile every stream exactly."""
    with Env(name) as env:
        ns = start_nats(env)
        cap = Capture(env, ["--port", ns.port] + extra_args)
        peer = env.run_peer(raw_cmd(ns, "--count", 3, "--size", 1 << 20, "--dump-prefix", env.path("raw")), name="rawclient")
        cap.wait_closes(lambda l: True, 2)
        res = cap.stop()
        res.check_well_formed()
        ((row, c, s),) = raw_pairs(res, peer, ns, allow_gaps=("cap", "iov"), byte_exact=False)
        for x in (c, s):
            for d in ("egress", "ingress"):
                st = x.stream(d)
                big = [l["len"] for l in st.data_lines() if l["len"] > cap_bytes]
                check(not big, "%r %s: data lines longer than the %d-byte cap: %s", x, d, cap_bytes, big[:5])
        ce = c.stream("egress")
        check(ce.gap_reasons.get("cap", 0) > 0, "%r egress: 3 MiB sent in 1 MiB sends but no 'cap' gap: %r", c, ce)
        # A 1 MiB send() fills exactly `records` records of cap_bytes, then a gap.
        sizes = [l["len"] for l in ce.data_lines()]
        check(max(sizes) == cap_bytes, "%r egress: largest data line %d, expected the cap %d", c, max(sizes), cap_bytes)
        full = sum(1 for n in sizes if n == cap_bytes)
        check(full >= 3 * records, "%r egress: %d full records for three 1 MiB sends, expected at least %d", c, full, 3 * records)
        return res, c, s


def test_large_payload_default_cap():
    """1 MiB payloads with the defaults (8 records of 32 KiB per syscall): 'cap' gaps, data+gap tile, captured bytes exact."""
    large_payload_test("large32k", [], 32768)


def test_large_payload_max_capture_16k():
    """1 MiB payloads with --max-capture 16384 --max-records 1 (the old one-record-per-syscall capture)."""
    large_payload_test("large16k", ["--max-capture", 16384, "--max-records", 1], 16384, records=1)


# The keys of each line type in docs/CAPTURE-FORMAT.md's example lines.
DOC_KEYS = {
    "open": {"type", "conn", "pid", "tid", "comm", "role", "proto", "family", "laddr", "lport", "raddr", "rport", "cgroup", "preexisting", "ts"},
    "data": {"type", "conn", "pid", "tid", "comm", "proto", "dir", "syscall", "offset", "len", "data", "ts"},
    "gap": {"type", "conn", "pid", "comm", "proto", "dir", "offset", "len", "reason", "ts"},
    "close": {"type", "conn", "pid", "comm", "proto", "egress", "ingress", "ts"},
}


def test_output_fields():
    """Every open/data/gap/close line carries the keys of the documented
    example lines; SIGUSR1 prints a metrics line without stopping."""
    with Env("fields") as env:
        ns = start_nats(env)
        cap = Capture(env, ["--port", ns.port])
        env.run_peer(raw_cmd(ns, "--count", 2, "--size", 600000), name="rawclient")
        cap.wait_closes(lambda l: True, 2)
        m = cap.metrics_now()
        check(m is not None, "no metrics line on stderr within 5 s of SIGUSR1")
        check(cap.proc.poll() is None, "capture exited on SIGUSR1 (exit %s)", cap.proc.returncode)
        res = cap.stop()
        res.check_well_formed()
        missing = {}
        for l in res.lines:
            want = DOC_KEYS.get(l.get("type"))
            if want:
                for k in want - set(l):
                    missing.setdefault((l["type"], k), 0)
                    missing[(l["type"], k)] += 1
        seen = {l.get("type") for l in res.lines}
        check(seen >= set(DOC_KEYS), "line types seen %s, expected all of %s", sorted(seen), sorted(DOC_KEYS))
        check(not missing, "lines lack keys that docs/CAPTURE-FORMAT.md shows: %s",
              ", ".join("%s.%s (%d lines)" % (t, k, n) for (t, k), n in sorted(missing.items())))


# --------------------------------------------------------------------------


def test_server_writev():
    """nats-server writes with writev: its egress shows syscall writev."""
    with Env("writev") as env:
        res, peer, ns = run_lib_peer_test(env, "go", [GO_PEER], count=100, size=64)
        c, s = check_lib_peer(res, peer, ns, "go")
        sc = {}
        for l in s.stream("egress").data_lines():
            sc[l.get("syscall")] = sc.get(l.get("syscall"), 0) + 1
        check(sc.get("writev", 0) > 0, "%r egress syscalls %s: no writev", s, sc)


def test_preexisting_client():
    """Clients connected before the capture started (--hold-file): seen as
    preexisting, and everything they do afterwards is captured exactly."""
    with Env("pre") as env:
        ns = start_nats(env)
        hold = env.path("go-hold")
        subj = "wirespan.pre"
        go = env.spawn([GO_PEER, "--url", ns.url, "--count", 10, "--size", 200, "--subject", subj, "--hold-file", hold],
                       stdout=env.path("go.out"), stderr=env.path("go.err"), name="natsclient-go")
        raw = env.spawn(raw_cmd(ns, "--count", 5, "--size", 333, "--subject", "wirespan.preraw", "--hold-file", hold, "--dump-prefix", env.path("raw")),
                        stdout=env.path("raw.out"), stderr=env.path("raw.err"), name="rawclient")
        deadline = time.monotonic() + 15
        while not all("connected" in env.path(f).read_text() for f in ("go.err", "raw.err")):
            check(time.monotonic() < deadline, "peers did not connect: %s / %s", env.path("go.err").read_text(), env.path("raw.err").read_text())
            check(go.poll() is None and raw.poll() is None, "a peer exited early: %s %s", env.path("go.err").read_text(), env.path("raw.err").read_text())
            time.sleep(0.05)
        time.sleep(0.2)  # the handshakes are complete before the capture exists
        cap = Capture(env, ["--port", ns.port])
        hold.write_text("go\n")
        for p in (go, raw):
            p.wait(60)
        gres = peer_result(go, env.path("go.out"), env.path("go.err"), "natsclient-go")
        rres = peer_result(raw, env.path("raw.out"), env.path("raw.err"), "rawclient")
        cap.wait_closes(lambda l: True, 4)
        res = cap.stop()
        res.check_well_formed()

        # nats.go client: the PUB and MSG frames it sent/received after the hold.
        ((c, s),) = nats_pairs(res, gres["_pid"], ns, 1)
        check_open(c, preexisting=True, proto="nats")
        check_open(s, preexisting=True, proto="nats")
        for x in (c, s):
            res.check_conn(x, from_start=False, allow_gaps=("unclassified",))
        pubs = b"".join(b"PUB %s %d\r\n" % (subj.encode(), 200) + payload(k, 200) + b"\r\n" for k in range(10))
        for x, d in ((c, "egress"), (s, "ingress")):
            segs = data_segments(x.stream(d))
            check(any(pubs in seg for seg in segs), "%r %s: the 10 PUB frames the client sent after the hold are not in the capture (%r)", x, d, x.stream(d))
        for x, d in ((c, "ingress"), (s, "egress")):
            segs = b"".join(data_segments(x.stream(d)))
            pos = 0
            for k in range(10):
                i = segs.find(payload(k, 200), pos)
                check(i >= 0, "%r %s: MSG payload %d missing (%r)", x, d, k, x.stream(d))
                pos = i + 200

        # raw client: every byte after the hold, exactly, end-aligned to close.bytes.
        (row,) = rres["conns"]
        ((rc, rs),) = nats_pairs(res, rres["_pid"], ns, 1)
        check_open(rc, preexisting=True, proto="nats")
        check_open(rs, preexisting=True, proto="nats")
        for d, hoff in (("egress", row["hold_egress_offset"]), ("ingress", row["hold_ingress_offset"])):
            want = Path(row[d + "_dump"]).read_bytes()
            base = rc.close[d]["bytes"] - len(want)  # capture offset of the peer's byte 0
            covered = res.check_against(rc, d, want, base=base, need_all=False)
            check(covered >= len(want) - hoff,
                  "%r %s: %d bytes captured, but the peer moved %d after the capture started (gaps %s)",
                  rc, d, covered, len(want) - hoff, dict(rc.stream(d).gap_reasons))
            # The server's side, from its first traced syscall to its close,
            # is a suffix of the same bytes (it may have written, before the
            # capture started, bytes the client only read after the hold).
            sd = "ingress" if d == "egress" else "egress"
            n = rs.close[sd]["bytes"]
            check(n <= len(want), "%r %s: close.bytes %d, but the client %s only %d bytes in all", rs, sd, n,
                  "sent" if d == "egress" else "received", len(want))
            got = res.check_against(rs, sd, want, base=n - len(want), need_all=False)
            check(got == n, "%r %s: %d of its %d bytes captured (gaps %s)", rs, sd, got, n, dict(rs.stream(sd).gap_reasons))


def data_segments(st):
    b, ranges = st.buf()
    return [bytes(b[lo:hi]) for lo, hi in ranges]


def test_pid_and_protocol_filters():
    """--pid NATS_SERVER_PID --protocol nats: only nats-server's NATS
    connections appear (not the client's, not HTTP), still byte-exact."""
    with Env("filters") as env:
        ns = start_nats(env)
        bport = free_port()
        backend = env.spawn([PYTHON, HTTP_BACKEND, "--port", bport, "--timeout", 60], stdout=env.path("backend.out"), stderr=env.path("backend.err"), name="httpbackend")
        wait_port("127.0.0.1", bport, 10, backend)
        cap = Capture(env, ["--pid", ns.pid, "--pid", backend.pid, "--protocol", "nats"])
        peer = env.run_peer(raw_cmd(ns, "--conns", 2, "--count", 4, "--size", 200, "--dump-prefix", env.path("raw")), name="rawclient")
        curl = subprocess.run([CURL, "-sS", "-o", "/dev/null", "--max-time", "10", "http://127.0.0.1:%d/text/100" % bport], capture_output=True, timeout=20)
        check(curl.returncode == 0, "curl failed: %s", curl.stderr)
        cap.wait_closes(lambda l: True, 2)
        res = cap.stop()
        res.check_well_formed()
        others = [c for c in res.conns.values() if c.pid != ns.pid]
        check(not others, "connections of other processes despite --pid %d: %s", ns.pid, others)
        check(all(c.get("proto") == "nats" for c in res.conns.values()), "non-NATS connections despite --protocol nats: %s", res.describe_conns())
        by_rport = {c.get("rport"): c for c in res.conns.values()}
        check(len(res.conns) == 2, "expected nats-server's 2 connections, got %d: %s", len(res.conns), res.describe_conns())
        for row in peer["conns"]:
            s = by_rport.get(row["lport"])
            check(s is not None, "nats-server's side of client port %d missing", row["lport"])
            check_open(s, role="server", proto="nats")
            res.check_conn(s)
            res.check_against(s, "ingress", Path(row["egress_dump"]).read_bytes())
            res.check_against(s, "egress", Path(row["ingress_dump"]).read_bytes())


def test_ipv6():
    """nats-server on ::1, raw client over IPv6: addresses and bytes exact."""
    with Env("ipv6") as env:
        ns = start_nats(env, host="::1")
        cap = Capture(env, ["--port", ns.port])
        peer = env.run_peer(raw_cmd(ns, "--conns", 2, "--count", 5, "--size", 100, "--dump-prefix", env.path("raw")), name="rawclient")
        cap.wait_closes(lambda l: True, 4)
        res = cap.stop()
        res.check_well_formed()
        for row, c, s in raw_pairs(res, peer, ns):
            check_open(c, family="ipv6", laddr="::1", raddr="::1")
            check_open(s, family="ipv6", laddr="::1", raddr="::1")


def test_1000_connections():
    """1000 concurrent raw-client connections: each opened, closed, byte-exact."""
    n = 1000
    with Env("c1000") as env:
        ns = start_nats(env)
        cap = Capture(env, ["--port", ns.port])
        peer = env.run_peer(raw_cmd(ns, "--conns", n, "--count", 2, "--size", 64, "--dump-prefix", env.path("raw")), name="rawclient", timeout=90)
        check(len(peer["conns"]) == n, "peer made %d connections", len(peer["conns"]))
        ok = cap.wait_closes(lambda l: True, 2 * n, timeout=30)
        res = cap.stop()
        res.check_well_formed()
        opens = sum(1 for c in res.conns.values() if c.open)
        closes = sum(1 for c in res.conns.values() if c.close)
        check(ok, "only %d opens / %d closes of %d connections x 2 ends within 30 s; metrics %s", opens, closes, n, res.metrics)
        pairs = raw_pairs(res, peer, ns)
        check(len(pairs) == n, "%d pairs", len(pairs))
        check(len({c.id for _, c, _ in pairs}) == n and len({s.id for _, _, s in pairs}) == n, "conn ids not unique")


def test_fd_reuse():
    """Sequential connections reusing one fd number are distinct conns (GEN)."""
    n = 5
    with Env("fdreuse") as env:
        ns = start_nats(env)
        cap = Capture(env, ["--port", ns.port])
        peer = env.run_peer(raw_cmd(ns, "--reuse", n, "--count", 3, "--size", 50, "--dump-prefix", env.path("raw")), name="rawclient")
        fds = {r["fd"] for r in peer["conns"]}
        check(len(fds) == 1, "the peer did not reuse one fd: %s", [r["fd"] for r in peer["conns"]])
        cap.wait_closes(lambda l: True, 2 * n)
        res = cap.stop()
        res.check_well_formed()
        pairs = raw_pairs(res, peer, ns)
        ids = [c.id for _, c, _ in pairs]
        check(len(set(ids)) == n, "expected %d distinct conn ids, got %s", n, ids)
        check(len({(c.pid, c.fd) for _, c, _ in pairs}) == 1, "TGID:FD differ: %s", ids)
        check(len({c.gen for _, c, _ in pairs}) == n, "GEN not distinct: %s", ids)
        # server side: nats-server may also reuse fds; its conns must be distinct too
        check(len({s.id for _, _, s in pairs}) == n, "server conn ids not distinct: %s", [s.id for _, _, s in pairs])


# --------------------------------------------------------------------------
# HTTP through a reverse proxy


HTTP_REQUESTS = [("/text/1000", 1000, "text"), ("/bytes/300000", 300000, "bytes"), ("/text/20", 20, "text")]


def http_proxy_test(name, start_proxy, proxy_comm):
    with Env(name) as env:
        bport, pport = free_port(), free_port()
        backend = env.spawn([PYTHON, HTTP_BACKEND, "--port", bport, "--timeout", 120], stdout=env.path("backend.out"), stderr=env.path("backend.err"), name="httpbackend")
        wait_port("127.0.0.1", bport, 10, backend)
        proxy = start_proxy(env, pport, bport)
        wait_port("127.0.0.1", pport, 15, proxy)
        cap = Capture(env, ["--port", pport, "--port", bport, "--protocol", "http"])
        args = [CURL, "-sS", "--http1.1", "--max-time", "20"]
        for i, (path, _, _) in enumerate(HTTP_REQUESTS):
            args += ["-o", str(env.path("body.%d" % i)), "http://127.0.0.1:%d%s" % (pport, path)]
        curl = env.spawn(args, stdout=env.path("curl.out"), stderr=env.path("curl.err"), name="curl")
        rc = curl.wait(30)
        check(rc == 0, "curl failed (%s): %s", rc, env.path("curl.err").read_text())
        for i, (path, n, kind) in enumerate(HTTP_REQUESTS):
            body = env.path("body.%d" % i).read_bytes()
            want = httpbackend.binary_body(n) if kind == "bytes" else httpbackend.text_body(n)
            check(body == want, "curl got a wrong body for %s (%d bytes)", path, len(body))
        # proxy exits -> its connections close; then the backend's close
        stop_process(proxy)
        cap.wait_all_closed(timeout=10)
        res = cap.stop()
        stop_process(backend)
        res.check_well_formed()
        return check_http_path(res, curl.pid, pport, bport, proxy_comm)


def check_http_path(res, curl_pid, pport, bport, proxy_comm):
    curls = [c for c in res.by_pid(curl_pid) if c.open]
    check(len(curls) == 1, "expected 1 curl connection, got %d; capture: %s\n      %s", len(curls), res.summary(), res.describe_conns())
    (cc,) = curls
    check_open(cc, role="client", proto="http", rport=pport, comm="curl", preexisting=False)
    ps = res.peer_of(cc)
    check(ps is not None, "%r: proxy's server side not found; conns:\n      %s", cc, res.describe_conns())
    check_open(ps, role="server", proto="http", lport=pport, preexisting=False)
    check(ps.get("comm", "").startswith(proxy_comm), "%r: comm %r, expected %s", ps, ps.get("comm"), proxy_comm)
    allow = ("cap", "iov")
    for x in (cc, ps):
        res.check_conn(x, allow_gaps=allow)
    res.check_pair(cc, ps)
    ce = cc.stream("egress")
    check(ce.gap_bytes == 0, "%r: curl's requests have gaps %s", cc, dict(ce.gap_reasons))
    reqs = ce.contiguous()
    check(reqs.startswith(b"GET /text/1000 HTTP/1.1\r\n"), "%r egress: %s", cc, show(reqs, 80))
    check(reqs.count(b"GET /") == len(HTTP_REQUESTS), "%r: %d GETs in curl's egress", cc, reqs.count(b"GET /"))
    check(ps.stream("ingress").contiguous() == reqs, "%r ingress != curl egress", ps)

    # upstream hop: proxy (client) -> backend (server)
    ups = [c for c in res.select(role="client") if c.get("rport") == bport]
    check(ups, "no proxy -> backend connection (role client, rport %d) in the capture; conns:\n      %s", bport, res.describe_conns())
    got_paths = []
    for uc in ups:
        check(uc.get("comm", "").startswith(proxy_comm), "%r: comm %r, expected %s", uc, uc.get("comm"), proxy_comm)
        check(uc.pid == ps.pid, "%r: upstream conn in pid %d, downstream in %d", uc, uc.pid, ps.pid)
        us = res.peer_of(uc)
        check(us is not None, "%r: backend's side not found", uc)
        check_open(uc, proto="http")
        check_open(us, role="server", proto="http", lport=bport)
        pre = bool(uc.get("preexisting"))
        for x in (uc, us):
            res.check_conn(x, from_start=not pre, allow_gaps=allow + (("unclassified",) if pre else ()))
        if not pre:
            res.check_pair(uc, us)
            ue = uc.stream("egress").contiguous()
            check(ue.startswith(b"GET /"), "%r egress: %s", uc, show(ue, 80))
            got_paths += [ln.split(b" ")[1].decode() for ln in ue.split(b"\r\n") if ln.startswith(b"GET /")]
    log("http path: curl %r <-> proxy %r; upstream %s", cc, ps, ["%r <-> %r pre=%s" % (u, res.peer_of(u), u.get("preexisting")) for u in ups])
    check(sorted(got_paths) == sorted(p for p, _, _ in HTTP_REQUESTS),
          "requests seen upstream %s, expected %s (upstream conns: %s)", got_paths, [p for p, _, _ in HTTP_REQUESTS], ups)
    # the small text body went through every hop intact
    body = b"wirespan-" * 111 + b"w"
    for x, d in ((cc, "ingress"), (ps, "egress")) + tuple((u, "ingress") for u in ups):
        check(any(body in seg for seg in data_segments(x.stream(d))), "%r %s: the 1000-byte text body is not captured", x, d)
    return res


def start_caddy(env, pport, bport):
    cfg = render(PEERS_SRC / "caddy" / "Caddyfile.tmpl", env.path("Caddyfile"), LISTEN_PORT=pport, BACKEND_PORT=bport, PREFIX=env.tmp)
    e = dict(os.environ, HOME=str(env.tmp), XDG_DATA_HOME=str(env.path("xdg-data")), XDG_CONFIG_HOME=str(env.path("xdg-config")))
    return env.spawn([CADDY, "run", "--config", cfg, "--adapter", "caddyfile"], stdout=env.path("caddy.out"), stderr=subprocess.STDOUT, env=e, name="caddy")


def start_nginx(env, pport, bport):
    conf = render(PEERS_SRC / "nginx" / "nginx.conf.tmpl", env.path("nginx.conf"), LISTEN_PORT=pport, BACKEND_PORT=bport, PREFIX=env.tmp)
    return env.spawn([NGINX, "-p", env.tmp, "-c", conf, "-e", env.path("error.log")], stdout=env.path("nginx.out"), stderr=subprocess.STDOUT, name="nginx")


def test_http_caddy():
    """curl -> caddy -> backend: every hop seen with the right roles, byte-exact."""
    http_proxy_test("caddy", start_caddy, "caddy")


def test_http_nginx():
    """curl -> nginx -> backend: every hop seen with the right roles, byte-exact."""
    http_proxy_test("nginx", start_nginx, "nginx")


# --------------------------------------------------------------------------


# The flood tests make the 256 KiB ring buffer overflow on purpose: the
# sender writes 64 KiB per send(2) as fast as loopback takes it, so the kernel
# produces a 16 KiB record (plus one per recv(2) of the sink) every few
# microseconds; the ring holds about 16 of them. (With 256 KiB sends the
# record rate is low enough that the consumer mostly keeps up.)
FLOOD_CHUNK = 65536


def test_flood_ringbuf():
    """200 MB of PUB frames into a sink with a 256 KiB ring buffer and
    --summary: the ring buffer overflows, and still every byte is accounted
    for (bytes sent == close.bytes == captured + gap)."""
    total = 200 * 1000 * 1000
    with Env("flood") as env:
        port = free_port()
        sink = env.spawn([PYTHON, SINK_PEER, "--port", port, "--timeout", 90], stdout=env.path("sink.out"), stderr=env.path("sink.err"), name="natssink")
        deadline = time.monotonic() + 10
        while "listening" not in env.path("sink.err").read_text():  # no probe: the sink takes one connection
            check(time.monotonic() < deadline and sink.poll() is None, "sink did not start: %s", env.path("sink.err").read_text())
            time.sleep(0.05)
        cap = Capture(env, ["--port", port, "--ringbuf-size", 262144, "--summary"])
        sender = env.run_peer([PYTHON, RAW_PEER, "--url", "nats://127.0.0.1:%d" % port, "--flood", total, "--flood-chunk", FLOOD_CHUNK, "--flood-seconds", 60], name="rawclient", timeout=90)
        sink.wait(30)
        sres = peer_result(sink, env.path("sink.out"), env.path("sink.err"), "natssink")
        pids = {sender["_pid"], sink.pid}
        cap.wait_for(lambda ls: {l.get("pid") for l in ls if l.get("type") == "close"} >= pids, 15, "flood closes")
        res = cap.stop()
        res.check_well_formed()
        sc = sender["conn"]
        (sk,) = sres["conns"]
        check(sk["ingress_bytes"] == sc["egress_bytes"] and sk["ingress_sha256"] == sc["egress_sha256"], "sink got %d bytes, sender sent %d", sk["ingress_bytes"], sc["egress_bytes"])
        log("flood: %d bytes in %.2fs", sc["egress_bytes"], sc["flood_seconds"])

        # Collect every problem, so one run reports all of them.
        problems = []
        conns = {}
        for who, pid in (("sender", sender["_pid"]), ("sink", sink.pid)):
            cs = res.by_pid(pid)
            if len(cs) != 1:
                problems.append("%s (pid %d): %d connections in the capture, expected 1" % (who, pid, len(cs)))
                continue
            conns[who] = cs[0]
        for who, x in conns.items():
            if x.open is None:
                problems.append("%s %s: no open line (--summary must print open and close lines)" % (who, x.id))
            if x.close is None:
                problems.append("%s %s: no close line" % (who, x.id))
            if x.pieces["egress"] or x.pieces["ingress"]:
                problems.append("%s %s: data/gap lines in --summary mode" % (who, x.id))
        if "sender" in conns and "sink" in conns and conns["sender"].open and conns["sink"].open:
            if res.peer_of(conns["sender"]) is not conns["sink"]:
                problems.append("sender and sink connections do not pair by address: %r %r" % (conns["sender"], conns["sink"]))
        rows = []
        gap_total = 0
        for who, d, want in (("sender", "egress", sc["egress_bytes"]), ("sender", "ingress", sc["ingress_bytes"]),
                             ("sink", "ingress", sk["ingress_bytes"]), ("sink", "egress", sk["egress_bytes"])):
            x = conns.get(who)
            if x is None or x.close is None:
                continue
            cd = x.close[d]
            gap_total += cd["gap"]
            rows.append("%s %s: moved=%d bytes=%d captured=%d gap=%d" % (who, d, want, cd["bytes"], cd["captured"], cd["gap"]))
            if cd["bytes"] != want:
                problems.append("%s %s: close.bytes %d, the peer moved %d" % (who, d, cd["bytes"], want))
            if cd["captured"] + cd["gap"] != want:
                problems.append("%s %s: captured %d + gap %d != %d moved" % (who, d, cd["captured"], cd["gap"], want))
        rb_full = metric(res.metrics, "rb_full_events")
        log("flood accounting: %s; rb_full_events=%s", "; ".join(rows), rb_full)
        if rb_full is None:
            problems.append("metrics line has no rb_full_events: %s" % res.metrics)
        elif rb_full == 0:
            problems.append("the 256 KiB ring buffer never overflowed (rb_full_events=0) during a %d-byte flood in %.2fs: "
                            "the overflow path was not exercised" % (sc["egress_bytes"], sc["flood_seconds"]))
        elif gap_total == 0:
            problems.append("ring buffer overflowed (%d events) but no gap bytes were counted" % rb_full)
        # Only these two connections are traced, so the bytes of the lost
        # records are exactly the 'lost' gap bytes userspace counted.
        lost = ((res.metrics.get("user") or {}).get("gap_bytes") or {}).get("lost")
        rb_bytes = metric(res.metrics, "rb_full_bytes")
        if lost is not None and rb_bytes is not None and lost != rb_bytes:
            problems.append("metrics: user gap_bytes.lost %d != kernel rb_full_bytes %d" % (lost, rb_bytes))
        check(not problems, "%s\n(accounting: %s; rb_full_events=%s)", "\n".join(problems), "; ".join(rows), rb_full)


def load_rawclient():
    import importlib.util

    spec = importlib.util.spec_from_file_location("rawclient", RAW_PEER)
    rc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rc)
    return rc


def flood_stream(n_frames, marker=False):
    """The exact bytes rawclient.py --flood sends (CONNECT, the frames[, marker])."""
    rc = load_rawclient()
    frame = b"PUB flood 4096\r\n" + payload(0, 4096) + b"\r\n"
    return rc.CONNECT + frame * n_frames + (rc.MARKER if marker else b"")


def test_flood_ringbuf_data():
    """20 MB flood with full output and a 256 KiB ring buffer: 'lost' gaps
    where records were dropped, the streams still tile, every captured byte
    is the byte that was sent, and a frame sent after the flood (while the
    connection stays open) is printed without waiting for the close."""
    total = 20 * 1000 * 1000
    with Env("flooddata") as env:
        port = free_port()
        linger = env.path("linger")
        sink = env.spawn([PYTHON, SINK_PEER, "--port", port, "--timeout", 90], stdout=env.path("sink.out"), stderr=env.path("sink.err"), name="natssink")
        deadline = time.monotonic() + 10
        while "listening" not in env.path("sink.err").read_text():
            check(time.monotonic() < deadline and sink.poll() is None, "sink did not start: %s", env.path("sink.err").read_text())
            time.sleep(0.05)
        cap = Capture(env, ["--port", port, "--ringbuf-size", 262144])
        sender = env.spawn([PYTHON, RAW_PEER, "--url", "nats://127.0.0.1:%d" % port, "--flood", total, "--flood-chunk", FLOOD_CHUNK,
                            "--flood-seconds", 60, "--linger-file", linger], stdout=env.path("raw.out"), stderr=env.path("raw.err"), name="rawclient")
        deadline = time.monotonic() + 60
        while "flood done" not in env.path("raw.err").read_text():
            check(time.monotonic() < deadline and sender.poll() is None, "flood did not finish: %s", env.path("raw.err").read_text())
            time.sleep(0.05)
        marker = load_rawclient().MARKER

        def marker_seen(lines):
            return [l for l in lines if l.get("type") == "data" and "wirespan-flood-done" in l.get("data", "")]

        t0 = time.monotonic()
        live = cap.wait_for(lambda ls: len(marker_seen(ls)) >= 2, 5.0, "the marker frame")
        t_marker = time.monotonic() - t0
        live_ends = sorted({"%s %s" % (l["conn"], l["dir"]) for l in marker_seen(cap.poll_lines())})
        n_live = len(live_ends)
        linger.write_text("go\n")
        sender.wait(30)
        sink.wait(30)
        sres = peer_result(sender, env.path("raw.out"), env.path("raw.err"), "rawclient")
        kres = peer_result(sink, env.path("sink.out"), env.path("sink.err"), "natssink")
        cap.wait_closes(lambda l: True, 2, timeout=15)
        res = cap.stop()
        res.check_well_formed()
        sc = sres["conn"]
        (sk,) = kres["conns"]
        want = flood_stream(sc["frames"], marker=True)
        check(len(want) == sc["egress_bytes"] and sha256(want) == sc["egress_sha256"], "cannot rebuild the flood stream (%d vs %d bytes)", len(want), sc["egress_bytes"])
        check(sk["ingress_bytes"] == len(want), "sink got %d of %d bytes", sk["ingress_bytes"], len(want))
        ((c, s),) = nats_pairs(res, sres["_pid"], type("Sink", (), {"pid": sink.pid})(), 1)
        allow = ("cap", "lost")
        for x in (c, s):
            res.check_conn(x, allow_gaps=allow)
        res.check_pair(c, s)
        res.check_against(c, "egress", want, need_all=False)
        res.check_against(s, "ingress", want, need_all=False)
        lost = c.stream("egress").gap_reasons.get("lost", 0) + s.stream("ingress").gap_reasons.get("lost", 0)
        rb_full = metric(res.metrics, "rb_full_events")
        rb_bytes = metric(res.metrics, "rb_full_bytes")
        log("flood data: lost gap bytes %d, rb_full_events %s, rb_full_bytes %s; marker lines while open: %d after %.1fs",
            lost, rb_full, rb_bytes, n_live, t_marker)
        check(rb_full and rb_full > 0, "the ring buffer never overflowed (rb_full_events=%s): the 'lost' path was not exercised", rb_full)
        check(lost == rb_bytes, "'lost' gap lines hold %d bytes, kernel rb_full_bytes is %s", lost, rb_bytes)
        for x, d in ((c, "egress"), (s, "ingress")):
            check(any(marker in seg for seg in data_segments(x.stream(d))), "%r %s: the marker frame sent after the flood is not captured", x, d)
        if not live:
            held = []
            for x, d in ((c, "egress"), (s, "ingress")):
                if "%s %s" % (x.id, d) in live_ends:
                    continue
                st = x.stream(d)
                after = [l for l in st.data_lines() if l["offset"] > max((g["offset"] for g in st.gap_lines() if g["reason"] == "lost"), default=-1)]
                held.append("%r %s (its last 'lost' gap is followed by %d data lines, %d of them without syscall/ts)"
                            % (x, d, len(after), sum(1 for l in after if "syscall" not in l)))
            raise TestFailure(
                "a frame sent 0.2 s after the flood, on a connection then left open, was not printed within 5 s for: %s; "
                "it only came out at the close" % "; ".join(held)
            )
