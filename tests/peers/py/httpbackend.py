#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Deterministic HTTP/1.1 backend for the wirespan gateway-path tests.

Serves on HOST:PORT (loopback) with http.server (reads are recv(2) through
socket.makefile, writes are send(2) via sendall):
  GET  /bytes/N   -> 200, N bytes, byte j = (j*131 + 7) & 0xff
  GET  /text/N    -> 200, N bytes of "wirespan-" repeated (printable)
  GET  /chunked/N -> 200, the /text/N body sent chunked (chunks of <= 100)
  POST /echo      -> 200, the request body
  anything else   -> 404 with a short text body
Responses carry Content-Length, so connections can be kept alive.

Prints "listening on HOST:PORT" on stderr once bound. On SIGTERM/SIGINT (or
after --timeout seconds) it stops and prints one JSON line on stdout listing
the requests it served (method, path, status, body length and sha256).
"""

import argparse
import hashlib
import http.server
import json
import os
import signal
import socket
import sys
import threading


def binary_body(n):
    cycle = bytes(((j * 131) + 7) & 0xFF for j in range(256))
    return (cycle * (n // 256 + 1))[:n]


def text_body(n):
    unit = b"wirespan-"
    return (unit * (n // len(unit) + 1))[:n]


MAX_BODY = 64 << 20


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wirespan-backend/1"
    # head and body are two send(2)s: without TCP_NODELAY the body waits
    # for the peer's delayed ACK (40 ms per request on loopback)
    disable_nagle_algorithm = True
    sys_version = ""

    def log_message(self, fmt, *args):  # keep stderr quiet
        pass

    def _reply(self, status, body, ctype="application/octet-stream"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        with self.server.lock:
            self.server.served.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "status": status,
                    "client_port": self.client_address[1],
                    "body_len": len(body),
                    "body_sha256": hashlib.sha256(body).hexdigest(),
                }
            )

    def _chunked(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(0, len(body), 100):
            part = body[i : i + 100]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.write(b"0\r\n\r\n")
        with self.server.lock:
            self.server.served.append({"method": self.command, "path": self.path, "status": 200, "client_port": self.client_address[1],
                                       "body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest()})

    def do_GET(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) == 2 and parts[0] == "chunked" and parts[1].isdigit() and int(parts[1]) <= MAX_BODY:
            return self._chunked(text_body(int(parts[1])))
        if len(parts) == 2 and parts[0] in ("bytes", "text") and parts[1].isdigit():
            n = int(parts[1])
            if n > MAX_BODY:
                return self._reply(413, b"too large\n", "text/plain")
            if parts[0] == "bytes":
                return self._reply(200, binary_body(n))
            return self._reply(200, text_body(n), "text/plain")
        return self._reply(404, b"not found\n", "text/plain")

    do_HEAD = do_GET

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n) if n > 0 else b""
        if self.path.split("?")[0] == "/echo":
            return self._reply(200, body)
        return self._reply(404, b"not found\n", "text/plain")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog (5) drops the SYNs of a gateway that
    # opens 64 upstream connections at once: 1 s retransmits
    request_queue_size = 256


class Server6(Server):
    address_family = socket.AF_INET6


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=300.0, help="stop by itself after this many seconds")
    a = ap.parse_args()
    cls = Server6 if ":" in a.host else Server
    srv = cls((a.host, a.port), Handler)
    srv.served = []
    srv.lock = threading.Lock()
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    print("listening on %s:%d" % (a.host, srv.server_address[1]), file=sys.stderr, flush=True)
    stop.wait(a.timeout)
    srv.shutdown()
    srv.server_close()
    with srv.lock:
        served = list(srv.served)
    print(json.dumps({"peer": "httpbackend", "pid": os.getpid(), "port": a.port, "served": served}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
