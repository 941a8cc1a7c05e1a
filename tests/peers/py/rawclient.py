#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Raw-socket NATS test peer for the wirespan integration tests.

Speaks the NATS client protocol by hand on plain TCP sockets and records
EXACTLY every byte it sent and received on every connection, so a test can
compare wirespan's capture byte for byte.

CPython's socket.send()/sendall() and socket.recv() on a connected TCP socket
are the sendto(2) and recvfrom(2) system calls (glibc implements send/recv
with them); `strace -f -e trace=network,write,read` shows nothing else on the
socket. The peer never uses makefile(), so no read(2)/write(2) touch a socket.

Modes (each connection is one NATS session on its own subject SUBJECT.<i>):
  default       --conns N connections at once (threads; all are connected
                before any publishes and all finish before any closes);
  --reuse N     N connections one after the other, each closed before the next
                opens, so every one gets the same fd number;
  --flood BYTES one connection (to any NATS-looking sink) that writes
                "PUB flood 4096\\r\\n"+payload+"\\r\\n" frames as fast as it can
                until BYTES were sent (with --linger-file: then one marker
                frame, then waits for the file), then shuts down its write
                side and reads until EOF.

A session: read INFO, send CONNECT + PING, read PONG; [hold]; SUB, COUNT PUBs
of SIZE bytes, PING; read until COUNT MSGs and the PONG arrived; close.
Payload byte j of message k is (k*131 + j) & 0xff, as in every peer.

