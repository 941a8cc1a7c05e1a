# SPDX-License-Identifier: Apache-2.0
"""`make demo` end to end: deploy/demo/demo.sh --once --json runs caddy ->
Go API -> NATS request -> Go worker -> publish -> Node notifier, a JWT and
an API-key caller, the agent and `wirespan tail --json`; every call must be
ONE connected trace holding every hop, with the caller's identity."""
import collections
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from harness import NATS_SERVER, REPO, WIRESPAN, Env, TestFailure, check, free_port, log, start_nats

DEMO = REPO / "deploy" / "demo" / "demo.sh"
CALLS = 2  # of each kind


def _spans(out):
    spans = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("{"):
            spans.append(json.loads(line))
    return spans


def _exe(s):
    return (s.get("resource") or {}).get("process.executable.name", "")


def _one(trace, what, pred):
    found = [s for s in trace if pred(s)]
    check(len(found) == 1, "%s: want 1 span, saw %d in the trace: %s", what, len(found),
          ["%s %s %s" % (_exe(s), s["kind"], s["name"]) for s in trace])
    return found[0]


def _child_of(child, parent, what):
    check(child.get("parent_span_id") == parent["span_id"], "%s: parent %s, want %s (%s %s)", what,
          child.get("parent_span_id"), parent["span_id"], _exe(parent), parent["name"])


def _ancestors(s, by_id):
    seen = []
    while s.get("parent_span_id") in by_id and len(seen) < 64:
        s = by_id[s["parent_span_id"]]
        seen.append(s)
    return seen


def check_call(trace, ident_key):
    """One call's trace: every hop, each the child of the hop before."""
    by_id = {s["span_id"]: s for s in trace}
    roots = [s for s in trace if s.get("parent_span_id") not in by_id]
    check(len(roots) == 1, "one connected trace: %d roots: %s", len(roots),
          ["%s %s %s" % (_exe(s), s["kind"], s["name"]) for s in roots])
    gw_srv = _one(trace, "caddy server span", lambda s: _exe(s) == "caddy" and s["kind"] == "server")
    gw_cli = _one(trace, "caddy client span", lambda s: _exe(s) == "caddy" and s["kind"] == "client")
    api = _one(trace, "demo-api server span", lambda s: _exe(s) == "demo-api" and s["kind"] == "server")
    req = _one(trace, "NATS request", lambda s: _exe(s) == "demo-api" and s["name"] == "send demo.price")
    work = _one(trace, "worker process span", lambda s: _exe(s) == "demo-worker" and s["name"] == "process demo.price")
    pub = _one(trace, "worker publish", lambda s: _exe(s) == "demo-worker" and s["name"] == "publish demo.priced")
    note = _one(trace, "notifier process span", lambda s: _exe(s) == "node" and s["name"] == "process demo.priced")
    _child_of(gw_cli, gw_srv, "caddy client <- caddy server (gateway hop)")
    _child_of(api, gw_cli, "demo-api server <- caddy client (same-host hop)")
    _child_of(req, api, "NATS request <- HTTP server span")
    _child_of(work, req, "worker process <- request")
    _child_of(pub, work, "publish <- worker process")
    # the notifier's process span hangs under the publish, through the
    # server's deliver span when nats-server is on this host
    check(pub in _ancestors(note, by_id), "notifier process span is not under the worker's publish: parents %s",
          [s["name"] for s in _ancestors(note, by_id)])
    check(api["name"] == "GET /orders/{id}", "server span name %r", api["name"])
    val = gw_srv["attributes"].get(ident_key)
    check(val, "gateway span has no %s: %s", ident_key, gw_srv["attributes"])
    return val


def test_demo():
    """make demo: each JWT / API-key call is one trace gateway -> HTTP -> NATS request-reply -> pub/sub, with identity."""
    try:
        p = subprocess.run(["bash", str(DEMO), "--once", "--json", "--calls", str(CALLS)],
                           capture_output=True, text=True, timeout=55)
    except subprocess.TimeoutExpired as e:
        raise TestFailure("demo did not finish in 55 s: %s" % (e.stderr or b"")[-2000:])
    log("demo stderr:\n%s", p.stderr)
    check(p.returncode == 0, "demo exit %d: %s", p.returncode, p.stderr[-2000:])
    spans = _spans(p.stdout)
    traces = collections.defaultdict(list)
    for s in spans:
        traces[s["trace_id"]].append(s)
    calls = [t for t in traces.values() if any(_exe(s) == "caddy" and s["kind"] == "server" for s in t)]
    check(len(calls) == 2 * CALLS, "want %d traces through the gateway, saw %d (of %d traces, %d spans)",
          2 * CALLS, len(calls), len(traces), len(spans))
    users, pseudo = [], []
    for t in calls:
        gw = next(s for s in t if _exe(s) == "caddy" and s["kind"] == "server")
        if "enduser.id" in gw["attributes"]:
            users.append(check_call(t, "enduser.id"))
        else:
            pseudo.append(check_call(t, "enduser.pseudo.id"))
    check(users == ["alice"] * CALLS, "JWT callers: enduser.id %s", users)
    check(len(pseudo) == CALLS and len(set(pseudo)) == 1, "API-key callers: enduser.pseudo.id %s", pseudo)
    # no span holds a credential the callers sent (the demo's JWT is
    # signed with "demo-secret"; API keys start with "demo-key-")
    raw = p.stdout
    check("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." not in raw and "demo-key-" not in raw,
          "a caller credential appears in the spans")
    log("%d traces, %d spans; identities %s %s", len(calls), len(spans), users, pseudo)


