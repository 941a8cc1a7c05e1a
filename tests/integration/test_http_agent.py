# SPDX-License-Identifier: Apache-2.0
"""Integration tests of the HTTP spans of `wirespan agent` (root only).

Each test starts a Python backend (tests/peers/py/httpbackend.py), a real
gateway in front of it on loopback (caddy reverse_proxy, the Go gateway
standing in for Tyk; nginx proxy_pass, the event-loop one), the agent
filtered to the two ports, and real clients: curl, hey, wrk and
tests/peers/py/httpload.py, which tags every request with a unique
X-Test-Seq header. The agent records that header (--capture-header) on
both hops, which gives the ground truth the parent of each upstream span is
checked against; the agent itself never uses it to link.
"""

import base64
import collections
import hmac
import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import time

from harness import (
    CURL,
    HTTP_BACKEND,
    PEERS_SRC,
    PYTHON,
    Agent,
    Env,
    TestFailure,
    check,
    free_port,
    log,
    metric,
    stop_process,
    wait_port,
)
from test_capture import start_caddy, start_nginx

SERVER, CLIENT = 2, 3
SEQ = "http.request.header.x-test-seq"
HTTPLOAD = PEERS_SRC / "py" / "httpload.py"
HEY = "/usr/bin/hey"
WRK = "/usr/bin/wrk"


class Gateway:
    """backend + gateway (+ agent) on free loopback ports."""

    def __init__(self, env, kind, agent_args=(), agent_wrap=()):
        self.env, self.kind = env, kind
        self.bport, self.pport = free_port(), free_port()
        self.backend = env.spawn([PYTHON, HTTP_BACKEND, "--port", self.bport, "--timeout", 150],
                                 stdout=env.path("backend.out"), stderr=env.path("backend.err"), name="httpbackend")
        wait_port("127.0.0.1", self.bport, 10, self.backend)
        self.proxy = (start_caddy if kind == "caddy" else start_nginx)(env, self.pport, self.bport)
        wait_port("127.0.0.1", self.pport, 15, self.proxy)
        self.secret = env.path("key-hash.secret")
        self.agent = Agent(env, ["--port", self.pport, "--port", self.bport, "--capture-header", "X-Test-Seq", "--capture-header", "X-Forwarded-For",
                                 "--key-hash-secret-file", self.secret] + list(agent_args), wrap=list(agent_wrap))
        self.url = "http://127.0.0.1:%d" % self.pport

    def load(self, n, c, *extra, path="/text/10"):
        out = self.env.path("httpload.%d.out" % len(self.env.procs))
        p = self.env.spawn([PYTHON, HTTPLOAD, "--port", self.pport, "-n", n, "-c", c, "--path", path, "--record"] + list(extra),
                           stdout=out, stderr=self.env.path("httpload.err"), name="httpload")
        rc = p.wait(120)
        check(rc == 0, "httpload exited %s: %s", rc, self.env.path("httpload.err").read_text()[-2000:])
        r = json.loads(out.read_text().strip().splitlines()[-1])
        check(r["sent"] == n and r["ok"] == n, "httpload: %d sent, %d ok of %d: %s", r["sent"], r["ok"], n, r["statuses"])
        return r

    def stop(self):
        """Stop the gateway first (its connections close), then the agent."""
        stop_process(self.proxy)
        time.sleep(0.5)
        res = self.agent.stop()
        stop_process(self.backend)
        return res


def gateway_spans(res, kind):
    exe = "caddy" if kind == "caddy" else "nginx"
    spans = [s for s in res.spans if s.exe == exe]
    return [s for s in spans if s.kind == SERVER], [s for s in spans if s.kind == CLIENT]


