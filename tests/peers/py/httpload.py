#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""HTTP/1.1 load client with per-request ground truth, for the wirespan
gateway tests.

Sends N requests over C keep-alive connections (asyncio, one request in
flight per connection) to http://HOST:PORT/PATH. Every request carries
`X-Test-Seq: <run>-<i>` (unique), so a test can tell which inbound and
upstream spans belong together without the agent using it. Options add,
per request:
  --traceparent unique  a fresh W3C traceparent
  --traceparent fixed   one traceparent for every request
  --auth jwt            Authorization: Bearer <unsigned JWT, sub=user-<i%7>>
  --auth apikey         X-API-Key: key-<i%5>-<run>
  --auth basic          Authorization: Basic base64(user-<i%3>:pw-<run>)
  --auth mixed          the three above in turn
  --request-id          X-Request-Id: rid-<run>-<i>
  --distinct-ips        connection k comes from 127.0.<k/250+1>.<k%250+2>
                        (clients on many addresses, as a gateway sees them)

Prints one JSON line at the end: {"peer": "httpload", "sent": N,
"ok": n_2xx, "statuses": {...}, "requests": [{"seq", "traceparent",
"auth", "sub"}...]} (the request list only with --record).
"""

import argparse
import asyncio
import base64
import json
import os
import secrets
import sys


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt_for(sub, run):
    hdr = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"sub": sub, "iss": "https://idp.test", "scope": "read write", "run": run}).encode())
    return "%s.%s.%s" % (hdr, claims, b64url(secrets.token_bytes(32)))


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    hdrs = {}
    for ln in lines[1:]:
        if ":" in ln:
            k, v = ln.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    if hdrs.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif "content-length" in hdrs:
        await reader.readexactly(int(hdrs["content-length"]))
    return status


async def worker(a, k, queue, results, fixed_tp):
    local = ("127.0.%d.%d" % (k // 250 + 1, k % 250 + 2), 0) if a.distinct_ips else None
    reader, writer = await asyncio.open_connection(a.host, a.port, local_addr=local)
    try:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            rec = {"seq": "%s-%d" % (a.run, i)}
            h = ["GET %s HTTP/1.1" % a.path, "Host: %s:%d" % (a.host, a.port), "User-Agent: httpload/1", "X-Test-Seq: " + rec["seq"]]
            if a.traceparent == "unique":
                rec["traceparent"] = "00-%s-%s-01" % (secrets.token_hex(16), secrets.token_hex(8))
            elif a.traceparent == "fixed":
                rec["traceparent"] = fixed_tp
            if "traceparent" in rec:
                h.append("traceparent: " + rec["traceparent"])
            kind = a.auth if a.auth != "mixed" else ("jwt", "apikey", "basic")[i % 3]
            if kind == "jwt":
                rec["auth"], rec["sub"] = "jwt", "user-%d" % (i % 7)
                h.append("Authorization: Bearer " + jwt_for(rec["sub"], a.run))
            elif kind == "apikey":
                rec["auth"], rec["key"] = "apikey", "key-%d-%s" % (i % 5, a.run)
                h.append("X-API-Key: " + rec["key"])
            elif kind == "basic":
                rec["auth"], rec["sub"] = "basic", "user-%d" % (i % 3)
                h.append("Authorization: Basic " + base64.b64encode(("%s:pw-%s" % (rec["sub"], a.run)).encode()).decode())
            if a.request_id:
                h.append("X-Request-Id: rid-%s-%d" % (a.run, i))
            writer.write(("\r\n".join(h) + "\r\n\r\n").encode())
            await writer.drain()
            rec["status"] = await read_response(reader)
            results.append(rec)
    finally:
        writer.close()


async def run(a):
    queue = asyncio.Queue()
    for i in range(a.n):
        queue.put_nowait(i)
    results = []
    fixed_tp = "00-%s-%s-01" % (secrets.token_hex(16), secrets.token_hex(8))
    await asyncio.gather(*(worker(a, k, queue, results, fixed_tp) for k in range(a.c)))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/text/10")
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("-c", type=int, default=8)
    ap.add_argument("--run", default=secrets.token_hex(3))
    ap.add_argument("--traceparent", choices=("none", "unique", "fixed"), default="none")
    ap.add_argument("--auth", choices=("none", "jwt", "apikey", "basic", "mixed"), default="none")
    ap.add_argument("--request-id", action="store_true")
    ap.add_argument("--distinct-ips", action="store_true")
    ap.add_argument("--record", action="store_true")
    a = ap.parse_args()
    results = asyncio.run(run(a))
    statuses = {}
    for r in results:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    out = {"peer": "httpload", "pid": os.getpid(), "sent": len(results), "ok": sum(1 for r in results if 200 <= r["status"] < 300),
           "statuses": statuses}
    if a.record:
        out["requests"] = results
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