def _pids_of(exe_path):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink("/proc/%s/exe" % d) == str(exe_path):
                    out.append(int(d))
            except OSError:
                pass
    return out


def test_make_run():
    """deploy/run.sh (make run): starts nats-server when none answers, agent + tail show spans, SIGINT leaves nothing behind."""
    with Env("make-run") as env:
        port = free_port()
        url = "nats://127.0.0.1:%d" % port
        e = dict(os.environ, RUN_SKIP_DEPS="1", WIRESPAN_EXPORT_NATS_URLS=url,
                 AGENT_ARGS="--port %d --node run-test --no-k8s --set export.batch.max_delay_ms=200 "
                 "--key-hash-secret-file %s" % (port, env.path("secret")))
        out, err = env.path("run.out"), env.path("run.err")
        before = set(_pids_of(WIRESPAN))
        p = env.spawn(["bash", REPO / "deploy" / "run.sh"], stdout=out, stderr=err, env=e, name="run.sh")
        deadline = time.monotonic() + 40
        while "traces of this host follow" not in err.read_text(errors="replace"):
            check(p.poll() is None, "run.sh exited %s: %s", p.returncode, err.read_text(errors="replace")[-1500:])
            check(time.monotonic() < deadline, "run.sh not ready in 40 s: %s", err.read_text(errors="replace")[-1500:])
            time.sleep(0.2)
        check("starting nats-server" in err.read_text(), "run.sh did not start a nats-server for %s", url)
        mine = set(_pids_of(WIRESPAN)) - before
        nats = [q for q in _pids_of(Path(NATS_SERVER).resolve())
                if ("-p\0%d\0" % port).encode() in Path("/proc/%d/cmdline" % q).read_bytes()]
        check(len(nats) == 1, "want one nats-server on port %d, saw %s", port, nats)
        # a message on the local server: the agent's publish span, shown by tail
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.recv(4096)
            s.sendall(b'CONNECT {"verbose":false}\r\nPUB run.check 2\r\nhi\r\nPING\r\n')
            s.recv(4096)
        deadline = time.monotonic() + 20
        while "publish run.check" not in out.read_text(errors="replace"):
            check(time.monotonic() < deadline, "tail showed no span of run.check: %s / %s",
                  out.read_text(errors="replace")[-800:], err.read_text(errors="replace")[-800:])
            time.sleep(0.2)
        os.killpg(p.pid, signal.SIGINT)  # Ctrl-C: the terminal's process group
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            raise TestFailure("run.sh did not stop within 30 s of SIGINT")
        check(p.returncode == 130, "run.sh exit %s after SIGINT; its stderr: %s; tail's output: %s", p.returncode,
              [l[:300] for l in err.read_text(errors="replace").splitlines()], out.read_text(errors="replace")[-600:])
        left = [q for q in mine | set(nats) if Path("/proc/%d" % q).exists()
                and not Path("/proc/%d/stat" % q).read_text().split(") ")[1].startswith("Z")]
        check(not left, "processes left after Ctrl-C: %s", left)
        check("agent_metrics" in err.read_text(), "the agent's counters were not printed at exit")
        log("run.sh: nats-server %s, wirespan %s, stopped", nats, sorted(mine))


def _counter_paths(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _counter_paths(v, path + (k,))
    else:
        yield ".".join(path)


def test_every_counter_documented():
    """Every counter the agent prints (metrics, agent_metrics with export, k8s) is named in docs/OPERATIONS.md."""
    doc = (REPO / "docs" / "OPERATIONS.md").read_text()
    names = set()
    with Env("counters") as env:
        ns = start_nats(env)
        err = env.path("agent.err")
        p = env.spawn([WIRESPAN, "agent", "--nats-url", ns.url, "--port", str(ns.port),
                       "--no-k8s", "-d", "1", "--key-hash-secret-file", env.path("secret")],
                      stderr=err, name="agent")
        p.wait(30)
        check(p.returncode == 0, "agent exit %s: %s", p.returncode, err.read_text()[-800:])
        for line in err.read_text().splitlines():
            if line.startswith("{"):
                o = json.loads(line)
                o.pop("type", None)
                names.update(_counter_paths(o))
    check(any(n.startswith("export.") for n in names), "no export counters printed")
    # the k8s section is printed only with a pod watch: its names come
    # from the code that prints it
    src = (REPO / "agent" / "enrich.c").read_text()
    k8s = src[src.index('"k8s"'):src.index('"peers"')] if '"peers"' in src else ""
    names.update("k8s." + n for n in re.findall(r'jw_u64\(w, "([a-z_0-9]+)"', k8s))
    check(any(n.startswith("k8s.") for n in names), "no k8s counters found in agent/enrich.c")
    missing = sorted(n for n in names if "`%s`" % n not in doc)
    check(not missing, "counters missing from docs/OPERATIONS.md: %s", missing)
    log("%d counters documented", len(names))