def link_accuracy(servers, clients, seqs):
    """{evidence: [linked, correct]} over the client spans whose X-Test-Seq is in seqs."""
    by_id = {s.id: s for s in servers}
    acc = collections.defaultdict(lambda: [0, 0])
    for c in clients:
        seq = c.a(SEQ)
        if seq not in seqs:
            continue
        ev = c.a("wirespan.link.evidence", "none")
        acc[ev][0] += 1
        p = by_id.get(c.parent)
        if p is not None and p.a(SEQ) == seq and p.trace == c.trace:
            acc[ev][1] += 1
    return dict(acc)


def check_counts(servers, clients, seqs, who):
    """Exactly one gateway server span and one client span per request."""
    s_seq = collections.Counter(s.a(SEQ) for s in servers if s.a(SEQ) in seqs)
    c_seq = collections.Counter(s.a(SEQ) for s in clients if s.a(SEQ) in seqs)
    check(len(s_seq) == len(seqs) and set(s_seq.values()) == {1},
          "%s: %d requests, %d server spans for %d of them (dups %s)", who, len(seqs), sum(s_seq.values()), len(s_seq),
          [k for k, v in s_seq.items() if v > 1][:5])
    check(len(c_seq) == len(seqs) and set(c_seq.values()) == {1},
          "%s: %d requests, %d upstream client spans for %d of them", who, len(seqs), sum(c_seq.values()), len(c_seq))


def check_identity(servers, reqs, secret_path, who):
    """enduser.id / enduser.pseudo.id of each server span match the token sent."""
    secret = open(secret_path, "rb").read().rstrip()
    by_seq = {s.a(SEQ): s for s in servers}
    bad = []
    for r in reqs:
        s = by_seq[r["seq"]]
        if r.get("auth") in ("jwt", "basic"):
            if s.a("enduser.id") != r["sub"]:
                bad.append((r, s.a("enduser.id")))
            if r["auth"] == "jwt" and (s.a("wirespan.auth.verified") is not False or s.a("user.roles") != "read,write"):
                bad.append((r, s.a("wirespan.auth.verified"), s.a("user.roles")))
        elif r.get("auth") == "apikey":
            want = hmac.new(secret, r["key"].encode(), hashlib.sha256).hexdigest()[:32]
            if s.a("enduser.pseudo.id") != want or s.a("enduser.id") is not None:
                bad.append((r, s.a("enduser.pseudo.id"), want))
    check(not bad, "%s: %d of %d identities wrong, e.g. %s", who, len(bad), len(reqs), bad[:3])


