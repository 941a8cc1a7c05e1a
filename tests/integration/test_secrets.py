# SPDX-License-Identifier: Apache-2.0
"""End to end: secrets never leave the host (docs/SECURITY.md, "Redaction").

One agent (`--output stdout -v`) watches a workload that carries a corpus
of random secrets through every path at once (tests/peers/py/secretclient.py):
NATS CONNECT with user/password and with a token (two nats-servers with
authorization), HTTP through caddy with Authorization Bearer JWT, Basic,
X-API-Key, Cookie, X-Auth-Token, secret query parameters, a JWT in the
path, a request whose secrets are split across send(2) calls, and a
process whose command line holds --password=..., -H 'Authorization: ...'
and NATS URLs with a password and a token. The test fails if any 10-byte
fragment of any secret appears on the agent's stdout or stderr.

It cannot pass by seeing nothing: the spans of every path must be there
(with REDACTED where a secret was, and the non-secret identity kept), and
a non-secret canary header the agent records must be found by the same
fragment search.
"""

import base64
import json
import secrets

from harness import (
    HTTP_BACKEND,
    PEERS_SRC,
    PYTHON,
    Agent,
    Env,
    check,
    free_port,
    log,
    start_nats_conf,
    stop_process,
    wait_port,
)
from test_capture import start_caddy

SECRET_CLIENT = PEERS_SRC / "py" / "secretclient.py"
FRAG = 10


def rnd(n=24):
    # letters and digits only: JSON escaping cannot hide a fragment
    return "".join(secrets.choice("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(n))


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(sub):
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": rnd(16)}).encode())
    body = b64url(json.dumps({"sub": sub, "jti": rnd(20), "roles": ["read"]}).encode())
    return "%s.%s.%s" % (head, body, b64url(secrets.token_bytes(32)))


def fragments(s):
    return {s[i:i + FRAG] for i in range(len(s) - FRAG + 1)}


def leaks(corpus, text):
    """{secret name: first fragment found in text}."""
    out = {}
    for name, s in corpus.items():
        for f in sorted(fragments(s)):
            if f in text:
                out[name] = f
                break
    return out


def test_secrets_never_leave():
    """A corpus of secrets through NATS, HTTP and argv: zero fragments out."""
    with Env("secrets") as env:
        nats_pass, nats_token = rnd(), rnd()
        jwt_user = "jwt-" + rnd(8)
        sec = {
            "canary": "canary-" + rnd(20),
            "jwt": jwt(jwt_user),
            "path_jwt": jwt("path-" + rnd(8)),
            "basic_user": "bob",
            "basic_pass": rnd(),
            "api_key": rnd(32),
            "cookie": rnd(),
            "auth_token_hdr": rnd(),
            "q_token": rnd(),
            "q_pass": rnd(),
            "split_q": rnd(),
            "split_bearer": rnd(),
        }
        argv_pass, argv_bearer = rnd(), rnd()
        corpus = {k: v for k, v in sec.items() if k not in ("canary", "basic_user")}
        corpus.update({
            "basic_blob": base64.b64encode(("bob:%s" % sec["basic_pass"]).encode()).decode(),
            "nats_pass": nats_pass,
            "nats_token": nats_token,
            "argv_password": argv_pass,
            "argv_bearer": argv_bearer,
        })
        sfile = env.path("secrets.json")
        sfile.write_text(json.dumps(sec))

        nu = start_nats_conf(env, 'authorization { users = [ { user: "alice", password: "%s" } ] }' % nats_pass)
        nt = start_nats_conf(env, 'authorization { token: "%s" }' % nats_token)
        bport, pport = free_port(), free_port()
        backend = env.spawn([PYTHON, HTTP_BACKEND, "--port", bport], stdout=env.path("backend.out"), stderr=env.path("backend.err"),
                            name="httpbackend")
        wait_port("127.0.0.1", bport, 10, backend)
        caddy = start_caddy(env, pport, bport)
        wait_port("127.0.0.1", pport, 15, caddy)

        agent = Agent(env, ["-v", "--port", pport, "--port", bport, "--port", nu.port, "--port", nt.port, "--capture-header", "X-Canary",
                            "--key-hash-secret-file", env.path("key-hash.secret")])
        out = env.path("secretclient.out")
        client = env.spawn([PYTHON, SECRET_CLIENT, "--nats-user", "nats://alice:%s@127.0.0.1:%d" % (nats_pass, nu.port),
                            "--nats-other", "nats://%s@127.0.0.1:%d" % (nats_token, nt.port), "--http", "127.0.0.1:%d" % pport,
                            "--secrets", sfile, "--linger", "1.5", "--password=%s" % argv_pass, "-H", "Authorization: Bearer %s" % argv_bearer],
                           stdout=out, stderr=env.path("secretclient.err"), name="secretclient")
        rc = client.wait(30)
        check(rc == 0, "secretclient exited %s: %s", rc, env.path("secretclient.err").read_text()[-2000:])
        r = json.loads(out.read_text().strip().splitlines()[-1])
        check(r["statuses"] == [200, 200, 200, 404, 200], "HTTP statuses %s", r["statuses"])
        stop_process(caddy)
        res = agent.stop()
        res.check_well_formed()

        text = res.stdout.decode("utf-8", "replace") + "\n" + res.stderr
        text += "\n" + text.replace("\\/", "/")
        log("agent: %d spans, %d stdout bytes, %d stderr lines; corpus: %d secrets, %d fragments",
            len(res.spans), len(res.stdout), len(res.stderr_lines), len(corpus), sum(len(fragments(s)) for s in corpus.values()))

        # the search finds what is there: the canary header is recorded
        check(leaks({"canary": sec["canary"]}, text), "the canary %s is not in the agent's output: the search proves nothing",
              sec["canary"])
        # every path was seen
        cpid = client.pid
        mine = [s for s in res.spans if s.pid == cpid]
        cmd = {s.resource.get("process.command_line") for s in mine}
        check(mine, "no span of secretclient (pid %d): %s", cpid, res.summary())
        check(any(c and "--password=REDACTED" in c and "Authorization: REDACTED" in c and "nats://alice:REDACTED@" in c
                  and "nats://REDACTED@" in c for c in cmd), "secretclient's command line not redacted as expected: %s", cmd)
        nats_users = {s.a("nats.user") for s in mine if s.a("nats.user")}
        check("alice" in nats_users, "no NATS span of secretclient with nats.user alice (saw %s)", nats_users)
        server = [s for s in res.spans if s.exe == "caddy" and s.kind == 2]
        queries = {s.a("url.query") for s in server}
        check("access_token=REDACTED&password=REDACTED&page=1" in queries, "caddy server spans' url.query: %s", queries)
        check("api_key=REDACTED" in queries, "the split request's url.query is missing: %s", queries)
        check("/verify/REDACTED" in {s.a("url.path") for s in server}, "the JWT in the path is not hidden: %s",
              {s.a("url.path") for s in server})
        users = {s.a("enduser.id") for s in server}
        check(jwt_user in users and "bob" in users, "enduser.id of the JWT (%s) and Basic (bob) callers missing: %s", jwt_user, users)
        check(any(s.a("enduser.pseudo.id") for s in server), "no enduser.pseudo.id (the API key's keyed hash)")

        found = leaks(corpus, text)
        check(not found, "secrets in the agent's output: %s", found)
        log("no fragment of %d secrets in %d bytes of output", len(corpus), len(text) // 2)
