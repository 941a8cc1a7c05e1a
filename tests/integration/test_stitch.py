# SPDX-License-Identifier: Apache-2.0
"""Cross-host stitching in `wirespan relay --stitch`, with real network
namespaces as hosts: one runs nats-server, one a publisher, a requester and
an HTTP client (curl), one a subscriber, a responder and an HTTP server.
Each "host" has its own `wirespan agent` capturing only the processes of
its namespace (--pid: every process is started held at a gate, its pid
known, and let go once the agents are ready) and exporting over NATS to a
telemetry nats-server on the root namespace; the relay stitches into the
fake OTLP backend (tests/peers/py/otlpbackend.py). Asserted: every consumer,
responder and HTTP server span ends up in its producer's, requester's or
client's trace with the right parent, N of N; the server's hop of each
reply is the child of its responder's span (wirespan.nats.reply_id), joined
at once: no span waits the window for a parent (parent_timeouts 0); for
identical payloads sent concurrently the relay's ambiguity counters are
logged."""
import collections
import json
import os
import signal
import subprocess
import time

from harness import (CURL, NATS_SERVER, PEERS_BIN, PYTHON, WIRESPAN, HTTP_BACKEND, Env, check, log, start_nats,
                     stop_process, tail)
from test_relay import Backend

GO = PEERS_BIN / "natsrole-go"
N = 6
TAG = "%d" % (os.getpid() % 100000)
NETS = {"srv": 2, "pub": 3, "sub": 4}  # namespace -> last octet of 10.79.0.x


def ip(*args, check_rc=True):
    r = subprocess.run(["ip"] + [str(a) for a in args], capture_output=True, text=True)
    if check_rc and r.returncode:
        raise AssertionError("ip %s: %s" % (" ".join(map(str, args)), r.stderr.strip()))


class Hosts:
    """Network namespaces on one bridge; removed on exit, even on failure."""

    def __init__(self):
        self.br = "wsbr" + TAG
        self.ns = {h: "ws%s%s" % (h, TAG) for h in NETS}

    def addr(self, h):
        return "10.79.0.%d" % NETS[h]

    def __enter__(self):
        try:
            ip("link", "add", self.br, "type", "bridge")
            ip("link", "set", self.br, "up")
            for h, ns in self.ns.items():
                veth = "wsv%s%s" % (h[:2], TAG)
                ip("netns", "add", ns)
                ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                ip("link", "set", veth, "master", self.br, "up")
                ip("-n", ns, "addr", "add", self.addr(h) + "/24", "dev", "eth0")
                ip("-n", ns, "link", "set", "eth0", "up")
                ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for ns in self.ns.values():
            ip("netns", "del", ns, check_rc=False)  # takes its veth end along
        ip("link", "del", self.br, check_rc=False)
        return False


class Gated:
    """Processes started in a namespace but held until the gate opens, so
    their pids are known before the agents start (ip netns exec and sh exec
    the command: the pid stays)."""

    def __init__(self, env):
        self.env = env
        self.gate = env.path("gate")
        self.procs = collections.defaultdict(list)  # host -> [(name, Popen)]

    def start(self, hosts, h, name, args, delay=0.0):
        """delay: seconds after the gate opens (the server first, then the
        receivers, then the senders)."""
        cmd = ["ip", "netns", "exec", hosts.ns[h], "sh", "-c",
               'while [ ! -e "$0" ]; do sleep 0.02; done; sleep %.2f; exec "$@"' % delay, self.gate]
        cmd += [str(a) for a in args]
        out, err = self.env.path("%s.out" % name), self.env.path("%s.err" % name)
        p = self.env.spawn(cmd, stdout=out, stderr=err, name=name)
        p.wirespan_out, p.wirespan_err = out, err
        self.procs[h].append((name, p))
        return p

    def pids(self, h):
        return [p.pid for _, p in self.procs[h]]

    def open(self):
        self.gate.write_text("go")


def start_agent(env, name, node, nats_url, pids):
    err = env.path("agent-%s.err" % name)
    args = [WIRESPAN, "agent", "--output", "nats", "--nats-url", nats_url, "--node", node]
    for pid in pids:
        args += ["--pid", pid]
    p = env.spawn(args, stdout=env.path("agent-%s.out" % name), stderr=err, name="wirespan-agent")
    deadline = time.monotonic() + 30
    while "ready" not in (err.read_text(errors="replace") if err.exists() else ""):
        check(p.poll() is None, "agent %s exited %s: %s", name, p.returncode, tail(err))
        check(time.monotonic() < deadline, "agent %s not ready: %s", name, tail(err))
        time.sleep(0.05)
    return p


def wait_peer(p, timeout=30.0):
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        stop_process(p)
        raise AssertionError("%s did not finish: %s" % (p.wirespan_name, tail(p.wirespan_err)))
    check(p.returncode == 0, "%s exited %s: %s", p.wirespan_name, p.returncode, tail(p.wirespan_err))