def accuracy_test(kind, agent_wrap=()):
    """64 concurrent connections: every upstream call's parent, by evidence."""
    with Env("http-" + kind) as env:
        gw = Gateway(env, kind, agent_wrap=agent_wrap)
        # one client address: X-Forwarded-For tells nothing (worst case)
        same_ip = gw.load(600, 64)
        phases = [("many clients", gw.load(1200, 64, "--distinct-ips", "--auth", "mixed")),
                  ("unique traceparent", gw.load(300, 64, "--distinct-ips", "--traceparent", "unique", "--auth", "jwt")),
                  ("fixed traceparent", gw.load(300, 64, "--distinct-ips", "--traceparent", "fixed")),
                  ("chunked", gw.load(100, 8, "--distinct-ips", path="/chunked/1000"))]
        res = gw.stop()
        res.check_well_formed()
        servers, clients = gateway_spans(res, kind)
        total = [0, 0]
        report = []

        def measure(name, r):
            seqs = {x["seq"] for x in r["requests"]}
            check_counts(servers, clients, seqs, "%s %s" % (kind, name))
            acc = link_accuracy(servers, clients, seqs)
            n = ok = 0
            for ev, (k, good) in sorted(acc.items()):
                report.append("%s/%s: %d/%d (%.2f%%)" % (name, ev, good, k, 100.0 * good / k))
                n, ok = n + k, ok + good
            return acc, n, ok

        _, n1, ok1 = measure("one client address", same_ip)
        for name, r in phases:
            acc, n, ok = measure(name, r)
            total[0] += n
            total[1] += ok
            if name == "unique traceparent":
                tp = {x["seq"]: x["traceparent"] for x in r["requests"]}
                by_id = {x.id: x for x in res.spans}
                for s in servers:
                    want = tp.get(s.a(SEQ))
                    if want:
                        # the parent is the client's traceparent, or the
                        # load generator's own client span (same host),
                        # itself the child of that traceparent
                        p = by_id.get(s.parent)
                        direct = p is None or p.exe in ("caddy", "nginx")
                        parent = s.parent if direct else p.parent
                        check(s.trace == want[3:35] and parent == want[36:52],
                              "%s: server span %r does not continue the client's traceparent %s", kind, s, want)
                check(set(acc) == {"traceparent"}, "%s: unique traceparents linked by %s", kind, acc)
            if name == "many clients":
                check_identity(servers, r["requests"], gw.secret, kind)
        log("%s link accuracy: %s", kind, "; ".join(report))
        check(total[1] >= 0.99 * total[0], "%s: correct parent for %d of %d upstream spans (< 99%%): %s",
              kind, total[1], total[0], "; ".join(report))
        # one address, identical requests: only the order of syscalls on
        # the threads is left (docs/ARCHITECTURE.md has the numbers: nginx
        # 100 %, caddy 87-94 % on the shared machine); a floor, not the target
        # with the Go runtime probes on caddy (docs/ARCHITECTURE.md, "Go
        # runtime evidence") the goroutines decide: the target holds there too
        go = res.agent_metrics.get("go", {})
        log("%s: go probes %s", kind, go)
        floor = 0.99 if go.get("procs") else 0.75
        check(ok1 >= floor * n1, "%s, one client address: correct parent for %d of %d", kind, ok1, n1)
        if kind == "caddy" and go.get("procs"):
            by_ev = collections.Counter(c.a("wirespan.link.evidence") for c in clients)
            check(by_ev["goroutine"] * 2 > len(clients), "caddy: most links by goroutine: %s", dict(by_ev))
        # every link is counted under the evidence its span names
        st = res.agent_metrics["http"]
        log("%s counters: %s", kind, {k: v for k, v in st.items() if k.startswith(("link_", "go_")) and v})
        named = collections.Counter(c.a("wirespan.link.evidence") for c in res.spans
                                    if c.kind == CLIENT and c.a("wirespan.link.evidence"))
        for ev in ("traceparent", "thread", "heuristic", "thread_order", "dial", "queue", "ambiguous",
                   "response_thread", "goroutine"):
            check(st["link_" + ev] == named[ev], "%s: agent_metrics.http.link_%s = %s, %d spans say %s",
                  kind, ev, st["link_" + ev], named[ev], ev)
        backend = [s for s in res.spans if s.kind == SERVER and s.exe not in ("caddy", "nginx")]
        n = sum(len(r["requests"]) for _, r in phases) + len(same_ip["requests"])
        check(len(backend) == n, "%s: %d backend server spans for %d requests", kind, len(backend), n)
        st = res.agent_metrics["http"]
        for k in ("end_timeout", "end_evicted", "pending_dropped", "pending_evicted", "orphan_responses", "gap_messages", "nomem"):
            check(st[k] == 0, "%s: agent_metrics.http.%s = %s", kind, k, st[k])
        check(metric(res.metrics, "rb_full_events") == 0, "%s: the ring buffer overflowed: %s", kind, res.metrics)
        return go


def test_http_gateway_caddy():
    """caddy reverse_proxy, 64 concurrent: N server + N client spans, parents >= 99% right, identities."""
    accuracy_test("caddy")


def test_http_gateway_caddy_no_go_probes():
    """caddy without the Go runtime probes (as on a kernel without uprobes): the other evidence, counted, agent fine."""
    go = accuracy_test("caddy", agent_wrap=["env", "WIRESPAN_NO_GO_PROBES=1"])
    check(go.get("procs") == 0 and go.get("attached") == 0 and go.get("unavailable", 0) >= 1,
          "without probes: agent_metrics.go = %s", go)


