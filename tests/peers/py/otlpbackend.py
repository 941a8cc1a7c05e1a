#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""otlpbackend.py: a fake OTLP/HTTP traces backend for the relay tests.

Listens on 127.0.0.1:PORT, takes POST /v1/traces (application/x-protobuf,
optionally Content-Encoding: gzip), decodes the ExportTraceServiceRequest
with the small protobuf wire decoder below (independent of protobuf-c and of
protobufjs) and answers according to a plan, one entry per request, the last
repeated:

  200            accept
  200:partial=N  accept with partial_success.rejected_spans = N
  400            bad request (never to be retried)
  429:ra=S       too many requests, Retry-After: S (seconds)
  503 / 502 / 504  unavailable, no Retry-After
  503:ra=S       unavailable, Retry-After: S

The plan can be replaced while running by writing it to PLAN_FILE.
Every request is appended to LOG as one JSON line: time, status answered,
selected headers, and the decoded spans (trace_id, span_id,
parent_span_id, name, kind, start, end, attributes, status, resource).

  otlpbackend.py --port PORT --log LOG [--plan 503,429:ra=1,200]
                 [--plan-file PLAN_FILE] [--no-decode]

--no-decode (benchmarks): log sizes and statuses only.

Prints {"ready": true, "port": PORT} when listening; stops on SIGTERM.
"""
import argparse
import gzip
import json
import os
import signal
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def varint(b, i):
    x = shift = 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << shift
        if not c & 0x80:
            return x, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def fields(b):
    """(field number, wire type, value) of one message; value is int or bytes."""
    i, out = 0, []
    while i < len(b):
        key, i = varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        elif wt == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
            if i > len(b):
                raise ValueError("length past the end")
        else:
            raise ValueError("wire type %d" % wt)
        out.append((num, wt, v))
    return out


def any_value(b):
    for num, wt, v in fields(b):
        if num == 1:
            return v.decode("utf-8")
        if num == 2:
            return bool(v)
        if num == 3:
            return v - (1 << 64) if v >= 1 << 63 else v
        if num == 4:
            return struct.unpack("<d", v)[0]
        if num == 7:
            return v.hex()
        return "(nested)"
    return None


def attrs(lst):
    out = {}
    for b in lst:
        k, val = None, None
        for num, wt, v in fields(b):
            if num == 1:
                k = v.decode("utf-8")
            elif num == 2:
                val = any_value(v)
        out[k] = val
    return out


def decode_request(body):
    spans = []
    for num, wt, rs in fields(body):
        if num != 1:
            continue
        resource, scope_spans = {}, []
        for n2, _, v2 in fields(rs):
            if n2 == 1:
                resource = attrs([v for n3, _, v in fields(v2) if n3 == 1])
            elif n2 == 2:
                scope_spans.append(v2)
        for ss in scope_spans:
            for n3, _, sp in fields(ss):
                if n3 != 2:
                    continue
                s = {"resource": resource, "attributes": {}, "parent_span_id": "", "kind": 0, "status": 0}
                a = []
                for n4, _, v in fields(sp):
                    if n4 == 1:
                        s["trace_id"] = v.hex()
                    elif n4 == 2:
                        s["span_id"] = v.hex()
                    elif n4 == 4:
                        s["parent_span_id"] = v.hex()
                    elif n4 == 5:
                        s["name"] = v.decode("utf-8")
                    elif n4 == 6:
                        s["kind"] = v
                    elif n4 == 7:
                        s["start"] = str(struct.unpack("<Q", v)[0])
                    elif n4 == 8:
                        s["end"] = str(struct.unpack("<Q", v)[0])
                    elif n4 == 9:
                        a.append(v)
                    elif n4 == 15:
                        for n5, _, v5 in fields(v):
                            if n5 == 3:
                                s["status"] = v5
                s["attributes"] = attrs(a)
                spans.append(s)
    return spans


def encode_partial(n):
    """ExportTraceServiceResponse{partial_success{rejected_spans: n, error_message}}."""
    msg = b"rejected by the fake backend"

    def vi(x):
        out = b""
        while x >= 0x80:
            out += bytes([(x & 0x7F) | 0x80])
            x >>= 7
        return out + bytes([x])

    inner = b"\x08" + vi(n) + b"\x12" + vi(len(msg)) + msg
    return b"\x0a" + vi(len(inner)) + inner


class State:
    def __init__(self, plan, plan_file, log):
        self.plan = plan
        self.plan_file = plan_file
        self.log = log
        self.lock = threading.Lock()
        self.n = 0
        self.no_decode = False

    def next_answer(self):
        if self.plan_file and os.path.exists(self.plan_file):
            with open(self.plan_file) as f:
                text = f.read().strip()
            if text:
                self.plan = text.split(",")
                os.unlink(self.plan_file)
        step = self.plan[0] if self.plan else "200"
        if len(self.plan) > 1:
            self.plan = self.plan[1:]
        code, _, opt = step.partition(":")
        return int(code), opt


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        st = self.server.state
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        rec = {"t": time.time(), "path": self.path,
               "headers": {k.lower(): v for k, v in self.headers.items()
                           if k.lower() in ("content-type", "content-encoding", "lightstep-access-token",
                                            "x-test", "authorization")},
               "bytes": len(body)}
        try:
            if st.no_decode:
                pass
            elif self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if not st.no_decode:
                rec["spans"] = decode_request(body)
        except Exception as e:  # noqa: BLE001 - reported to the test
            rec["decode_error"] = str(e)
        with st.lock:
            code, opt = st.next_answer()
            st.n += 1
        rec["status"] = code
        out = b""
        extra = {}
        if opt.startswith("ra="):
            extra["Retry-After"] = opt[3:]
        if opt.startswith("partial="):
            out = encode_partial(int(opt[8:]))
        if code == 200 and not out:
            out = b""
        if code != 200:
            out = b"fake backend says %d" % code
        with st.lock:
            with open(st.log, "a") as f:
                f.write(json.dumps(rec) + "\n")
        self.send_response(code)
        self.send_header("Content-Type", "application/x-protobuf" if code == 200 else "text/plain")
        self.send_header("Content-Length", str(len(out)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--plan", default="200")
    ap.add_argument("--plan-file", default="")
    ap.add_argument("--no-decode", action="store_true")
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.state = State(a.plan.split(","), a.plan_file, a.log)
    srv.state.no_decode = a.no_decode
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    print(json.dumps({"ready": True, "port": a.port}), flush=True)
    srv.serve_forever()
    print(json.dumps({"ok": True, "requests": srv.state.n}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