def sigint_wait(p, what, timeout=30.0):
    p.send_signal(signal.SIGINT)
    try:
        rc = p.wait(timeout)
    except subprocess.TimeoutExpired:
        stop_process(p)
        raise AssertionError("%s did not exit after SIGINT" % what)
    check(rc == 0, "%s exited %s", what, rc)


def relay_metrics(path):
    for line in reversed(path.read_text(errors="replace").splitlines()):
        if line.startswith("{") and '"relay_metrics"' in line:
            return json.loads(line)
    raise AssertionError("no relay_metrics line: %s" % tail(path))


def pid_of(s):
    v = s["resource"].get("process.pid") if isinstance(s["resource"], dict) else None
    return int(v) if v is not None else None


def chain(by_id, s):
    """The spans from s up to its root (within what the backend got)."""
    out = [s]
    while out[-1]["parent_span_id"] and out[-1]["parent_span_id"] in by_id and len(out) < 20:
        out.append(by_id[out[-1]["parent_span_id"]])
    return out


def check_joined(spans, child_pred, root_pred, what, n, distinct=True):
    """n spans matching child_pred, each in the trace of a root matching
    root_pred (a distinct one each unless distinct=False), every parent on
    the way present and in that trace. Returns the spans."""
    by_id = {s["span_id"]: s for s in spans}
    kids = [s for s in spans if child_pred(s)]
    check(len(kids) == n, "%s: %d spans, expected %d", what, len(kids), n)
    roots = set()
    for s in kids:
        c = chain(by_id, s)
        top = c[-1]
        check(root_pred(top), "%s: span %s %s is in a trace rooted at %s %s (pid %s, parent %s); chain %s", what,
              s["name"], s["span_id"], top["name"], top["span_id"], pid_of(top), top["parent_span_id"],
              [(x["name"], x["span_id"], x["attributes"].get("wirespan.stitch.evidence")) for x in c])
        check(all(x["trace_id"] == top["trace_id"] for x in c), "%s: trace ids differ along %s", what,
              [(x["name"], x["trace_id"]) for x in c])
        roots.add(top["span_id"])
    if distinct:
        check(len(roots) == n, "%s: %d distinct roots for %d spans", what, len(roots), n)
    else:
        log("%s: %d distinct roots for %d spans", what, len(roots), n)
    return kids


