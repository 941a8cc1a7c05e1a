#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A NATS-looking TCP sink for the wirespan flood test.

Listens on HOST:PORT, and for each of --accept connections (one at a time):
sends one INFO line (so the connection looks like NATS from its first byte),
then reads with recv(2) until EOF, counting and hashing every byte, then
closes. Prints "listening" on stderr once bound and one JSON line on stdout at
the end. Bounded by --timeout seconds.
"""

import argparse
import hashlib
import json
import os
import socket
import sys
import time

INFO = (
    b'INFO {"server_id":"WIRESPANSINK","server_name":"wirespan-sink","version":"2.9.10",'
    b'"proto":1,"go":"go1.19","host":"127.0.0.1","port":0,"headers":true,'
    b'"max_payload":1048576}\r\n'
)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--accept", type=int, default=1)
    ap.add_argument("--bufsize", type=int, default=1 << 20)
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()

    fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.host, a.port))
    ls.listen(16)
    ls.settimeout(a.timeout)
    print("listening on %s:%d" % (a.host, a.port), file=sys.stderr, flush=True)
    deadline = time.monotonic() + a.timeout
    rows, errors = [], []
    for _ in range(a.accept):
        try:
            s, peer = ls.accept()
        except OSError as e:
            errors.append("accept: %s" % e)
            break
        s.settimeout(max(1.0, deadline - time.monotonic()))
        row = {"fd": s.fileno(), "raddr": peer[0], "rport": peer[1], "lport": s.getsockname()[1]}
        h = hashlib.sha256()
        got = 0
        calls = 0
        try:
            s.sendall(INFO)
            while True:
                d = s.recv(a.bufsize)
                calls += 1
                if not d:
                    break
                got += len(d)
                h.update(d)
                if time.monotonic() > deadline:
                    raise TimeoutError("sink timeout")
        except OSError as e:
            errors.append("%s: %s" % (type(e).__name__, e))
        finally:
            s.close()
        row.update({"ingress_bytes": got, "ingress_sha256": h.hexdigest(), "egress_bytes": len(INFO), "recv_calls": calls})
        rows.append(row)
    ls.close()
    print(json.dumps({"peer": "natssink", "pid": os.getpid(), "conns": rows, "errors": errors, "ok": not errors}), flush=True)
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
