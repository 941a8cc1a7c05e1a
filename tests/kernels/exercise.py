#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""One kernel's part of `make kernels` (docs/RELIABILITY.md, "Kernels").

  exercise.py --wirespan BIN --programs FILE --out JSON [--label NAME]

Runs on the kernel under test (the qemu guest, or this host), with only the
Python standard library, nats-server and the wirespan binary:

1. `wirespan doctor --no-nats` must pass;
2. `wirespan capture --port P` must load and attach every program named in
   FILE (one per line, from the skeleton); each program's verifier
   instruction count (verified_insns, from the capture process's
   /proc/PID/fdinfo of its program fds) and translated/JITed sizes are
   recorded; the load is repeated with WIRESPAN_NO_TASK_STORAGE=1 for the
   hash-map variant of the syscall-argument store; every count must stay
   under --headroom of the verifier's 1M-instruction limit (default 80%), so
   growth fails here before it fails to load;
3. a NATS exchange with a real nats-server on 127.0.0.1:P, the client
   moving its bytes with each of the eight data syscalls (write, sendto,
   writev, sendmsg, read, recvfrom, readv, recvmsg); the captured bytes of
   both ends must be exactly what the client sent and received, with no gap;
4. `wirespan agent --output stdout --port P` and the same exchange again:
   one publish and one process span for the client.