def test_stitch_multi_host():
    """NATS pub/sub, request/reply, identical concurrent payloads and HTTP
    across three namespaces, one agent each, stitched by the relay."""
    with Env("stitch") as env, Hosts() as hosts:
        backend = Backend(env, "200")
        tel_url = start_nats(env).url  # the telemetry server, root namespace
        relay_err = env.path("relay.err")
        relay = env.spawn([WIRESPAN, "relay", "--nats-url", tel_url, "--endpoint", backend.url, "--stitch",
                           "--stitch-window", "2000", "--batch-delay", "200"], stderr=relay_err, name="wirespan-relay")

        g = Gated(env)
        srv_url = "nats://%s:4222" % hosts.addr("srv")
        http_port = 8080
        g.start(hosts, "srv", "nats-server", [NATS_SERVER, "-a", hosts.addr("srv"), "-p", "4222"])
        sub = g.start(hosts, "sub", "sub", [GO, "--url", srv_url, "--mode", "sub", "--subject", "st.ps", "--count",
                                            3 * N, "--name", "sub", "--timeout", "40s"], 0.5)
        rep = g.start(hosts, "sub", "reply", [GO, "--url", srv_url, "--mode", "reply", "--subject", "st.rr",
                                              "--count", N, "--name", "reply", "--timeout", "40s"], 0.5)
        web = g.start(hosts, "sub", "httpbackend", [PYTHON, HTTP_BACKEND, "--host", hosts.addr("sub"), "--port",
                                                    http_port, "--timeout", 60], 0.5)
        pub = g.start(hosts, "pub", "pub", [GO, "--url", srv_url, "--mode", "pub", "--subject", "st.ps", "--count",
                                            N, "--name", "pub", "--interval", "50ms", "--timeout", "40s"], 2.0)
        # identical payloads at the same time: message k of both is the same
        twins = [g.start(hosts, "pub", "twin%d" % i, [GO, "--url", srv_url, "--mode", "pub", "--subject", "st.ps",
                                                      "--count", N, "--name", "twin%d" % i, "--timeout", "40s"], 2.5)
                 for i in range(2)]
        req = g.start(hosts, "pub", "req", [GO, "--url", srv_url, "--mode", "req", "--subject", "st.rr", "--count",
                                            N, "--name", "req", "--timeout", "40s"], 2.0)
        urls = ["http://%s:%d/r%d" % (hosts.addr("sub"), http_port, i) for i in range(N)]
        curl = g.start(hosts, "pub", "curl", [CURL, "-sS", "--http1.1", "--retry", "20", "--retry-connrefused",
                                              "--retry-delay", "1", "-o", "/dev/null"] + urls, 1.5)

        agents = {h: start_agent(env, h, "host-" + h, tel_url, g.pids(h)) for h in NETS}
        deadline = time.monotonic() + 10
        while "ready" not in relay_err.read_text(errors="replace"):
            check(relay.poll() is None and time.monotonic() < deadline, "relay not ready: %s", tail(relay_err))
            time.sleep(0.05)
        g.open()
        for p in (pub, req, curl) + tuple(twins):
            wait_peer(p, 40)
        for p in (sub, rep):
            wait_peer(p, 20)
        time.sleep(1.0)  # the process spans end, the agents batch
        for h, a in agents.items():
            sigint_wait(a, "agent " + h)
        time.sleep(0.5)
        sigint_wait(relay, "relay", 30)
        m = relay_metrics(relay_err)
        log("relay stitch metrics: %s", json.dumps(m.get("stitch")))
        spans = backend.accepted()
        log("backend: %d spans", len(spans))

        def pidset(*ps):
            return {p.pid for p in ps}

        def is_(s, pids, prefix):
            return pid_of(s) in pids and s["name"].startswith(prefix)

        # pub/sub: each process span of the lone publisher's messages is
        # in its publish span's trace (through the server's hop)
        check_joined(spans, lambda s: is_(s, pidset(pub), "publish "),
                     lambda s: is_(s, pidset(pub), "publish "), "publishes are roots", N)
        consumers = [s for s in spans if is_(s, pidset(sub), "process ")]
        check(len(consumers) == 3 * N, "subscriber: %d process spans of %d", len(consumers), 3 * N)
        by_id = {s["span_id"]: s for s in spans}
        from_pub = [s for s in consumers if is_(chain(by_id, s)[-1], pidset(pub), "publish ")]
        check_joined(spans, lambda s: s in from_pub, lambda s: is_(s, pidset(pub), "publish "),
                     "pub -> sub (3 hosts)", N)
        # Identical payloads from two publishers at once: the server's agent
        # pairs each MSG with the identical PUBs in the order it read them
        # (per subscriber connection), so every twin consumer has its own
        # publish even when both PUBs are read before the first MSG.
        check_joined(spans, lambda s: s in consumers and s not in from_pub,
                     lambda s: is_(s, pidset(*twins), "publish "), "identical payloads -> sub", 2 * N)
        # request/reply: the responder's process span in the requester's trace
        responders = check_joined(spans, lambda s: is_(s, pidset(rep), "process "),
                                  lambda s: is_(s, pidset(req), "send "), "request -> responder", N)
        # the server's hop of each reply: the child of the responder's span
        # (its agent named the reply PUB's derived id), joined at once
        srv_pid = g.procs["srv"][0][1].pid
        for p in responders:
            hops = [s for s in spans if pid_of(s) == srv_pid and s["name"].startswith("deliver ")
                    and s["parent_span_id"] == p["span_id"]]
            check(len(hops) == 1, "reply of %s: %d deliver spans with it as parent; the server's deliver spans "
                  "not under a publish/send/process: %s", p["span_id"], len(hops),
                  [(s["name"], s["parent_span_id"], s["attributes"].get("wirespan.stitch.evidence")) for s in spans
                   if pid_of(s) == srv_pid and s["name"].startswith("deliver ")
                   and by_id.get(s["parent_span_id"], {}).get("kind") not in (3, 4)][:6])
            check(hops[0]["trace_id"] == p["trace_id"], "reply hop %s: trace %s, its responder's %s",
                  hops[0]["span_id"], hops[0]["trace_id"], p["trace_id"])
            check(hops[0]["attributes"].get("wirespan.stitch.evidence") == "nats.reply_id",
                  "reply hop %s: evidence %s", hops[0]["span_id"], hops[0]["attributes"])
        # HTTP: the server's span is the child of the client's
        servers = check_joined(spans, lambda s: pid_of(s) == web.pid and s["kind"] == 2,
                               lambda s: pid_of(s) == curl.pid and s["kind"] == 3, "HTTP client -> server", N)
        for s in servers:
            check(s["attributes"].get("wirespan.stitch.evidence") == "http.conn", "HTTP server span %s: evidence %s",
                  s["span_id"], s["attributes"].get("wirespan.stitch.evidence"))
        st = m["stitch"]
        check(st["joins_http"] == N, "joins_http %s", st["joins_http"])
        check(st["joins_reply"] == N, "joins_reply %s", st)
        check(st["parent_timeouts"] == 0, "spans waited the window for a parent that never came: %s", st)
        check(st["joins_delivery"] + st["joins_fingerprint"] >= 4 * N, "NATS joins %s", st)
        log("identical payloads: %d ambiguous of %d fingerprint joins, %d by the broker's hop",
            st["ambiguous"], st["joins_fingerprint"], st["joins_delivery"])
        stop_process(web)
