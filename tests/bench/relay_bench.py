#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Relay benchmark: `wirespan relay` from a loopback nats-server to a
loopback OTLP/HTTP receiver (tests/peers/py/otlpbackend.py --no-decode).

  python3 tests/bench/relay_bench.py [--seconds 10] [--spans 50] [--down 0]
                                     [--stitch]

A raw-socket publisher sends one pre-encoded ExportTraceServiceRequest of
--spans spans (20 attributes each) as fast as the server takes it for
--seconds. Reported: spans/s out of the relay (its relay_metrics) over the
run and per CPU-second of the relay process (utime + stime from /proc), its
peak RSS, and every drop counter. With --down S the receiver answers 503 for
the first S seconds of the run (the relay holds, bounded by
--max-queue-bytes, and drops the oldest, counted), then 200.

--stitch: the relay runs with --stitch (window 1 s) and the payloads are a
pool of distinct ones, by pairs: --spans NATS publish spans (PRODUCER, a
wirespan.message.fingerprint each), then the --spans process spans
(CONSUMER, no parent) of the same fingerprints on other traces, so every
consumer joins (decode, join, rewrite, encode again). Ids repeat only after
the pool (--pool payloads), well past the window. --stitch-payloads sends
that pool without --stitch (the same bytes, for comparing the cost).

--messages N publishes exactly N payloads (instead of --seconds) and waits
until the relay has sent them all (its metrics, asked for with SIGUSR1)
before stopping it; --wrap CMD runs the relay under CMD, e.g. for an
instruction count that does not depend on the machine's load:

  python3 tests/bench/relay_bench.py --stitch --messages 2000 \
      --wrap "valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out"