def test_http_gateway_nginx():
    """nginx proxy_pass, 64 concurrent: N server + N client spans, parents >= 99% right, identities."""
    accuracy_test("nginx")


def test_http_curl_hey_wrk():
    """curl keep-alive + chunked, hey -c 64 and wrk -c 64 through nginx and caddy: span counts match requests."""
    with Env("http-tools") as env:
        gw = Gateway(env, "nginx")
        urls = ["%s/text/%d" % (gw.url, 100 + i) for i in range(3)] + [gw.url + "/chunked/5000", gw.url + "/nope"]
        args = [CURL, "-sS", "--http1.1", "-H", "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"]
        for u in urls:
            args += ["-o", "/dev/null", u]
        curl = env.spawn(args, stdout=env.path("curl.out"), stderr=env.path("curl.err"), name="curl")
        check(curl.wait(30) == 0, "curl failed: %s", env.path("curl.err").read_text())
        hey = subprocess.run([HEY, "-n", "1024", "-c", "64", gw.url + "/text/10"], capture_output=True, text=True, timeout=60)
        check(hey.returncode == 0 and "[200]\t1024 responses" in hey.stdout, "hey: %s", hey.stdout[-800:])
        res = gw.stop()
        res.check_well_formed()
        servers, clients = gateway_spans(res, "nginx")
        cs = [s for s in res.spans if s.exe == "curl"]
        check(len(cs) == 5, "curl: %d client spans, expected 5 (keep-alive): %s", len(cs), cs)
        check(len({s.a("network.peer.port") for s in cs}) == 1, "curl used one connection")
        got = sorted((s.a("url.path"), s.a("http.response.status_code")) for s in cs)
        check(got == sorted([("/text/100", 200), ("/text/101", 200), ("/text/102", 200), ("/chunked/5000", 200), ("/nope", 404)]),
              "curl spans %s", got)
        chunked = [s for s in servers if s.a("url.path") == "/chunked/5000"]
        # nginx relays the chunks with writev(2) of more iovecs than the
        # capture copies (WS_MAX_IOV): then the message ends flagged
        check(len(chunked) == 1 and chunked[0].a("http.response.status_code") == 200 and
              (chunked[0].a("http.response.body.size") == 5000 or chunked[0].a("wirespan.http.truncated")),
              "chunked through nginx: %s", [(s, s.attrs) for s in chunked])
        up = [s for s in clients if s.a("url.path") == "/chunked/5000"]
        check(len(up) == 1 and up[0].a("http.response.body.size") == 5000, "chunked upstream: %s", [(s, s.attrs) for s in up])
        for s in cs:
            check(s.trace == "0af7651916cd43dd8448eb211c80319c" and s.parent == "b7ad6b7169203331",
                  "curl span %r does not continue its traceparent", s)
        nope = [s for s in servers if s.a("url.path") == "/nope"]
        check(len(nope) == 1 and nope[0].a("http.response.status_code") == 404 and nope[0].status.get("code", 0) != 2,
              "404 on the gateway: %s", [(s, s.status) for s in nope])
        hs = [s for s in servers if s.a("user_agent.original", "").startswith("hey/")]
        hc = [s for s in clients if s.a("user_agent.original", "").startswith("hey/")]
        check(len(hs) == 1024 and len(hc) == 1024, "hey: 1024 requests, %d gateway server and %d client spans", len(hs), len(hc))
        ids = {s.id for s in hs}
        parents = collections.Counter(c.parent for c in hc)
        check(set(parents) <= ids and len(parents) >= 0.99 * 1024,
              "hey through nginx: upstream parents are %d distinct gateway server spans of 1024", len(parents))

    with Env("http-wrk") as env:
        gw = Gateway(env, "caddy")
        wrk = subprocess.run([WRK, "-t", "2", "-c", "64", "-d", "2s", gw.url + "/text/10"], capture_output=True, text=True, timeout=60)
        check(wrk.returncode == 0, "wrk: %s %s", wrk.stdout, wrk.stderr)
        m = re.search(r"(\d+) requests in", wrk.stdout)
        check(m, "wrk output: %s", wrk.stdout)
        res = gw.stop()
        res.check_well_formed()
        servers, clients = gateway_spans(res, "caddy")
        backend = [s for s in res.spans if s.kind == SERVER and s.exe != "caddy"]
        done = [s for s in servers if s.a("http.response.status_code") == 200]
        log("wrk: %s requests reported, %d gateway server spans (%d with a response), %d client, %d backend",
            m.group(1), len(servers), len(done), len(clients), len(backend))
        check(len(done) >= int(m.group(1)), "wrk completed %s requests; %d gateway server spans with a 200", m.group(1), len(done))
        check(len(clients) == len(backend), "%d gateway client spans, %d backend server spans", len(clients), len(backend))
        check(abs(len(servers) - len(clients)) <= 64, "%d gateway server spans, %d client spans", len(servers), len(clients))
        st = res.agent_metrics["http"]
        for k in ("end_evicted", "pending_dropped", "pending_evicted", "orphan_responses", "gap_messages", "nomem"):
            check(st[k] == 0, "wrk: agent_metrics.http.%s = %s", k, st[k])


