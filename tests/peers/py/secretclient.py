#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A workload that carries secrets through every path wirespan watches,
for tests/integration/test_secrets.py.

Its own command line holds secrets too (the test passes --password=...,
-H 'Authorization: ...', nats://user:pass@ and nats://token@ URLs), so the
agent's process.command_line is part of the corpus. The other secrets come
from --secrets FILE (JSON), which the agent never reads.

  NATS: CONNECT with user/pass to --nats-user, CONNECT with auth_token to
        --nats-other (raw sockets), then SUB, PUB, PING on each;
  HTTP: raw-socket requests to --http HOST:PORT (a gateway) with
        Authorization Bearer JWT, Basic, X-API-Key, Cookie, secret query
        parameters, a JWT in the path, and one request whose secrets are
        split across separate send(2) calls.
Then it lingers (--linger seconds) so the agent can still read its
/proc/<pid>/cmdline, and prints one JSON line.
"""

import argparse
import base64
import json
import socket
import sys
import time
import urllib.parse


def recv_until(s, pred, limit=1 << 20):
    buf = b""
    while not pred(buf) and len(buf) < limit:
        b = s.recv(65536)
        if not b:
            break
        buf += b
    return buf


def nats_session(url, connect, subject):
    u = urllib.parse.urlsplit(url)
    s = socket.create_connection((u.hostname, u.port), timeout=5)
    info = recv_until(s, lambda b: b"\r\n" in b)
    if not info.startswith(b"INFO "):
        raise SystemExit("no INFO from %s: %r" % (u.hostname, info[:80]))
    connect.update({"verbose": False, "pedantic": False, "name": "secretclient", "lang": "python", "version": "1.0"})
    s.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
    r = recv_until(s, lambda b: b"PONG\r\n" in b or b"-ERR" in b)
    if b"PONG" not in r:
        raise SystemExit("CONNECT refused by %s: %r" % (u.port, r[:120]))
    s.sendall(b"SUB %s 1\r\nPUB %s 5\r\nhello\r\nPING\r\n" % (subject.encode(), subject.encode()))
    r = recv_until(s, lambda b: b"MSG " in b and b"PONG\r\n" in b)
    if b"MSG " not in r:
        raise SystemExit("no MSG back on %s: %r" % (subject, r[:120]))
    s.close()


def http_request(addr, pieces):
    """Send the request in these pieces (one send(2) each), read to EOF."""
    s = socket.create_connection(addr, timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i, p in enumerate(pieces):
        if i:
            time.sleep(0.05)
        s.sendall(p)
    r = recv_until(s, lambda b: False)
    s.close()
    status = r.split(b"\r\n", 1)[0]
    if not status.startswith(b"HTTP/1.1 "):
        raise SystemExit("bad response: %r" % r[:120])
    return int(status.split()[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nats-user", required=True)
    ap.add_argument("--nats-other", required=True)
    ap.add_argument("--http", required=True)
    ap.add_argument("--secrets", required=True)
    ap.add_argument("--linger", type=float, default=2.0)
    # secrets on the command line only (the agent must hide them)
    ap.add_argument("--password")
    ap.add_argument("-H", action="append", default=[])
    a = ap.parse_args()
    sec = json.load(open(a.secrets))
    u = urllib.parse.urlsplit(a.nats_user)
    nats_session(a.nats_user, {"user": u.username, "pass": u.password}, "secrets.user")
    t = urllib.parse.urlsplit(a.nats_other)
    nats_session(a.nats_other, {"auth_token": t.username}, "secrets.token")

    host, port = a.http.rsplit(":", 1)
    addr = (host, int(port))
    head = "Host: %s\r\nX-Canary: %s\r\nConnection: close\r\n" % (a.http, sec["canary"])
    basic = base64.b64encode(("%s:%s" % (sec["basic_user"], sec["basic_pass"])).encode()).decode()
    statuses = []
    reqs = [
        "GET /text/10?access_token=%s&password=%s&page=1 HTTP/1.1\r\n%sAuthorization: Bearer %s\r\n\r\n" %
        (sec["q_token"], sec["q_pass"], head, sec["jwt"]),
        "GET /text/10 HTTP/1.1\r\n%sAuthorization: Basic %s\r\n\r\n" % (head, basic),
        "GET /text/10 HTTP/1.1\r\n%sX-API-Key: %s\r\nCookie: sid=%s\r\nX-Auth-Token: %s\r\n\r\n" %
        (head, sec["api_key"], sec["cookie"], sec["auth_token_hdr"]),
        "GET /verify/%s HTTP/1.1\r\n%s\r\n" % (sec["path_jwt"], head),
    ]
    for r in reqs:
        statuses.append(http_request(addr, [r.encode()]))
    # secrets cut in the middle by separate writes
    sp, bo = sec["split_q"], sec["split_bearer"]
    statuses.append(http_request(addr, [
        ("GET /text/10?api_key=%s" % sp[:11]).encode(),
        ("%s HTTP/1.1\r\n%sAuthorization: Bearer %s" % (sp[11:], head, bo[:9])).encode(),
        ("%s\r\n\r\n" % bo[9:]).encode(),
    ]))
    time.sleep(a.linger)
    print(json.dumps({"statuses": statuses, "argv_secrets": len(a.H) + (a.password is not None)}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