"""
import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WIRESPAN = ROOT / "build" / "wirespan"
BACKEND = ROOT / "tests" / "peers" / "py" / "otlpbackend.py"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vi(x):
    out = b""
    while x >= 0x80:
        out += bytes([(x & 0x7F) | 0x80])
        x >>= 7
    return out + bytes([x])


def ld(num, b):
    return vi(num << 3 | 2) + vi(len(b)) + b


def kv(k, v):
    return ld(1, k.encode()) + ld(2, ld(1, v.encode()))


def request(n):
    spans = b""
    for i in range(n):
        s = ld(1, bytes(range(16))) + ld(2, struct.pack(">Q", i + 1)) + ld(5, b"publish orders.created")
        s += vi(6 << 3) + vi(4) + vi(7 << 3 | 1) + struct.pack("<Q", 1700000000000000000 + i)
        s += vi(8 << 3 | 1) + struct.pack("<Q", 1700000000000100000 + i)
        for a in range(20):
            s += ld(9, kv("attr.%d" % a, "value-%d-%d" % (a, i)))
        spans += ld(2, s)
    scope = ld(1, ld(1, b"bench"))
    rs = ld(1, ld(1, kv("service.name", "bench"))) + ld(2, scope + spans)
    return ld(1, rs)


def stitch_request(n, k, consumer):
    """Payload k of the stitch pool: spans of pair k//2, producers (even k)
    or their consumers (odd k)."""
    pair = k // 2
    spans = b""
    for i in range(n):
        tid = struct.pack(">QQ", pair + 1, (i + 1) * 2 + consumer)
        sid = struct.pack(">II", pair + 1, (i + 1) * 2 + consumer)
        kind = 5 if consumer else 4
        name = b"process orders.created" if consumer else b"publish orders.created"
        s = ld(1, tid) + ld(2, sid) + ld(5, name)
        s += vi(6 << 3) + vi(kind) + vi(7 << 3 | 1) + struct.pack("<Q", 1700000000000000000 + pair * 1000 + i)
        s += vi(8 << 3 | 1) + struct.pack("<Q", 1700000000000100000 + pair * 1000 + i)
        s += ld(9, kv("wirespan.message.fingerprint", "%08x%08x" % (pair, i)))
        for a in range(8):
            s += ld(9, kv("attr.%d" % a, "value-%d-%d" % (a, i)))
        spans += ld(2, s)
    scope = ld(1, ld(1, b"bench"))
    rs = ld(1, ld(1, kv("service.name", "bench"))) + ld(2, scope + spans)
    return ld(1, rs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--spans", type=int, default=50)
    ap.add_argument("--down", type=float, default=0)
    ap.add_argument("--max-queue-bytes", default="67108864")
    ap.add_argument("--stitch", action="store_true")
    ap.add_argument("--pool", type=int, default=4000)
    ap.add_argument("--stitch-payloads", action="store_true")
    ap.add_argument("--messages", type=int, default=0)
    ap.add_argument("--wrap", default="")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wirespan-relay-bench-"))
    procs = []
    try:
        nport, hport = free_port(), free_port()
        procs.append(subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(nport)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        plan = "503" if a.down else "200"
        procs.append(subprocess.Popen([sys.executable, BACKEND, "--port", str(hport), "--log", tmp / "be.jsonl",
                                       "--plan", plan, "--plan-file", tmp / "plan", "--no-decode"],
                                      stdout=subprocess.DEVNULL))
        time.sleep(0.5)
        err = open(tmp / "relay.err", "w")
        relay = subprocess.Popen(shlex.split(a.wrap) + [WIRESPAN, "relay", "--nats-url", "nats://127.0.0.1:%d" % nport,
                                  "-e", "http://127.0.0.1:%d" % hport, "--max-queue-bytes", a.max_queue_bytes,
                                  "--backoff", "200", "--backoff-max", "1000"]
                                 + (["--stitch", "--stitch-window", "1000"] if a.stitch else []), stderr=err)
        procs.append(relay)
        while "ready" not in (tmp / "relay.err").read_text():
            time.sleep(0.05)
        pool = a.stitch or a.stitch_payloads
        if pool:
            bodies = [stitch_request(a.spans, k, k % 2) for k in range(a.pool)]
        else:
            bodies = [request(a.spans)]
        frames = [b"PUB otel.traces.nats.bench %d\r\n" % len(b) + b + b"\r\n" for b in bodies]
        chunks = [b"".join(frames[(j + i) % len(frames)] for i in range(100)) for j in range(0, len(frames), 100)]
        body = bodies[0]
        s = socket.create_connection(("127.0.0.1", nport))
        s.recv(4096)
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
        sent = 0
        t0 = time.monotonic()
        up = not a.down
        while (sent < a.messages) if a.messages else (time.monotonic() - t0 < a.seconds):
            n = min(100, a.messages - sent) if a.messages else 100
            chunk = chunks[(sent // 100) % len(chunks)]
            if n < 100:
                chunk = b"".join(frames[(sent + i) % len(frames)] for i in range(n))
            s.sendall(chunk + b"PING\r\n")
            sent += n
            while b"PONG" not in s.recv(4096):
                pass
            if not up and time.monotonic() - t0 >= a.down:
                (tmp / "plan.tmp").write_text("200")
                (tmp / "plan.tmp").rename(tmp / "plan")
                up = True
        t_pub = time.monotonic() - t0
        s.close()
        if a.messages:
            # until every payload went out (the stitcher and the queue empty)
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and relay.poll() is None:
                relay.send_signal(signal.SIGUSR1)
                time.sleep(0.5)
                lines = [l for l in (tmp / "relay.err").read_text().splitlines() if '"relay_metrics"' in l]
                if not lines:
                    continue
                m = json.loads(lines[-1])
                done = m["messages_in"] + m["dropped_messages"]["bad_message"] >= sent or m["nats"]["dropped"]
                if done and not m["queued_messages"] and not (m.get("stitch") or {}).get("held_messages"):
                    break
        # what is queued drains (--drain-timeout 5) before the relay exits
        relay.send_signal(signal.SIGINT)
        _, status, ru = os.wait4(relay.pid, 0)
        relay.returncode = os.waitstatus_to_exitcode(status)
        t_all = time.monotonic() - t0
        m = [json.loads(l) for l in (tmp / "relay.err").read_text().splitlines() if '"relay_metrics"' in l][-1]
        cpu = ru.ru_utime + ru.ru_stime
        print(json.dumps({
            "spans_per_message": a.spans, "payload_bytes": len(body), "messages_sent": sent,
            "spans_sent": sent * a.spans, "publish_seconds": round(t_pub, 2), "seconds_to_drained": round(t_all, 2),
            "spans_out": m["spans_out"], "spans_out_per_s": round(m["spans_out"] / t_all),
            "relay_cpu_s": round(cpu, 2), "spans_per_cpu_s": round(m["spans_out"] / cpu) if cpu else None,
            "relay_peak_rss_kib": ru.ru_maxrss,
            "batches_out": m["batches_out"], "posts": m["posts"], "retries": m["retries"],
            "messages_in": m["messages_in"], "dropped_messages": m["dropped_messages"],
            "dropped_spans": m["dropped_spans"], "nats": m["nats"],
            "peak_queued_bytes": m["peak_queued_bytes"], "latency_us_avg": m["latency_us_avg"],
            "stitch": m.get("stitch"),
        }, indent=1))
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