Writes every figure and check to JSON and exits 0 only when all checks pass.
"""

import argparse
import json
import os
import platform
import re
import signal
import socket
import struct
import subprocess
import sys
import time

SUBJECT = "ws.kernels"
# The verifier gives up on a program past this many processed instructions
# (BPF_COMPLEXITY_LIMIT_INSNS, Linux 5.2+).
VERIFIER_LIMIT = 1000000
LOAD_TIMEOUT = 600  # the verifier under TCG emulation on a shared machine


class Run:
    def __init__(self, args):
        self.args = args
        self.checks = []
        self.tmp = args.tmp
        os.makedirs(self.tmp, exist_ok=True)

    def check(self, name, ok, detail=""):
        self.checks.append({"name": name, "ok": bool(ok), "detail": detail})
        print("  %-4s %s%s" % ("ok" if ok else "FAIL", name, (": " + detail) if detail and not ok else ""), flush=True)
        return ok


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def start_capture(run, port, env_extra, tag):
    """wirespan capture --port PORT; returns (proc, stdout path, stderr path,
    seconds to ready) or (proc, ..., None) when it never got ready."""
    out = os.path.join(run.tmp, "capture-%s.jsonl" % tag)
    err = os.path.join(run.tmp, "capture-%s.err" % tag)
    env = dict(os.environ, **env_extra)
    t0 = time.monotonic()
    proc = subprocess.Popen([run.args.wirespan, "capture", "--port", str(port), "--verbose"],
                            stdout=open(out, "wb"), stderr=open(err, "wb"), env=env)
    while time.monotonic() - t0 < LOAD_TIMEOUT:
        with open(err, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        if re.search(r"^wirespan capture: \d+ programs attached, ready$", text, re.M):
            return proc, out, err, time.monotonic() - t0
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    return proc, out, err, None


def stop(proc, timeout=60):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def bpftool_names(ids, bpftool):
    """prog id -> (name, bytes_xlated, bytes_jited) from bpftool (whose
    names are the kernel's, cut at 15 characters)."""
    r = subprocess.run([bpftool, "prog", "show", "-j"], capture_output=True, text=True)
    out = {}
    if r.returncode == 0:
        for p in json.loads(r.stdout or "[]"):
            if p["id"] in ids:
                out[p["id"]] = (p.get("name", ""), p.get("bytes_xlated", 0), p.get("bytes_jited", 0))
    return out


def program_stats(pid, expected, bpftool):
    """Every BPF program fd the process holds: name -> figures."""
    fdinfo = "/proc/%d/fdinfo" % pid
    by_id = {}
    for fd in os.listdir(fdinfo):
        try:
            with open(os.path.join(fdinfo, fd)) as f:
                kv = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except OSError:
            continue
        if "prog_id" in kv and "prog_type" in kv:
            by_id[int(kv["prog_id"])] = int(kv.get("verified_insns", "-1"))
    names = bpftool_names(set(by_id), bpftool)
    progs = {}
    for pid_, insns in by_id.items():
        short, xl, jit = names.get(pid_, ("?", 0, 0))
        # the full name: the expected program whose first 15 characters
        # the kernel kept
        full = next((e for e in expected if e[:15] == short), short)
        progs[full] = {"id": pid_, "verified_insns": insns, "bytes_xlated": xl, "bytes_jited": jit}
    return progs


def load_and_measure(run, port, env_extra, tag):
    """Load and attach every program; their figures, the ready time and
    the argument store the loader chose."""
    res = {"tag": tag, "env": env_extra}
    proc, out, err, ready = start_capture(run, port, env_extra, tag)
    res["ready_seconds"] = round(ready, 2) if ready is not None else None
    if ready is None:
        stop(proc)
        with open(err, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        # the verifier's own words for the program that failed
        res["error"] = "\n".join(l for l in text.splitlines() if "libbpf: " not in l or "failed" in l or "error" in l.lower())[-3000:]
        res["log_tail"] = text[-6000:]
        return res, None
    with open(err, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    m = re.search(r"syscall arguments kept in (task storage|a hash map)", text)
    res["args_store"] = m.group(1) if m else "?"
    m = re.search(r"^wirespan capture: (\d+) programs attached", text, re.M)
    res["attached"] = int(m.group(1))
    res["skipped"] = re.findall(r"tracepoint (\S+) not available: skipped", text)
    res["programs"] = program_stats(proc.pid, run.expected, run.args.bpftool)
    return res, (proc, out, err)


def all_loaded(expected, variant):
    """Every program of the object is loaded and attached, except that the
    data syscalls' enter programs come in pairs (tp_enter_X with
    bpf_rdonly_cast, tpr_enter_X with helper reads: bpf/wirespan.bpf.c) of
    which exactly one is: tp_enter_X where the kernel has bpf_rdonly_cast
    (6.2+), tpr_enter_X before."""
    loaded = set(variant.get("programs", {}))
    pairs = [("tp_enter_" + p[len("tpr_enter_"):], p) for p in expected if p.startswith("tpr_enter_")]
    twins = {n for pair in pairs for n in pair}
    # the Go runtime uprobes (bpf/gort.bpf.h) load where the kernel has
    # uprobe programs and bpf_task_pt_regs, and attach per Go binary later
    go = {p for p in expected if p.startswith("go_")}
    major, minor = (int(x) for x in platform.release().split(".")[:2])
    cast = (major, minor) >= (6, 2)
    want = {p for p in expected if p not in twins and p not in go} | {pair[0 if cast else 1] for pair in pairs}
    return loaded - go == want and loaded & go in (set(), go) and variant.get("attached") == len(want)


def check_headroom(run, res, what):
    """Every program's verifier count under the share of the limit."""
    limit = int(run.args.headroom * VERIFIER_LIMIT)
    over = {n: p["verified_insns"] for n, p in res.get("programs", {}).items() if p["verified_insns"] > limit}
    unknown = [n for n, p in res.get("programs", {}).items() if p["verified_insns"] < 0]
    if unknown:  # verified_insns is in fdinfo since Linux 5.16
        print("  note %s: no verified_insns for %s" % (what, ", ".join(unknown)), flush=True)
    run.check("%s: every program under %d verified instructions (%.0f%% of the verifier's limit)"
              % (what, limit, 100 * run.args.headroom), res.get("programs") and not over, "over: %s" % over)


def read_until(recv, want, limit=65536):
    """Call recv() until the bytes received contain want."""
    got = b""
    while want not in got and len(got) < limit:
        chunk = recv()
        if not chunk:
            break
        got += chunk
    return got


def nats_exchange(port, payload):
    """A NATS client that uses every data syscall once or more. Returns the
    bytes it sent and the bytes it received, in order, and the pid."""
    sent, recvd = [], []
    c = socket.create_connection(("127.0.0.1", port))
    # blocking (os.read on a Python socket with a timeout would see
    # EAGAIN), but never forever
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 20, 0))
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 20, 0))
    fd = c.fileno()

    def put(data, how):
        how(data)
        sent.append(data if isinstance(data, bytes) else b"".join(data))

    # read(2): the server's INFO
    recvd.append(read_until(lambda: os.read(fd, 4096), b"\r\n"))
    # write(2), sendto(2): CONNECT, PING -> recvfrom(2): PONG
    put(b'CONNECT {"verbose":false,"pedantic":false,"name":"ws-kernels","lang":"python","version":"1"}\r\n',
        lambda d: os.write(fd, d))
    put(b"PING\r\n", c.send)
    recvd.append(read_until(lambda: c.recv(4096), b"PONG\r\n"))
    # writev(2): SUB + PING -> readv(2): PONG
    put([b"SUB %s 1\r\n" % SUBJECT.encode(), b"PING\r\n"], lambda d: os.writev(fd, d))
    buf = bytearray(4096)
    recvd.append(read_until(lambda: bytes(buf[:os.readv(fd, [buf])]), b"PONG\r\n"))
    # sendmsg(2): PUB in three iovecs -> recvmsg(2): the MSG back
    pub = [b"PUB %s %d\r\n" % (SUBJECT.encode(), len(payload)), payload, b"\r\n"]
    put(pub, c.sendmsg)
    want = b"MSG %s 1 %d\r\n%s\r\n" % (SUBJECT.encode(), len(payload), payload)
    recvd.append(read_until(lambda: c.recvmsg(4096)[0], want))
    c.close()
    return b"".join(sent), b"".join(recvd), want