def _b64u(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def _rsa_key(env, name):
    """A fresh RSA-2048 key (openssl) and its JWK public half."""
    pem = env.path(name + ".pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", pem],
                   check=True, capture_output=True, timeout=60)
    out = subprocess.run(["openssl", "rsa", "-in", pem, "-noout", "-modulus"], check=True, capture_output=True,
                         text=True, timeout=30).stdout
    n = int(out.strip().split("=", 1)[1], 16)
    return pem, {"kty": "RSA", "n": _b64u(n.to_bytes((n.bit_length() + 7) // 8, "big")), "e": "AQAB"}


def _rs256(pem, header, claims):
    """An RS256 JWT signed by openssl (PKCS#1 v1.5, SHA-256)."""
    data = _b64u(json.dumps(header).encode()) + "." + _b64u(json.dumps(claims).encode())
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", pem], input=data.encode(), check=True,
                         capture_output=True, timeout=30).stdout
    return data + "." + _b64u(sig)


def _send(url, seq, token):
    import http.client
    host, port = url.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("GET", "/text/10", headers={"X-Test-Seq": seq, "Authorization": "Bearer " + token})
    r = c.getresponse()
    r.read()
    c.close()
    check(r.status == 200, "request %s: status %s", seq, r.status)


def test_http_jwks_verified():
    """http.jwks_file through caddy: a good RS256 token is verified, a forged, expired or alg=none one is not (with the reason); the key set is read again when the file changes."""
    with Env("http-jwks") as env:
        good_pem, good_jwk = _rsa_key(env, "good")
        evil_pem, evil_jwk = _rsa_key(env, "evil")
        jwks = env.path("jwks.json")
        jwks.write_text(json.dumps({"keys": [dict(good_jwk, kid="k1", use="sig")]}))
        gw = Gateway(env, "caddy", ["--set", "http.jwks_file=%s" % jwks, "--set", "http.jwt_issuers=https://idp.test"])
        now = int(time.time())
        claims = {"sub": "alice", "iss": "https://idp.test", "exp": now + 600, "scope": "read write"}
        hdr = {"alg": "RS256", "typ": "JWT", "kid": "k1"}
        toks = {
            "good": _rs256(good_pem, hdr, claims),
            "forged": _rs256(evil_pem, hdr, dict(claims, sub="mallory")),
            "expired": _rs256(good_pem, hdr, dict(claims, exp=now - 3600)),
            "issuer": _rs256(good_pem, hdr, dict(claims, iss="https://evil.test")),
            "none": _b64u(b'{"alg":"none","kid":"k1"}') + "." + _b64u(json.dumps(claims).encode()) + ".",
        }
        for name, t in toks.items():
            _send(gw.url, "a-" + name, t)
        # the file changes: now only the other key is trusted
        time.sleep(0.1)
        jwks.write_text(json.dumps({"keys": [dict(evil_jwk, kid="k1")]}))
        time.sleep(2.5)
        _send(gw.url, "b-good", toks["good"])
        _send(gw.url, "b-forged", toks["forged"])
        res = gw.stop()
        res.check_well_formed()
        servers, _ = gateway_spans(res, "caddy")
        by_seq = {s.a(SEQ): s for s in servers}
        want = {"a-good": (True, None, "alice"), "a-forged": (False, "bad_signature", "mallory"),
                "a-expired": (False, "expired", "alice"), "a-issuer": (False, "wrong_issuer", "alice"),
                "a-none": (False, "alg_none", "alice"),
                "b-good": (False, "bad_signature", "alice"), "b-forged": (True, None, "mallory")}
        got = {}
        for seq in want:
            s = by_seq.get(seq)
            check(s is not None, "no gateway server span for %s", seq)
            got[seq] = (s.a("wirespan.auth.verified"), s.a("wirespan.auth.verify_error"), s.a("enduser.id"))
        log("jwks verdicts: %s", got)
        check(got == want, "verdicts %s, expected %s", got, want)
        jm = res.agent_metrics["http"]["jwt"]
        check(jm["jwks_loads"] == 2 and jm["jwks_keys"] == 1 and jm["jwks_load_errors"] == 0, "jwt metrics %s", jm)
        check(jm["verified"] >= 2 and jm["bad_signature"] >= 2 and jm["alg_none"] >= 1 and jm["cache_hits"] >= 1,
              "jwt metrics %s", jm)
        for t in toks.values():
            check(t.split(".")[2] == "" or t.split(".")[2] not in res.stdout.decode(errors="replace"),
                  "a token signature left the host")


SECRETS = [
    "sk_live_" + secrets.token_hex(12),
    "sess-" + secrets.token_hex(12),
    "pw-" + secrets.token_hex(10),
    "tok_" + secrets.token_hex(12),
    "apikey-" + secrets.token_hex(12),
    "refresh-" + secrets.token_hex(12),
]


def test_http_secrets_never_leave():
    """Cookies, Authorization values, API keys and passwords (one split across two writes) appear nowhere in the agent's output."""
    with Env("http-secrets") as env:
        gw = Gateway(env, "nginx", ["-v", "--capture-header", "Host", "--api-key-header", "X-Partner"])
        basic = base64.b64encode(("alice:" + SECRETS[2]).encode()).decode()
        jwt_sig = secrets.token_urlsafe(32)
        jwt = "eyJhbGciOiJIUzI1NiJ9.%s.%s" % (base64.urlsafe_b64encode(b'{"sub":"carol"}').decode().rstrip("="), jwt_sig)
        reqs = [
            "GET /text/1?password=%s HTTP/1.1\r\nHost: x\r\nCookie: session=%s\r\nX-API-Key: %s\r\n\r\n" % (SECRETS[2], SECRETS[1], SECRETS[0]),
            "GET /text/2 HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n\r\n" % basic,
            "GET /text/3 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % SECRETS[3],
            "GET /text/4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nX-Partner: %s\r\n\r\n" % (jwt, SECRETS[4]),
            "GET /text/5 HTTP/1.1\r\nHost: x\r\nX-Refresh-Token: %s\r\nAuthorization: %s\r\n\r\n" % (SECRETS[5], SECRETS[4]),
        ]
        with socket.create_connection(("127.0.0.1", gw.pport)) as sk:
            f = sk.makefile("rb")
            for i, r in enumerate(reqs):
                if i == 0:
                    # the API key cut in two writes
                    cut = r.index(SECRETS[0]) + 10
                    sk.sendall(r[:cut].encode())
                    time.sleep(0.05)
                    sk.sendall(r[cut:].encode())
                else:
                    sk.sendall(r.encode())
                line = f.readline()
                check(line.startswith(b"HTTP/1.1 200"), "response %d: %r", i, line)
                n = 0
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b""):
                        break
                    if h.lower().startswith(b"content-length:"):
                        n = int(h.split(b":")[1])
                f.read(n)
        res = gw.stop()
        res.check_well_formed()
        text = res.stdout.decode("utf-8", "replace") + "\n".join(res.stderr_lines)
        corpus = SECRETS + [basic, jwt, jwt_sig]
        for sec in corpus:
            for i in range(0, len(sec) - 11):
                frag = sec[i:i + 12]
                check(frag not in text, "secret fragment %r (of %r) is in the agent's output", frag, sec[:6] + "...")
        servers, _ = gateway_spans(res, "nginx")
        check(len(servers) == 5, "5 requests, %d gateway server spans", len(servers))
        users = sorted(s.a("enduser.id") or s.a("enduser.pseudo.id", "")[:4] + "*" for s in servers)
        check("alice" in users and "carol" in users, "identities %s", users)
        check(sum(1 for s in servers if s.a("enduser.pseudo.id")) == 3, "pseudo ids: %s", [s.attrs for s in servers])


def test_go_probes_one_attach_per_binary():
    """Two caddy processes of one binary started after the agent: one attach, both followed, their upstream calls linked by goroutine, detached when the last exits."""
    with Env("go-probes") as env:
        bport = free_port()
        backend = env.spawn([PYTHON, HTTP_BACKEND, "--port", bport, "--timeout", 60],
                            stdout=env.path("backend.out"), stderr=env.path("backend.err"), name="httpbackend")
        wait_port("127.0.0.1", bport, 10, backend)
        ports = [free_port(), free_port()]
        agent = Agent(env, ["--port", ports[0], "--port", ports[1], "--port", bport,
                            "--capture-header", "X-Test-Seq"])
        caddies = []
        for i, p in enumerate(ports):
            sub = env.path("caddy%d" % i)
            sub.mkdir()
            caddies.append(start_caddy(env, p, bport))
            wait_port("127.0.0.1", p, 15, caddies[-1])

        def curl(port, seqs):
            args = [CURL]
            for s in seqs:  # one connection (keep-alive), a header each
                args += ["-sS", "--http1.1", "-H", "X-Test-Seq: %s" % s, "-o", "/dev/null",
                         "http://127.0.0.1:%d/text/10" % port, "--next"]
            args.pop()
            r = subprocess.run(args, capture_output=True, text=True, timeout=30)
            check(r.returncode == 0, "curl: %s", r.stderr)

        # the first request of each process makes the agent probe it (its
        # own bytes were read before); the next ones carry goroutines
        for p in ports:
            curl(p, ["warm-%d" % p])
        time.sleep(1.0)
        want = ["%d-%d" % (p, i) for p in ports for i in range(5)]
        for p in ports:
            curl(p, [s for s in want if s.startswith("%d-" % p)])
        time.sleep(0.5)
        for c in caddies:
            stop_process(c)
        time.sleep(1.0)
        res = agent.stop()
        stop_process(backend)
        res.check_well_formed()
        go = res.agent_metrics.get("go", {})
        log("go probes: %s", go)
        check(go.get("attached") == 1 and go.get("procs") == 2 and go.get("detached") == 1,
              "one caddy binary, two processes: agent_metrics.go = %s", go)
        servers = {s.id: s for s in res.spans if s.exe == "caddy" and s.kind == SERVER}
        calls = [s for s in res.spans if s.exe == "caddy" and s.kind == CLIENT and s.a(SEQ) in want]
        check(len(calls) == len(want), "%d upstream calls of %d", len(calls), len(want))
        for c in calls:
            p = servers.get(c.parent)
            check(c.a("wirespan.link.evidence") == "goroutine" and p is not None and p.a(SEQ) == c.a(SEQ),
                  "call %s: evidence %s, parent %s", c.a(SEQ), c.a("wirespan.link.evidence"), p and p.a(SEQ))