Prints one JSON line on stdout at the end; --dump-prefix P writes
P.<i>.egress and P.<i>.ingress with the exact bytes of connection i.
"""

import argparse
import hashlib
import json
import os
import resource
import socket
import sys
import threading
import time
import urllib.parse

CRLF = b"\r\n"


def payload(k, size):
    start = (k * 131) & 0xFF
    # bytes((start + j) & 0xff for j in range(size)), but fast for 1 MiB
    cycle = bytes((start + j) & 0xFF for j in range(256))
    reps = size // 256 + 1
    return (cycle * reps)[:size]


class PeerError(Exception):
    pass


class Conn:
    """One TCP connection whose every sent and received byte is recorded."""

    def __init__(self, idx, host, port, family, timeout):
        self.idx = idx
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.fd = self.sock.fileno()
        la = self.sock.getsockname()
        ra = self.sock.getpeername()
        self.family = "ipv6" if family == socket.AF_INET6 else "ipv4"
        self.laddr, self.lport = la[0], la[1]
        self.raddr, self.rport = ra[0], ra[1]
        self.sent = bytearray()
        self.recvd = bytearray()
        self.rbuf = bytearray()  # received, not yet parsed
        self.send_calls = 0
        self.recv_calls = 0
        self.hold_egress_offset = None
        self.hold_ingress_offset = None
        self.eof = False

    def send(self, data, record=True):
        view = memoryview(data)
        total = 0
        while total < len(view):
            n = self.sock.send(view[total:])  # sendto(2)
            self.send_calls += 1
            if record:
                self.sent += view[total : total + n]
            total += n
        return total

    def recv_some(self, bufsize=65536):
        data = self.sock.recv(bufsize)  # recvfrom(2)
        self.recv_calls += 1
        if not data:
            self.eof = True
            return 0
        self.recvd += data
        self.rbuf += data
        return len(data)

    def read_frame(self, deadline):
        """Return the next server frame as (op, args, payload)."""
        while True:
            fr = parse_frame(self.rbuf)
            if fr is not None:
                op, args, pl, used = fr
                del self.rbuf[:used]
                return op, args, pl
            if time.monotonic() > deadline:
                raise PeerError("conn %d: timeout waiting for a frame" % self.idx)
            if self.recv_some() == 0:
                raise PeerError("conn %d: server closed the connection" % self.idx)

    def close(self):
        self.sock.close()

    def summary(self):
        return {
            "i": self.idx,
            "fd": self.fd,
            "family": self.family,
            "laddr": self.laddr,
            "lport": self.lport,
            "raddr": self.raddr,
            "rport": self.rport,
            "egress_bytes": len(self.sent),
            "ingress_bytes": len(self.recvd),
            "egress_sha256": hashlib.sha256(self.sent).hexdigest(),
            "ingress_sha256": hashlib.sha256(self.recvd).hexdigest(),
            "send_calls": self.send_calls,
            "recv_calls": self.recv_calls,
            "hold_egress_offset": self.hold_egress_offset,
            "hold_ingress_offset": self.hold_ingress_offset,
        }


def parse_frame(buf):
    """Parse one server->client frame from the start of buf.

    Returns (op, args, payload, bytes_used) or None if buf holds no full frame.
    """
    end = buf.find(CRLF)
    if end < 0:
        return None
    line = bytes(buf[:end])
    parts = line.split()
    if not parts:
        return ("", [], b"", end + 2)
    op = parts[0].upper().decode("latin-1")
    args = [p.decode("latin-1") for p in parts[1:]]
    if op == "MSG":
        n = int(args[-1])
    elif op == "HMSG":
        n = int(args[-1])
    else:
        return (op, args, b"", end + 2)
    need = end + 2 + n + 2
    if len(buf) < need:
        return None
    pl = bytes(buf[end + 2 : end + 2 + n])
    if buf[end + 2 + n : need] != CRLF:
        raise PeerError("payload of %s not followed by CRLF" % op)
    return (op, args, pl, need)


CONNECT = (
    b'CONNECT {"verbose":false,"pedantic":false,"tls_required":false,'
    b'"name":"wirespan-peer-pyraw","lang":"python-raw","version":"1.0.0",'
    b'"protocol":1,"echo":true,"headers":true,"no_responders":true}\r\n'
)


MARKER = b"PUB flood.marker 19\r\nwirespan-flood-done\r\n"


def handshake(c, deadline):
    op, args, _ = c.read_frame(deadline)
    if op != "INFO":
        raise PeerError("conn %d: expected INFO, got %r" % (c.idx, op))
    c.send(CONNECT + b"PING\r\n")
    wait_pong(c, deadline)


def wait_pong(c, deadline, on_msg=None):
    while True:
        op, args, pl = c.read_frame(deadline)
        if op == "PONG":
            return
        if op == "PING":
            c.send(b"PONG\r\n")
        elif op in ("MSG", "HMSG"):
            if on_msg is None:
                raise PeerError("conn %d: unexpected %s" % (c.idx, op))
            on_msg(op, args, pl)
        elif op == "-ERR":
            raise PeerError("conn %d: server error %s" % (c.idx, " ".join(args)))
        elif op in ("INFO", "+OK"):
            pass
        else:
            raise PeerError("conn %d: unexpected frame %r" % (c.idx, op))


def session(c, subject, count, size, deadline):
    """SUB, COUNT PUBs, PING; read COUNT MSGs and the PONG."""
    ph = hashlib.sha256()
    rh = hashlib.sha256()
    out = bytearray(b"SUB %s 1\r\n" % subject.encode())
    for k in range(count):
        p = payload(k, size)
        ph.update(p)
        out += b"PUB %s %d\r\n" % (subject.encode(), size)
        out += p
        out += CRLF
        if len(out) >= 256 * 1024:
            c.send(out)
            out = bytearray()
    out += b"PING\r\n"
    c.send(out)
    got = []

    def on_msg(op, args, pl):
        if op != "MSG" or args[0] != subject or args[1] != "1":
            raise PeerError("conn %d: unexpected %s %s" % (c.idx, op, args))
        got.append(pl)

    wait_pong(c, deadline, on_msg)
    # Messages precede the PONG in nats-server's outbound order; keep reading
    # (bounded by the deadline) if some are still missing.
    while len(got) < count:
        op, args, pl = c.read_frame(deadline)
        if op in ("MSG", "HMSG"):
            on_msg(op, args, pl)
        elif op == "PING":
            c.send(b"PONG\r\n")
    match = all(got[k] == payload(k, size) for k in range(count)) and len(got) == count
    for pl in got:
        rh.update(pl)
    return {
        "subject": subject,
        "published": count,
        "received": len(got),
        "pub_sha256": ph.hexdigest(),
        "recv_sha256": rh.hexdigest(),
        "match": match,
    }


def resolve(url):
    u = urllib.parse.urlsplit(url if "://" in url else "nats://" + url)
    host = u.hostname or "127.0.0.1"
    port = u.port or 4222
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return host, port, family


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    if hard == resource.RLIM_INFINITY or hard >= want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))  # needs root


def wait_file(path, timeout):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise PeerError("hold file %s did not appear within %ss" % (path, timeout))
        time.sleep(0.02)


def run_concurrent(a, host, port, family):
    n = a.conns
    raise_nofile(n + 16)
    threading.stack_size(256 * 1024)
    conns = [None] * n
    results = [None] * n
    errors = []
    deadline = time.monotonic() + a.timeout
    connected = threading.Barrier(n + 1, timeout=a.timeout)
    release = threading.Event()
    finished = threading.Barrier(n, timeout=a.timeout)

    def worker(i):
        try:
            c = Conn(i, host, port, family, a.timeout)
            conns[i] = c
            handshake(c, deadline)
            connected.wait()
            if not release.wait(a.hold_timeout + a.timeout):
                raise PeerError("never released")
            c.hold_egress_offset = len(c.sent)
            c.hold_ingress_offset = len(c.recvd)
            results[i] = session(c, "%s.%d" % (a.subject, i), a.count, a.size, deadline + a.hold_timeout)
            finished.wait()
        except Exception as e:  # noqa: BLE001 - reported in the JSON
            errors.append("conn %d: %s: %s" % (i, type(e).__name__, e))
            connected.abort()
            finished.abort()
            release.set()
        finally:
            if conns[i] is not None:
                conns[i].close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    try:
        connected.wait()
        if a.hold_file:
            print("connected %d; holding until %s exists" % (n, a.hold_file), file=sys.stderr, flush=True)
            wait_file(a.hold_file, a.hold_timeout)
    except threading.BrokenBarrierError:
        pass
    except PeerError as e:
        errors.append(str(e))
    release.set()
    for t in threads:
        t.join(a.timeout + a.hold_timeout + 5)
    return conns, results, errors


def run_reuse(a, host, port, family):
    conns, results, errors = [], [], []
    deadline = time.monotonic() + a.timeout
    for i in range(a.reuse):
        c = None
        try:
            c = Conn(i, host, port, family, a.timeout)
            conns.append(c)
            handshake(c, deadline)
            c.hold_egress_offset = len(c.sent)
            c.hold_ingress_offset = len(c.recvd)
            results.append(session(c, "%s.%d" % (a.subject, i), a.count, a.size, deadline))
        except Exception as e:  # noqa: BLE001
            errors.append("conn %d: %s: %s" % (i, type(e).__name__, e))
            results.append(None)
        finally:
            if c is not None:
                c.close()
        if a.reuse_gap > 0:
            time.sleep(a.reuse_gap)
    return conns, results, errors


def run_flood(a, host, port, family):
    """Write NATS-looking frames as fast as possible until a.flood bytes."""
    deadline = time.monotonic() + a.timeout
    c = Conn(0, host, port, family, a.timeout)
    errors = []
    res = {"frames": 0, "flood_seconds": 0.0}
    try:
        op, _, _ = c.read_frame(deadline)
        if op != "INFO":
            raise PeerError("expected INFO, got %r" % op)
        c.send(CONNECT)
        frame = b"PUB flood 4096\r\n" + payload(0, 4096) + CRLF
        per_chunk = max(1, a.flood_chunk // len(frame))
        chunk = frame * per_chunk
        sent = 0
        hasher = hashlib.sha256(bytes(c.sent))
        t0 = time.monotonic()
        stop_at = t0 + a.flood_seconds
        while sent < a.flood and time.monotonic() < stop_at:
            n = c.send(chunk, record=False)  # 200 MB is not kept in memory
            hasher.update(chunk)
            sent += n
            res["frames"] += per_chunk
        res["flood_seconds"] = round(time.monotonic() - t0, 3)
        res["flood_bytes"] = sent
        if a.linger_file:
            # one small frame after the flood, then keep the connection open
            # until the test says so (it looks for the frame meanwhile)
            time.sleep(0.2)
            c.send(MARKER, record=False)
            hasher.update(MARKER)
            sent += len(MARKER)
            print("flood done; lingering until %s exists" % a.linger_file, file=sys.stderr, flush=True)
            wait_file(a.linger_file, a.hold_timeout)
        c.sock.shutdown(socket.SHUT_WR)
        while c.recv_some() > 0:
            if time.monotonic() > deadline:
                raise PeerError("timeout waiting for EOF from the sink")
        s = c.summary()
        s["egress_bytes"] = len(c.sent) + sent
        s["egress_sha256"] = hasher.hexdigest()
        res.update(s)
    except Exception as e:  # noqa: BLE001
        errors.append("%s: %s" % (type(e).__name__, e))
    finally:
        c.close()
    return res, errors


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", nargs="?", default=None)
    ap.add_argument("--url", dest="url_opt", default="nats://127.0.0.1:4222")
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--subject", default="wirespan.raw")
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--reuse", type=int, default=0, help="sequential connections reusing one fd number")
    ap.add_argument("--reuse-gap", type=float, default=0.0, help="seconds between --reuse connections")
    ap.add_argument("--hold-file", default="")
    ap.add_argument("--hold-timeout", type=float, default=60.0)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--dump-prefix", default="")
    ap.add_argument("--flood", type=int, default=0, help="flood mode: bytes of PUB frames to write")
    ap.add_argument("--flood-chunk", type=int, default=256 * 1024)
    ap.add_argument("--flood-seconds", type=float, default=60.0)
    ap.add_argument("--linger-file", default="", help="flood mode: after the flood send one marker frame, then wait for this file before closing")
    a = ap.parse_args()
    url = a.url or a.url_opt
    host, port, family = resolve(url)
    out = {"peer": "pyraw", "pid": os.getpid(), "url": url}

    if a.flood:
        res, errors = run_flood(a, host, port, family)
        out.update({"mode": "flood", "conn": res, "errors": errors, "ok": not errors})
        print(json.dumps(out), flush=True)
        return 0 if not errors else 1

    if a.reuse:
        conns, results, errors = run_reuse(a, host, port, family)
        out["mode"] = "reuse"
    else:
        conns, results, errors = run_concurrent(a, host, port, family)
        out["mode"] = "concurrent"

    rows = []
    for c, r in zip(conns, results):
        if c is None:
            continue
        row = c.summary()
        if r is not None:
            row.update(r)
        if a.dump_prefix:
            for d, buf in (("egress", c.sent), ("ingress", c.recvd)):
                path = "%s.%d.%s" % (a.dump_prefix, c.idx, d)
                with open(path, "wb") as f:
                    f.write(buf)
                row[d + "_dump"] = path
        rows.append(row)
    ok = not errors and len(rows) == (a.reuse or a.conns) and all(r is not None and r["match"] for r in results)
    out.update(
        {
            "count": a.count,
            "size": a.size,
            "conns": rows,
            "errors": errors[:20],
            "error_count": len(errors),
            "ok": ok,
        }
    )
    print(json.dumps(out), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