def parse_capture(path):
    lines = []
    with open(path, "rb") as f:
        for raw in f:
            try:
                lines.append(json.loads(raw))
            except ValueError:
                pass
    return lines


def stream(lines, conn, direction):
    """The bytes of one direction of a connection, from its data lines, and
    the gaps seen."""
    data = sorted((l for l in lines if l.get("type") == "data" and l["conn"] == conn and l["dir"] == direction),
                  key=lambda l: l["offset"])
    out, gaps = b"", [l for l in lines if l.get("type") == "gap" and l["conn"] == conn and l["dir"] == direction]
    for l in data:
        if l["offset"] != len(out):
            gaps.append({"offset": l["offset"], "have": len(out)})
        out += l["data"].encode("latin-1")
    return out, gaps, sorted({l["syscall"] for l in data})


def verify_exchange(run, lines, port, client_pid, sent, recvd):
    opens = [l for l in lines if l.get("type") == "open"]
    closes = {l["conn"]: l for l in lines if l.get("type") == "close"}
    cli = [o for o in opens if o["pid"] == client_pid and o["proto"] == "nats" and o["rport"] == port]
    srv = [o for o in opens if o["comm"] == "nats-server" and o["proto"] == "nats" and o["lport"] == port]
    run.check("client connection seen and classified NATS", len(cli) == 1, "client opens %s" % cli)
    run.check("server connection seen and classified NATS", len(srv) == 1, "server opens %s" % srv)
    out = {}
    for side, opened, egress_want, ingress_want in (("client", cli, sent, recvd), ("server", srv, recvd, sent)):
        if len(opened) != 1:
            continue
        o = opened[0]
        run.check("%s role" % side, o["role"] == side, "role %s" % o["role"])
        eg, eg_gaps, eg_sys = stream(lines, o["conn"], "egress")
        ig, ig_gaps, ig_sys = stream(lines, o["conn"], "ingress")
        run.check("%s egress bytes exact (%d)" % (side, len(egress_want)), eg == egress_want and not eg_gaps,
                  "captured %r gaps %s, want %r" % (eg[:300], eg_gaps, egress_want[:300]))
        run.check("%s ingress bytes exact (%d)" % (side, len(ingress_want)), ig == ingress_want and not ig_gaps,
                  "captured %r gaps %s, want %r" % (ig[:300], ig_gaps, ingress_want[:300]))
        cl = closes.get(o["conn"])
        run.check("%s close accounts for every byte" % side,
                  cl is not None and cl["egress"]["bytes"] == len(egress_want) and cl["ingress"]["bytes"] == len(ingress_want)
                  and cl["egress"]["gap"] == 0 and cl["ingress"]["gap"] == 0, "close %s" % cl)
        out[side] = {"egress_syscalls": eg_sys, "ingress_syscalls": ig_sys, "egress_bytes": len(eg), "ingress_bytes": len(ig)}
    if "client" in out:
        want = {"write", "sendto", "writev", "sendmsg"}, {"read", "recvfrom", "readv", "recvmsg"}
        got = set(out["client"]["egress_syscalls"]), set(out["client"]["ingress_syscalls"])
        run.check("all eight data syscalls captured on the client", got == want, "got %s" % (got,))
    return out


def otlp_spans(path):
    """(name, process.pid) of every span in `wirespan agent --output stdout`'s
    OTLP/JSON lines."""
    out = []
    with open(path, "rb") as f:
        for raw in f:
            try:
                d = json.loads(raw)
            except ValueError:
                continue
            for rs in d.get("resourceSpans", []) if isinstance(d, dict) else []:
                attrs = {a["key"]: a.get("value", {}) for a in rs.get("resource", {}).get("attributes", [])}
                pid = attrs.get("process.pid", {}).get("intValue")
                for ss in rs.get("scopeSpans", []):
                    out += [(sp.get("name"), int(pid) if pid is not None else None) for sp in ss.get("spans", [])]
    return out


def agent_spans(run, port):
    """`wirespan agent --output stdout` on the same kernel: the exchange's
    publish and process spans, one each, for the client's pid."""
    out = os.path.join(run.tmp, "agent.jsonl")
    err = os.path.join(run.tmp, "agent.err")
    proc = subprocess.Popen([run.args.wirespan, "agent", "--output", "stdout", "--port", str(port)],
                            stdout=open(out, "wb"), stderr=open(err, "wb"))
    t0 = time.monotonic()
    ready = False
    while time.monotonic() - t0 < LOAD_TIMEOUT and proc.poll() is None and not ready:
        time.sleep(0.1)
        with open(err, "rb") as f:
            ready = re.search(rb"\bready\b", f.read()) is not None
    if not run.check("agent loads and prints ready", ready, "stderr: %s" % open(err, "rb").read()[-1500:]):
        stop(proc)
        return {}
    payload = b"spans from Linux " + platform.release().encode()
    try:
        nats_exchange(port, payload)
    except OSError as e:
        run.check("NATS exchange for the agent", False, str(e))
    want = {("publish " + SUBJECT, os.getpid()), ("process " + SUBJECT, os.getpid())}
    end = time.monotonic() + 30
    while time.monotonic() < end and not want <= set(otlp_spans(out)):
        time.sleep(0.2)
    rc = stop(proc)
    spans = otlp_spans(out)
    mine = sorted(n for n, pid in spans if pid == os.getpid())
    run.check("agent: one publish and one process span for the client", mine == sorted(n for n, _ in want),
              "client spans %s; all %s" % (mine, spans[:20]))
    run.check("agent exits 0 at SIGINT", rc == 0, "rc %s" % rc)
    return {"ready_seconds": round(time.monotonic() - t0, 1), "client_spans": mine, "spans": len(spans)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wirespan", required=True)
    ap.add_argument("--programs", required=True, help="expected program names, one per line")
    ap.add_argument("--out", required=True)
    ap.add_argument("--label", default=platform.release())
    ap.add_argument("--bpftool", default="bpftool")
    ap.add_argument("--nats-server", default="nats-server")
    ap.add_argument("--tmp", default="/tmp/wirespan-kernels")
    ap.add_argument("--headroom", type=float, default=0.8,
                    help="fail when a program's verified_insns exceeds this share of the verifier's limit")
    args = ap.parse_args()
    run = Run(args)
    with open(args.programs) as f:
        run.expected = [l.strip() for l in f if l.strip()]
    t_start = time.monotonic()
    report = {"label": args.label, "kernel": platform.release(), "machine": platform.machine(),
              "cpus": os.cpu_count(), "expected_programs": run.expected}
    print("kernels: %s on Linux %s" % (args.label, platform.release()), flush=True)

    r = subprocess.run([args.wirespan, "doctor", "--no-nats"], capture_output=True, text=True)
    report["doctor"] = r.stdout + r.stderr
    run.check("wirespan doctor --no-nats", r.returncode == 0, report["doctor"][-1500:])

    port = free_port()
    nats = subprocess.Popen([args.nats_server, "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(run.tmp, "nats.log"), "wb"))
    try:
        run.check("nats-server up", wait_port(port, 30))
        # the hash-map variant first: load, measure, unload
        hashmap, procs = load_and_measure(run, port, {"WIRESPAN_NO_TASK_STORAGE": "1"}, "hashmap")
        if procs:
            stop(procs[0])
        report["hashmap"] = hashmap
        run.check("hash-map variant: every program loads and attaches (one of each enter pair)",
                  procs is not None and all_loaded(run.expected, hashmap),
                  hashmap.get("error") or "attached %s of %d, loaded %s" % (hashmap.get("attached"), len(run.expected),
                                                                          sorted(hashmap.get("programs", {}))))
        check_headroom(run, hashmap, "hash-map variant")
        # the default: what the loader picks on this kernel, then traffic
        default, procs = load_and_measure(run, port, {}, "default")
        report["default"] = default
        ok = run.check("default: every program loads and attaches (one of each enter pair)",
                       procs is not None and all_loaded(run.expected, default),
                       default.get("error") or "attached %s of %d, loaded %s" % (default.get("attached"), len(run.expected),
                                                                               sorted(default.get("programs", {}))))
        check_headroom(run, default, "default")
        if ok:
            proc, out, err = procs
            payload = b"hello from Linux " + platform.release().encode() + b" " + os.urandom(8).hex().encode()
            try:
                sent, recvd, msg = nats_exchange(port, payload)
                run.check("NATS exchange completed (MSG came back)", recvd.endswith(msg))
            except OSError as e:
                run.check("NATS exchange completed", False, str(e))
                sent, recvd = b"", b""
            time.sleep(0.5)  # the close records
            rc = stop(proc)
            run.check("capture exits 0 at SIGINT", rc == 0, "rc %s" % rc)
            lines = parse_capture(out)
            metrics = [l for l in lines if l.get("type") == "metrics"]
            with open(err, "rb") as f:
                metrics += [json.loads(l) for l in f.read().decode("utf-8", "replace").splitlines()
                            if l.startswith('{"type":"metrics"')]
            report["capture_metrics"] = metrics[-1] if metrics else None
            report["exchange"] = verify_exchange(run, lines, port, os.getpid(), sent, recvd)
            report["exchange"]["sent"] = sent.decode("latin-1")
            report["exchange"]["received"] = recvd.decode("latin-1")
            k = (metrics[-1] if metrics else {}).get("kernel", {})
            lost = {n: k.get(n, 0) for n in ("rb_full_events", "fault_events", "conn_map_full", "args_map_full", "open_lost", "close_lost")}
            run.check("no kernel-side loss counted", metrics and not any(lost.values()), "kernel %s" % lost)
            report["agent"] = agent_spans(run, port)
    finally:
        nats.terminate()
        nats.wait(10)
    report["checks"] = run.checks
    report["passed"] = all(c["ok"] for c in run.checks) and bool(run.checks)
    report["seconds"] = round(time.monotonic() - t_start, 1)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print("kernels: %s %s (%d checks, %.1f s)" % (args.label, "PASS" if report["passed"] else "FAIL", len(run.checks),
                                                 report["seconds"]), flush=True)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
