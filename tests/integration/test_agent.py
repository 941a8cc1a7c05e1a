# SPDX-License-Identifier: Apache-2.0
"""Integration tests of `wirespan agent --output stdout` (root only).

Each test starts its own nats-server on a free loopback port, its own agent
filtered to that port (`--port P`), and real clients (nats.go, nats.c,
nats.js), each playing one role in its own process
(tests/peers/{go/natsrole,c/natsrole.c,node/natsrole.js}). It then counts the
spans the agent printed: for N operations exactly N spans of each kind, from
the right pid, with the parents and links docs/ARCHITECTURE.md ("NATS spans")
gives.
"""

import collections
import os
import secrets

from harness import (
    NODE,
    ROLE_C_PEER,
    ROLE_GO_PEER,
    ROLE_NODE_PEER,
    Agent,
    Env,
    TestFailure,
    check,
    finish_peer,
    log,
    start_nats,
    start_nats_conf,
    start_peer,
)

PRODUCER, CONSUMER, CLIENT = 4, 5, 3

GO = [ROLE_GO_PEER]
C = [ROLE_C_PEER]
NODEJS = [NODE, ROLE_NODE_PEER]

EXE = {"go": "natsrole-go", "c": "natsrole-c", "node": os.path.basename(os.path.realpath(NODE))}


def peer_cmd(lang, srv, mode, subject, *extra):
    base = {"go": GO, "c": C, "node": NODEJS}[lang]
    return base + ["--url", srv.url, "--mode", mode, "--subject", subject] + [str(x) for x in extra]


# --------------------------------------------------------------------------
# shared checks


def one(spans, what):
    check(len(spans) == 1, "expected exactly one %s, found %d: %s", what, len(spans), spans[:6])
    return spans[0]


def check_names(res, pid, want, who):
    """The spans of pid are exactly want ({name: count})."""
    got = res.names(pid)
    check(got == collections.Counter(want), "%s (pid %s): expected spans %s, got %s\n      all: %s",
          who, pid, dict(want), dict(got), res.summary())


def check_client_identity(spans, peer, name, who):
    for s in spans:
        check(s.a("nats.client.name") == name, "%s: %r has nats.client.name %r, expected %r", who, s, s.a("nats.client.name"), name)
        if peer.get("client_id"):
            check(s.a("messaging.client.id") == peer["client_id"], "%s: %r has messaging.client.id %r, the client's id is %r",
                  who, s, s.a("messaging.client.id"), peer["client_id"])
        check(s.a("messaging.system") == "nats", "%s: %r messaging.system %r", who, s, s.a("messaging.system"))


def check_broker_chain(res, subject, pub_pid, sub_pids, server, n):
    """N publish (pub_pid) -> N deliver (server) -> N process (sub_pids) spans,
    joined by parent ids, with one trace and one fingerprint per message."""
    pubs = res.select(name="publish %s" % subject, pid=pub_pid)
    dlvs = res.select(name="deliver %s" % subject, pid=server.pid)
    procs = [s for s in res.select(name="process %s" % subject) if s.pid in sub_pids]
    check(len(pubs) == n, "expected %d `publish %s` spans from pid %d, got %d; %s", n, subject, pub_pid, len(pubs), res.summary())
    check(len(dlvs) == n, "expected %d `deliver %s` spans from nats-server pid %d, got %d; %s", n, subject, server.pid, len(dlvs), res.summary())
    check(len(procs) == n, "expected %d `process %s` spans from pids %s, got %d; %s", n, subject, sub_pids, len(procs), res.summary())
    for s in pubs + dlvs:
        check(s.kind == PRODUCER, "%r: kind %s, expected PRODUCER (4)", s, s.kind)
    for s in procs:
        check(s.kind == CONSUMER, "%r: kind %s, expected CONSUMER (5)", s, s.kind)
    fps = [s.a("wirespan.message.fingerprint") for s in pubs]
    check(all(fps), "publish spans without wirespan.message.fingerprint: %s", [s for s in pubs if not s.a("wirespan.message.fingerprint")][:3])
    check(len(set(fps)) == n, "the %d messages differ but their publish fingerprints do not: %d distinct", n, len(set(fps)))
    dlv_by_parent = collections.defaultdict(list)
    for d in dlvs:
        dlv_by_parent[d.parent].append(d)
    proc_by_parent = collections.defaultdict(list)
    for p in procs:
        proc_by_parent[p.parent].append(p)
    chains = []
    for pub in pubs:
        ds = dlv_by_parent.get(pub.id, [])
        check(len(ds) == 1, "%r: expected exactly one deliver span with parentSpanId %s, found %d (deliver parents: %s)",
              pub, pub.id, len(ds), sorted(str(d.parent) for d in dlvs)[:6])
        d = ds[0]
        check(d.trace == pub.trace, "deliver %r is in trace %s, its publish %r in %s", d, d.trace, pub, pub.trace)
        check(d.a("wirespan.message.fingerprint") == pub.a("wirespan.message.fingerprint"),
              "fingerprints differ: publish %r vs deliver %r", pub, d)
        ps = proc_by_parent.get(d.id, [])
        if len(ps) != 1:
            same_fp = [p for p in procs if p.a("wirespan.message.fingerprint") == pub.a("wirespan.message.fingerprint")]
            raise TestFailure("deliver %r: expected exactly one process span with parentSpanId %s, found %d; "
                              "process span(s) of the same message: %s (their wirespan.nats.delivery_id: %s)"
                              % (d, d.id, len(ps), same_fp, [p.a("wirespan.nats.delivery_id") for p in same_fp]))
        p = ps[0]
        check(p.trace == pub.trace, "process %r is in trace %s, its publish %r in %s", p, p.trace, pub, pub.trace)
        check(p.a("wirespan.message.fingerprint") == pub.a("wirespan.message.fingerprint"),
              "fingerprints differ: publish %r vs process %r", pub, p)
        check(p.a("wirespan.nats.delivery_id") == d.id, "process %r: wirespan.nats.delivery_id %r != the deliver span's id %s",
              p, p.a("wirespan.nats.delivery_id"), d.id)
        check(d.links == [(pub.trace, pub.id)], "deliver %r: links %s, expected one link to its publish %s/%s", d, d.links, pub.trace, pub.id)
        check(pub.end <= d.end and d.start <= d.end, "deliver %r [%d,%d] vs publish end %d", d, d.start, d.end, pub.end)
        chains.append((pub, d, p))
    return chains


def check_no_secret(res, secret, what):
    """secret must appear nowhere in the agent's stdout or stderr."""
    check(secret and len(secret) >= 8, "test bug: weak %s %r", what, secret)
    b = secret.encode()
    if b in res.stdout:
        i = res.stdout.find(b)
        ctx = res.stdout[max(0, i - 160): i + len(b) + 40].decode("utf-8", "replace")
        raise TestFailure("the %s appears in the agent's stdout (%d time(s)), e.g.: ...%s..." % (what, res.stdout.count(b), ctx))
    if secret in res.stderr:
        i = res.stderr.find(secret)
        raise TestFailure("the %s appears in the agent's stderr: ...%s..." % (what, res.stderr[max(0, i - 160): i + len(secret) + 40]))


# --------------------------------------------------------------------------
# 1, 2: publish / subscribe


def run_pubsub(name, pub_lang, sub_lang, n, size, header=None):
    with Env(name) as env:
        srv = start_nats(env)
        agent = Agent(env, ["--port", srv.port])
        subj = "ws.%s" % name
        sub = start_peer(env, peer_cmd(sub_lang, srv, "sub", subj, "--count", n, "--size", size), "sub-" + sub_lang, ready=True)
        extra = ["--header", header] if header else []
        pub = finish_peer(start_peer(env, peer_cmd(pub_lang, srv, "pub", subj, "--count", n, "--size", size, *extra), "pub-" + pub_lang))
        subr = finish_peer(sub)
        check(subr["received"] == n and subr.get("match", True), "subscriber received %d of %d", subr["received"], n)
        agent.wait_counts({("publish " + subj, pub["_pid"]): n, ("process " + subj, subr["_pid"]): n, ("deliver " + subj, srv.pid): n})
        res = agent.stop()
        res.check_well_formed()
        res.check_metrics()
        chains = check_broker_chain(res, subj, pub["_pid"], {subr["_pid"]}, srv, n)
        # exactly these spans, from these processes
        check_names(res, pub["_pid"], {"publish " + subj: n}, "publisher (%s)" % pub_lang)
        check_names(res, subr["_pid"], {"process " + subj: n}, "subscriber (%s)" % sub_lang)
        check_names(res, srv.pid, {"deliver " + subj: n}, "nats-server")
        check_client_identity(res.by_pid(pub["_pid"]), pub, "wirespan-role-" + pub_lang, "publisher")
        check_client_identity(res.by_pid(subr["_pid"]), subr, "wirespan-role-" + sub_lang, "subscriber")
        # the server's spans describe its connection to the subscriber
        check_client_identity(res.select(pid=srv.pid), subr, "wirespan-role-" + sub_lang, "nats-server (deliver)")
        for pb, d, p in chains:
            for s in (pb, d, p):
                check(s.a("messaging.destination.name") == subj, "%r: messaging.destination.name %r", s, s.a("messaging.destination.name"))
                check(s.a("messaging.message.body.size") == size, "%r: messaging.message.body.size %r, expected %d (payload only)",
                      s, s.a("messaging.message.body.size"), size)
            env_size = pb.a("messaging.message.envelope.size")
            if header:
                check(env_size and env_size > size + len(header), "%r: envelope size %r does not count the header block", pb, env_size)
            check(p.a("messaging.destination.subscription.name") == subj, "%r: subscription name %r", p, p.a("messaging.destination.subscription.name"))
            check(p.a("messaging.consumer.group.name") is None, "%r: consumer group %r without a queue group", p, p.a("messaging.consumer.group.name"))
        return res


def test_agent_pubsub_go_to_c():
    """nats.go PUB -> nats-server -> nats.c MSG: N publish, N deliver, N process spans, chained."""
    run_pubsub("pubsub-go-c", "go", "c", 40, 100)


def test_agent_pubsub_node_to_go():
    """nats.js PUB -> nats.go: N publish, N deliver, N process spans, chained."""
    run_pubsub("pubsub-node-go", "node", "go", 30, 300)


def test_agent_pubsub_headers_go_to_node():
    """nats.go HPUB (a header, no traceparent) -> nats.js HMSG: the same chain, sizes without the header block."""
    run_pubsub("pubsub-hdr-go-node", "go", "node", 30, 200, header="X-Wirespan-Test: hello")


def test_agent_pubsub_headers_node_to_c():
    """nats.js HPUB -> nats.c HMSG."""
    run_pubsub("pubsub-hdr-node-c", "node", "c", 25, 64, header="X-Order: 42")


# --------------------------------------------------------------------------
# 3: queue groups


def test_agent_queue_group():
    """Two subscribers (nats.c, nats.go) in one queue group: N process spans in total, each with the group name."""
    n = 40
    with Env("queue") as env:
        srv = start_nats(env)
        agent = Agent(env, ["--port", srv.port])
        subj, q = "ws.queue.jobs", "workers"
        stop = env.path("stop")
        subs = [
            start_peer(env, peer_cmd(lang, srv, "sub", subj, "--queue", q, "--count", n, "--stop-file", stop), "qsub-" + lang, ready=True)
            for lang in ("c", "go")
        ]
        pub = finish_peer(start_peer(env, peer_cmd("node", srv, "pub", subj, "--count", n, "--size", 80), "pub-node"))
        # the queue members do not know their share: wait for all N deliveries
        ok = agent.wait_counts({("deliver " + subj, srv.pid): n}, timeout=15)
        stop.write_text("stop")
        results = [finish_peer(p) for p in subs]
        got = sum(r["received"] for r in results)
        check(got == n, "the queue group received %d messages of %d (per member: %s); agent saw all deliveries: %s",
              got, n, [r["received"] for r in results], ok)
        pids = {r["_pid"] for r in results}
        agent.wait_for(lambda spans: sum(1 for s in spans if s.name == "process " + subj) >= n, 10)
        res = agent.stop()
        res.check_well_formed()
        res.check_metrics()
        check_broker_chain(res, subj, pub["_pid"], pids, srv, n)
        for r in results:
            procs = res.select(name="process " + subj, pid=r["_pid"])
            check(len(procs) == r["received"], "queue member %s (pid %d) received %d messages but has %d process spans",
                  r["peer"], r["_pid"], r["received"], len(procs))
            for p in procs:
                check(p.a("messaging.consumer.group.name") == q, "%r: messaging.consumer.group.name %r, expected %r",
                      p, p.a("messaging.consumer.group.name"), q)
                check(p.a("messaging.destination.subscription.name") == subj, "%r: subscription %r", p, p.a("messaging.destination.subscription.name"))
            check_names(res, r["_pid"], {"process " + subj: r["received"]} if r["received"] else {}, "queue member " + r["peer"])


# --------------------------------------------------------------------------
# 4, 5: request-reply


def check_request_reply(res, subj, requester, responder_pid, n, who):
    sends = res.select(name="send " + subj, pid=requester["_pid"])
    check(len(sends) == n, "%s: expected %d `send %s` spans from pid %d, got %d; %s", who, n, subj, requester["_pid"], len(sends), res.summary())
    procs = res.select(name="process " + subj, pid=responder_pid)
    early = []
    by_parent = collections.defaultdict(list)
    for p in procs:
        by_parent[p.parent].append(p)
    for s in sends:
        check(s.kind == CLIENT, "%s: %r kind %s, expected CLIENT (3)", who, s, s.kind)
        check(not s.status or s.status.get("code", 0) == 0, "%s: %r has status %s", who, s, s.status)
        inbox = s.a("nats.reply_to") or ""
        check(inbox.startswith("_INBOX."), "%s: %r: nats.reply_to %r is not an inbox", who, s, inbox)
        ps = by_parent.get(s.id, [])
        check(len(ps) == 1, "%s: %r: expected exactly one responder process span with parentSpanId %s, found %d (responder spans: %s)",
              who, s, s.id, len(ps), procs[:4])
        p = ps[0]
        check(p.trace == s.trace, "%s: process %r in trace %s, its request %r in %s", who, p, p.trace, s, s.trace)
        check(p.a("nats.reply_to") == inbox, "%s: %r: nats.reply_to %r, the request's is %r", who, p, p.a("nats.reply_to"), inbox)
        # The reply ends the process span and makes no span of its own, unless
        # the span had already ended at the reading thread's next read (the
        # rules allow that); then the reply is a `publish _INBOX.*` span.
        if p.a("nats.reply.sent") is not True:
            early.append(p)
        check(s.start <= p.start, "%s: process %r starts at %d, before its request %r (%d)", who, p, p.start, s, s.start)
        check(p.end <= s.end, "%s: the responder's process span %r ends at %d, %d ns after the requester's send span %r (%d)",
              who, p, p.end, p.end - s.end, s, s.end)
    replies = collections.Counter(x.a("messaging.destination.name") for x in res.select(name="publish _INBOX.*", pid=responder_pid))
    for p in early:
        check(p.a("wirespan.end") is None, "%s: %r ended by %r, not by its reply or a read", who, p, p.a("wirespan.end"))
        check(replies[p.a("nats.reply_to")] == 1, "%s: %r did not end at its reply (no nats.reply.sent) and there is no "
              "`publish _INBOX.*` span for its reply to %s", who, p, p.a("nats.reply_to"))
    log("%s: %d of %d responder process spans ended before the reply", who, len(early), len(sends))
    return sends, len(early)


def check_responder_names(res, pid, subj, n, early, who):
    want = {"process " + subj: n}
    if early:
        want["publish _INBOX.*"] = early
    check_names(res, pid, want, who)
    check(not res.select(name="process _INBOX.*"), "replies read by a requester made process spans: %s", res.select(name="process _INBOX.*")[:3])


def test_agent_request_reply_muxed():
    """nats.go and nats.js requests (muxed _INBOX.<nuid>.*) to a nats.c responder: N send, N process children."""
    n = 20
    with Env("reqrep-muxed") as env:
        srv = start_nats(env)
        agent = Agent(env, ["--port", srv.port])
        subj = "ws.svc.muxed"
        rsp = start_peer(env, peer_cmd("c", srv, "reply", subj, "--count", 2 * n), "reply-c", ready=True)
        reqs = [start_peer(env, peer_cmd(lang, srv, "req", subj, "--count", n, "--size", 40), "req-" + lang) for lang in ("go", "node")]
        reqs = [finish_peer(p) for p in reqs]
        rspr = finish_peer(rsp)
        check(rspr["served"] == 2 * n, "responder served %d of %d", rspr["served"], 2 * n)
        agent.wait_counts({("send " + subj, r["_pid"]): n for r in reqs})
        agent.wait_counts({("process " + subj, rspr["_pid"]): 2 * n})
        res = agent.stop()
        res.check_well_formed()
        res.check_metrics()
        early = 0
        for r in reqs:
            sends, e = check_request_reply(res, subj, r, rspr["_pid"], n, "%s muxed" % r["peer"])
            early += e
            inboxes = {s.a("nats.reply_to").rsplit(".", 1)[0] for s in sends}
            check(len(inboxes) == 1, "%s: muxed requests should share one inbox prefix, got %s", r["peer"], sorted(inboxes)[:4])
            check_names(res, r["_pid"], {"send " + subj: n}, "requester " + r["peer"])
        check_responder_names(res, rspr["_pid"], subj, 2 * n, early, "responder (c)")


def test_agent_request_reply_old_style():
    """Old-style requests (one _INBOX.<nuid> per request: nats.go UseOldRequestStyle, nats.c UseOldRequestStyle) to a nats.js responder."""
    n = 15
    with Env("reqrep-old") as env:
        srv = start_nats(env)
        agent = Agent(env, ["--port", srv.port])
        subj = "ws.svc.old"
        rsp = start_peer(env, peer_cmd("node", srv, "reply", subj, "--count", 2 * n), "reply-node", ready=True)
        reqs = [start_peer(env, peer_cmd(lang, srv, "req", subj, "--count", n, "--size", 24, "--old-style"), "req-" + lang) for lang in ("go", "c")]
        reqs = [finish_peer(p) for p in reqs]
        rspr = finish_peer(rsp)
        check(rspr["served"] == 2 * n, "responder served %d of %d", rspr["served"], 2 * n)
        agent.wait_counts({("send " + subj, r["_pid"]): n for r in reqs})
        agent.wait_counts({("process " + subj, rspr["_pid"]): 2 * n})
        res = agent.stop()
        res.check_well_formed()
        res.check_metrics()
        early = 0
        for r in reqs:
            sends, e = check_request_reply(res, subj, r, rspr["_pid"], n, "%s old-style" % r["peer"])
            early += e
            inboxes = {s.a("nats.reply_to") for s in sends}
            check(len(inboxes) == n and all(i.count(".") == 1 for i in inboxes),
                  "%s: old-style requests should each use their own _INBOX.<nuid>: %s", r["peer"], sorted(inboxes)[:4])
            check_names(res, r["_pid"], {"send " + subj: n}, "requester " + r["peer"])
        check_responder_names(res, rspr["_pid"], subj, 2 * n, early, "responder (node)")


def test_agent_request_reply_under_load():
    """3 x 1500 concurrent nats.go requests to a nats.c responder: every process span is still the child of its send span and ends first."""
    n, k = 1500, 3
    with Env("reqrep-load") as env:
        srv = start_nats(env)
        agent = Agent(env, ["--port", srv.port])
        subj = "ws.svc.load"
        rsp = start_peer(env, peer_cmd("c", srv, "reply", subj, "--count", n * k), "reply-c", ready=True)
        reqs = [start_peer(env, peer_cmd("go", srv, "req", subj, "--count", n, "--size", 16), "req-go") for _ in range(k)]
        reqs = [finish_peer(p, timeout=90) for p in reqs]
        rspr = finish_peer(rsp)
        want = {("send " + subj, r["_pid"]): n for r in reqs}
        want[("process " + subj, rspr["_pid"])] = n * k
        agent.wait_counts(want, timeout=30)
        res = agent.stop()
        res.check_well_formed()
        res.check_metrics()
        for r in reqs:
            check_names(res, r["_pid"], {"send " + subj: n}, "requester (go)")
        # Say how many requests break the rules, with one example of each kind.
        sends = [s for r in reqs for s in res.select(name="send " + subj, pid=r["_pid"])]
        procs = {p.a("nats.reply_to"): p for p in res.select(name="process " + subj, pid=rspr["_pid"])}
        ids = {s.id: s for s in res.spans}
        bad = collections.defaultdict(list)
        for s in sends:
            p = procs.get(s.a("nats.reply_to"))
            if p is None:
                bad["no process span"].append((s, None))
                continue
            if p.parent != s.id:
                par = ids.get(p.parent)
                bad["process parent is `%s`, not the send span" % (par.name if par else p.parent)].append((s, p))
            if p.end > s.end:
                bad["process ends after the send span"].append((s, p))
            if p.start < s.start:
                bad["process starts before the send span"].append((s, p))
        if bad:
            raise TestFailure("%d requests: %s" % (n * k, "; ".join(
                "%s: %d time(s), e.g. send %s [%d, %d] / process %s [%d, %d] parent %s" % (
                    what, len(v), v[0][0].id, v[0][0].start, v[0][0].end, v[0][1] and v[0][1].id, v[0][1] and v[0][1].start,
                    v[0][1] and v[0][1].end, v[0][1] and v[0][1].parent) for what, v in sorted(bad.items()))))
        for r in reqs:
            check_request_reply(res, subj, r, rspr["_pid"], n, "go x%d" % n)


def test_agent_no_responders():
    """A request nobody subscribes to: one send span, status ERROR (2), error.type=no_responders."""
    with Env("noresp") as env:
        srv = start_nats(env)
        agent = Agent(env, ["--port", srv.port])
        subj = "ws.nobody.home"
        r = finish_peer(start_peer(env, peer_cmd("go", srv, "req", subj, "--expect", "no_responders"), "req-go"))
        agent.wait_counts({("send " + subj, r["_pid"]): 1}, timeout=10)
        res = agent.stop()
        res.check_well_formed()
        res.check_metrics()
        s = one(res.select(name="send " + subj), "`send %s` span; %s" % (subj, res.summary()))
        check(s.pid == r["_pid"] and s.kind == CLIENT, "%r: pid/kind", s)
        check(s.status.get("code") == 2, "%r: status %s, expected code 2 (ERROR)", s, s.status)
        check(s.a("error.type") == "no_responders", "%r: error.type %r, expected 'no_responders'", s, s.a("error.type"))
        check_names(res, r["_pid"], {"send " + subj: 1}, "requester")
        check(not res.select(name="process " + subj), "process spans for a subject without subscribers: %s", res.select(name="process " + subj))


def test_agent_old_style_requests_many():
    """More old-style requests on one connection than the agent keeps subscriptions (4096): every one is still a `send` span."""
    n = 4150
    with Env("reqrep-old-many") as env:
        srv = start_nats(env)
        agent = Agent(env, ["--port", srv.port])
        subj = "ws.svc.oldmany"
        rsp = start_peer(env, peer_cmd("c", srv, "reply", subj, "--count", n), "reply-c", ready=True)
        r = finish_peer(start_peer(env, peer_cmd("go", srv, "req", subj, "--count", n, "--size", 8, "--old-style"), "req-go"), timeout=90)
        rspr = finish_peer(rsp)
        agent.wait_counts({("process " + subj, rspr["_pid"]): n}, timeout=30)
        res = agent.stop()
        res.check_well_formed()
        names = res.names(r["_pid"])
        check(names == collections.Counter({"send " + subj: n}),
              "requester made %d old-style requests (each: SUB _INBOX.<nuid>, UNSUB <sid> 1, PUB %s _INBOX.<nuid>): expected %d `send %s` spans, "
              "got %s; agent_metrics.nats.subs_dropped=%s", n, subj, n, subj, dict(names), res.agent_metrics["nats"].get("subs_dropped"))
        check_request_reply(res, subj, r, rspr["_pid"], n, "go old-style x%d" % n)
        res.check_metrics()


# --------------------------------------------------------------------------
# 6: traceparent from the client


def test_agent_traceparent_from_client():
    """nats.js and nats.go publish with a W3C traceparent: publish spans continue that trace under that parent."""
    n = 10
    with Env("traceparent") as env:
        srv = start_nats(env)
        agent = Agent(env, ["--port", srv.port])
        cases = []
        for pub_lang, sub_lang in (("node", "go"), ("go", "c")):
            subj = "ws.tp.%s" % pub_lang
            sub = start_peer(env, peer_cmd(sub_lang, srv, "sub", subj, "--count", n), "sub-" + sub_lang, ready=True)
            pub = finish_peer(start_peer(env, peer_cmd(pub_lang, srv, "pub", subj, "--count", n, "--size", 50, "--traceparent"), "pub-" + pub_lang))
            cases.append((subj, pub, finish_peer(sub)))
        for subj, pub, sub in cases:
            agent.wait_counts({("publish " + subj, pub["_pid"]): n, ("process " + subj, sub["_pid"]): n, ("deliver " + subj, srv.pid): n})
        res = agent.stop()
        res.check_well_formed()
        res.check_metrics()
        for subj, pub, sub in cases:
            tps = pub["traceparents"]
            check(len(tps) == n, "peer reported %d traceparents", len(tps))
            chains = check_broker_chain(res, subj, pub["_pid"], {sub["_pid"]}, srv, n)
            by_trace = {}
            for pb, d, p in chains:
                by_trace[pb.trace] = (pb, d, p)
            for tp in tps:
                _, trace, parent, _ = tp.split("-")
                check(trace in by_trace, "%s publisher: no publish span in trace %s (traceparent %s); publish traces: %s",
                      pub["peer"], trace, tp, sorted(by_trace)[:4])
                pb, d, p = by_trace[trace]
                check(pb.parent == parent, "%s publisher: %r: parentSpanId %s, the traceparent's span is %s", pub["peer"], pb, pb.parent, parent)
                check(p.trace == trace and d.trace == trace, "trace %s not kept downstream: deliver %s, process %s", trace, d.trace, p.trace)
                check((trace, parent) in p.links, "process %r: the traceparent %s should be kept as a link (it has a parent); links %s",
                      p, tp, p.links)


# --------------------------------------------------------------------------
# 7: JetStream


def test_agent_jetstream():
    """nats.go JetStream: STREAM.CREATE, N js.Publish, Fetch(1) pulls, ack, one nak and its redelivery."""
    n, nak_seq = 6, 3
    with Env("jetstream") as env:
        srv = start_nats(env, jetstream=True)
        agent = Agent(env, ["--port", srv.port])
        subj, stream, durable = "wsorders.new", "WSORDERS", "worker"
        r = finish_peer(start_peer(env, peer_cmd("go", srv, "js", subj, "--count", n, "--size", 32, "--stream", stream,
                                                 "--durable", durable, "--nak-seq", nak_seq), "js-go"), timeout=60)
        pid = r["_pid"]
        deliveries = r["js_deliveries"]
        check(len(deliveries) == n + 1, "peer: %d deliveries, expected %d: %s", len(deliveries), n + 1, deliveries)
        agent.wait_counts({("publish " + subj, pid): n, ("process " + subj, pid): n + 1, ("ack " + stream, pid): n,
                           ("nak " + stream, pid): 1, ("receive " + stream, pid): n + 1}, timeout=15)
        res = agent.stop()
        res.check_well_formed()
        res.check_metrics()
        names = res.names(pid)
        log("js spans of the peer: %s", dict(names))

        sc = one(res.select(name="STREAM.CREATE", pid=pid), "STREAM.CREATE span; peer spans: %s" % dict(names))
        check(sc.kind == CLIENT, "%r: kind %s", sc, sc.kind)
        check(sc.a("nats.jetstream.stream") == stream, "%r: nats.jetstream.stream %r", sc, sc.a("nats.jetstream.stream"))
        check(not sc.status or sc.status.get("code", 0) == 0, "%r: status %s", sc, sc.status)
        # nats.go 1.22: AddStream; Publish x n; PullSubscribe = CONSUMER.INFO
        # (not found) + CONSUMER.CREATE; Fetch(1) x (n+1); ack x n; nak x 1
        check_names(res, pid, {"STREAM.CREATE": 1, "publish " + subj: n, "CONSUMER.INFO": 1, "CONSUMER.CREATE": 1,
                               "receive " + stream: n + 1, "process " + subj: n + 1, "ack " + stream: n, "nak " + stream: 1},
                    "JetStream client (go)")
        for s in res.select(pid=pid):
            if s.name.startswith(("STREAM.", "CONSUMER.")):
                check(s.kind == CLIENT and s.a("nats.jetstream.api") == s.name, "%r: kind %s nats.jetstream.api %r", s, s.kind, s.a("nats.jetstream.api"))

        pubs = res.select(name="publish " + subj, pid=pid)
        check(len(pubs) == n, "expected %d `publish %s` spans, got %d: %s", n, subj, len(pubs), dict(names))
        seqs = sorted(p.a("nats.jetstream.sequence.stream") for p in pubs)
        check(seqs == sorted(r["js_pub_seqs"]), "publish spans carry sequences %s, the PubAcks said %s", seqs, r["js_pub_seqs"])
        for p in pubs:
            check(p.kind == PRODUCER, "%r: kind %s, expected PRODUCER", p, p.kind)
            check(p.a("nats.jetstream.stream") == stream, "%r: nats.jetstream.stream %r", p, p.a("nats.jetstream.stream"))
        check(names["send " + subj] == 0, "js.Publish left `send` spans: %s", dict(names))

        # the server's hop of each delivery (n first deliveries + 1 redelivery)
        pub_by_fp = {p.a("wirespan.message.fingerprint"): p for p in pubs}
        check(len(pub_by_fp) == n, "the %d published messages differ but have %d fingerprints", n, len(pub_by_fp))
        dlvs = res.select(name="deliver " + subj, pid=srv.pid)
        check(len(dlvs) == n + 1, "expected %d `deliver %s` spans from nats-server (n deliveries + 1 redelivery), got %d", n + 1, subj, len(dlvs))
        for d in dlvs:
            p = pub_by_fp.get(d.a("wirespan.message.fingerprint"))
            check(p is not None and d.parent == p.id and d.trace == p.trace, "%r: expected the child of the publish span of the same message %r", d, p)

        pulls = res.select(name="receive " + stream, pid=pid)
        check(len(pulls) == n + 1, "expected %d `receive %s` spans (one Fetch(1) per delivery), got %d", n + 1, stream, len(pulls))
        pull_ids = {p.id: p for p in pulls}
        for p in pulls:
            check(p.kind == CLIENT, "%r: kind %s", p, p.kind)
            check(p.a("nats.jetstream.consumer") == durable, "%r: consumer %r", p, p.a("nats.jetstream.consumer"))

        procs = res.select(name="process " + subj, pid=pid)
        check(len(procs) == n + 1, "expected %d `process %s` spans, got %d", n + 1, subj, len(procs))
        proc_by_reply = {}
        used_pulls = set()
        for p in procs:
            for k in ("nats.jetstream.stream", "nats.jetstream.consumer", "nats.jetstream.sequence.stream",
                      "nats.jetstream.sequence.consumer", "messaging.message.delivery_count"):
                check(p.a(k) is not None, "%r: no %s", p, k)
            check(p.a("nats.jetstream.stream") == stream and p.a("nats.jetstream.consumer") == durable, "%r: stream/consumer %r/%r",
                  p, p.a("nats.jetstream.stream"), p.a("nats.jetstream.consumer"))
            check(p.parent in pull_ids, "%r: parent %s is not one of the pull (receive) spans", p, p.parent)
            check(p.trace == pull_ids[p.parent].trace, "%r: not in its pull's trace", p)
            used_pulls.add(p.parent)
            proc_by_reply[p.a("nats.reply_to")] = p
        check(len(used_pulls) == n + 1, "each Fetch(1) pull should parent one delivery; %d pulls parent %d deliveries", n + 1, len(used_pulls))
        for d in deliveries:
            p = proc_by_reply.get(d["reply"])
            check(p is not None, "no process span with nats.reply_to %s (delivery %s)", d["reply"], d)
            check(p.a("nats.jetstream.sequence.stream") == d["stream_seq"], "%r: stream sequence %r, delivery %s", p, p.a("nats.jetstream.sequence.stream"), d)
            check(p.a("messaging.message.delivery_count") == d["delivered"], "%r: delivery_count %r, the client saw %d", p,
                  p.a("messaging.message.delivery_count"), d["delivered"])
            if d["delivered"] > 1:
                check(p.a("nats.jetstream.redelivered") is True, "%r: a redelivery without nats.jetstream.redelivered", p)
            else:
                check(p.a("nats.jetstream.redelivered") is None, "%r: nats.jetstream.redelivered on a first delivery", p)
        red = [d for d in deliveries if d["stream_seq"] == nak_seq]
        check([d["delivered"] for d in red] == [1, 2] and [d["action"] for d in red] == ["nak", "ack"],
              "sequence %d: the client saw deliveries %s", nak_seq, red)

        for op, want in (("ack", n), ("nak", 1)):
            settles = res.select(name="%s %s" % (op, stream), pid=pid)
            check(len(settles) == want, "expected %d `%s %s` spans, got %d; %s", want, op, stream, len(settles), dict(names))
            for s in settles:
                check(s.kind == CLIENT, "%r: kind %s", s, s.kind)
                subj_ack = s.a("nats.jetstream.ack_subject")
                p = proc_by_reply.get(subj_ack)
                check(p is not None, "%r: settles %s, which no process span has as nats.reply_to", s, subj_ack)
                check(s.links == [(p.trace, p.id)], "%r: links %s, expected one link to its delivery %r", s, s.links, p)
                check(s.parent == p.id and s.trace == p.trace, "%r: parent %s/%s, expected its delivery %r", s, s.trace, s.parent, p)
                want_action = [d["action"] for d in deliveries if d["reply"] == subj_ack]
                check(want_action == [op], "%r: the client did %s on %s", s, want_action, subj_ack)


# --------------------------------------------------------------------------
# 8: identity and secrets


def auth_pubsub(env, srv, agent, tag, pub_args, sub_args, pub_env=None, sub_env=None, n=5):
    subj = "ws.auth." + tag
    sub = start_peer(env, GO + ["--url", srv.url, "--mode", "sub", "--subject", subj, "--count", n] + sub_args,
                     "sub-go", ready=True, env_vars=sub_env)
    pub = finish_peer(start_peer(env, GO + ["--url", srv.url, "--mode", "pub", "--subject", subj, "--count", n] + pub_args,
                                 "pub-go", env_vars=pub_env))
    subr = finish_peer(sub)
    agent.wait_counts({("publish " + subj, pub["_pid"]): n, ("process " + subj, subr["_pid"]): n})
    return subj, pub, subr


def test_agent_identity_user_password():
    """users with passwords: spans carry nats.user; no password anywhere in the agent's output."""
    pw_a, pw_b = "pw-A-" + secrets.token_hex(12), "pw-B-" + secrets.token_hex(12)
    with Env("auth-user") as env:
        conf = 'authorization { users = [ {user: "alice", password: "%s"}, {user: "bob", password: "%s"} ] }' % (pw_a, pw_b)
        srv = start_nats_conf(env, conf)
        agent = Agent(env, ["--port", srv.port])
        subj, pub, sub = auth_pubsub(env, srv, agent, "user", ["--user-env"], ["--user-env"],
                                     {"NATS_TEST_USER": "alice", "NATS_TEST_PASS": pw_a},
                                     {"NATS_TEST_USER": "bob", "NATS_TEST_PASS": pw_b})
        res = agent.stop()
        res.check_well_formed()
        res.check_metrics()
        check_no_secret(res, pw_a, "password of alice")
        check_no_secret(res, pw_b, "password of bob")
        for who, r, user in (("publisher", pub, "alice"), ("subscriber", sub, "bob")):
            spans = res.by_pid(r["_pid"])
            check(spans, "no spans from the %s; %s", who, res.summary())
            for s in spans:
                check(s.a("nats.user") == user, "%s %r: nats.user %r, expected %r", who, s, s.a("nats.user"), user)
                check(s.a("nats.nkey") is None, "%s %r: nats.nkey %r", who, s, s.a("nats.nkey"))
        check_broker_chain(res, subj, pub["_pid"], {sub["_pid"]}, srv, 5)


def test_agent_identity_nkey():
    """nkey users: spans carry nats.nkey = the public key; the seed and the nonce signature appear nowhere."""
    with Env("auth-nkey") as env:
        keys = []
        for who in ("pub", "sub"):
            seed = env.path("%s.nk" % who)
            r = finish_peer(start_peer(env, GO + ["--mode", "nkeygen", "--seed-out", seed], "nkeygen"))
            s = seed.read_text().strip()
            check(s.startswith("SU") and r["nkey"].startswith("U"), "nkeygen: seed %s... public %r", s[:2], r["nkey"])
            keys.append((seed, s, r["nkey"]))
        conf = "authorization { users = [ {nkey: %s}, {nkey: %s} ] }" % (keys[0][2], keys[1][2])
        srv = start_nats_conf(env, conf)
        agent = Agent(env, ["--port", srv.port])
        subj, pub, sub = auth_pubsub(env, srv, agent, "nkey", ["--nkey-seed", keys[0][0]], ["--nkey-seed", keys[1][0]])
        res = agent.stop()
        res.check_well_formed()
        res.check_metrics()
        for (seedf, seed, public), r, who in zip(keys, (pub, sub), ("publisher", "subscriber")):
            check(r.get("nkey") == public, "%s used nkey %r", who, r.get("nkey"))
            check(r.get("sigs"), "%s: the client signed no nonce (did the server ask?)", who)
            check_no_secret(res, seed, "nkey seed of the %s" % who)
            for sig in r["sigs"]:
                check_no_secret(res, sig, "nonce signature (CONNECT sig) of the %s" % who)
            spans = res.by_pid(r["_pid"])
            check(spans, "no spans from the %s; %s", who, res.summary())
            for s in spans:
                check(s.a("nats.nkey") == public, "%s %r: nats.nkey %r, expected %s", who, s, s.a("nats.nkey"), public)
                check(s.a("nats.user") is None, "%s %r: nats.user %r", who, s, s.a("nats.user"))
        check_broker_chain(res, subj, pub["_pid"], {sub["_pid"]}, srv, 5)


def test_agent_identity_token():
    """token auth: the auth_token appears nowhere; no nats.user/nats.nkey."""
    tok = "tok-" + secrets.token_hex(16)
    with Env("auth-token") as env:
        srv = start_nats_conf(env, 'authorization { token: "%s" }' % tok)
        agent = Agent(env, ["--port", srv.port])
        e = {"NATS_TEST_TOKEN": tok}
        subj, pub, sub = auth_pubsub(env, srv, agent, "token", ["--token-env"], ["--token-env"], e, e)
        res = agent.stop()
        res.check_well_formed()
        res.check_metrics()
        check_no_secret(res, tok, "auth token")
        for r in (pub, sub):
            for s in res.by_pid(r["_pid"]):
                check(s.a("nats.user") is None and s.a("nats.nkey") is None, "%r: nats.user %r nats.nkey %r", s, s.a("nats.user"), s.a("nats.nkey"))
        check_broker_chain(res, subj, pub["_pid"], {sub["_pid"]}, srv, 5)


def test_agent_no_secret_from_url_credentials():
    """Credentials in the client's URL (nats://user:pass@host, a common way to pass them): nats.user is kept, the password appears nowhere."""
    pw = "urlpw-" + secrets.token_hex(12)
    with Env("auth-url") as env:
        srv = start_nats_conf(env, 'authorization { users = [ {user: "carol", password: "%s"} ] }' % pw)
        agent = Agent(env, ["--port", srv.port])
        url = "nats://carol:%s@%s:%d" % (pw, srv.host, srv.port)
        subj = "ws.auth.url"
        # --linger: the process is still there when the agent reads /proc
        pub = finish_peer(start_peer(env, GO + ["--url", url, "--mode", "pub", "--subject", subj, "--count", 3, "--linger", "1s"], "pub-go"))
        agent.wait_counts({("publish " + subj, pub["_pid"]): 3})
        res = agent.stop()
        res.check_well_formed()
        res.check_metrics()
        spans = res.by_pid(pub["_pid"])
        check(len(spans) == 3 and all(s.a("nats.user") == "carol" for s in spans), "publisher spans: %s", spans)
        check_no_secret(res, pw, "password given in the client's URL")


# --------------------------------------------------------------------------
# 9: the process resource


def test_agent_process_resources():
    """Publishers in three processes (nats.go, nats.c, nats.js): each span's resource is its own process."""
    n = 5
    with Env("resources") as env:
        srv = start_nats(env)
        agent = Agent(env, ["--port", srv.port])
        # --linger: the processes are still there when the agent reads /proc
        linger = {"go": "1s", "c": 1000, "node": 1000}
        procs = [start_peer(env, peer_cmd(lang, srv, "pub", "ws.res." + lang, "--count", n, "--linger", linger[lang]), "pub-" + lang)
                 for lang in ("go", "c", "node")]
        results = dict(zip(("go", "c", "node"), (finish_peer(p) for p in procs)))
        agent.wait_counts({("publish ws.res." + lang, r["_pid"]): n for lang, r in results.items()})
        res = agent.stop()
        res.check_well_formed()
        res.check_metrics()
        resources = {}
        for lang, r in results.items():
            spans = res.select(name="publish ws.res." + lang)
            check(len(spans) == n, "%s: expected %d publish spans, got %d; %s", lang, n, len(spans), res.summary())
            for s in spans:
                check(s.pid == r["_pid"], "%s publisher (pid %d): %r has process.pid %r", lang, r["_pid"], s, s.pid)
                check(s.exe == EXE[lang], "%s publisher: %r has process.executable.name %r, expected %r", lang, s, s.exe, EXE[lang])
                check((s.resource.get("process.executable.path") or "").endswith("/" + EXE[lang]), "%s: executable path %r (resource %s)",
                      lang, s.resource.get("process.executable.path"), s.resource)
            keys = {s.res_key for s in spans}
            check(len(keys) == 1, "%s publisher: its spans carry %d different resources", lang, len(keys))
            resources[lang] = keys.pop()
        check(len(set(resources.values())) == 3, "three processes, but only %d distinct resources", len(set(resources.values())))
        for s in res.select(pid=srv.pid):
            check(s.exe == "nats-server", "%r: nats-server's span has process.executable.name %r", s, s.exe)
        other = [s for s in res.spans if s.pid not in {r["_pid"] for r in results.values()} | {srv.pid}]
        check(not other, "spans from unexpected processes: %s", other[:5])


# --------------------------------------------------------------------------
# beyond one hop: traces that continue through a process, and reply hops


def test_agent_forward_keeps_trace():
    """A nats.js handler republishes what it receives: publish(out) is the child of process(in), and the out hop stays in that trace."""
    n = 5
    with Env("forward") as env:
        srv = start_nats(env)
        agent = Agent(env, ["--port", srv.port])
        sin, sout = "ws.fwd.in", "ws.fwd.out"
        sink = start_peer(env, peer_cmd("c", srv, "sub", sout, "--count", n), "sub-c", ready=True)
        fwd = start_peer(env, peer_cmd("node", srv, "sub", sin, "--count", n, "--forward-to", sout), "fwd-node", ready=True)
        # one message per read, so each process span holds one message
        pub = finish_peer(start_peer(env, peer_cmd("go", srv, "pub", sin, "--count", n, "--interval", "100ms"), "pub-go"))
        fwdr, sinkr = finish_peer(fwd), finish_peer(sink)
        check(fwdr["received"] == n and fwdr["published"] == n and sinkr["received"] == n, "forwarder %s, sink %s", fwdr, sinkr)
        agent.wait_counts({("publish " + sin, pub["_pid"]): n, ("process " + sin, fwdr["_pid"]): n, ("publish " + sout, fwdr["_pid"]): n,
                           ("deliver " + sout, srv.pid): n, ("process " + sout, sinkr["_pid"]): n})
        res = agent.stop()
        res.check_well_formed()
        res.check_metrics()
        hop1 = check_broker_chain(res, sin, pub["_pid"], {fwdr["_pid"]}, srv, n)
        proc_in = {p.id: (pb, p) for pb, d, p in hop1}
        outs = res.select(name="publish " + sout, pid=fwdr["_pid"])
        check(len(outs) == n, "expected %d `publish %s` spans from the forwarder, got %d", n, sout, len(outs))
        check(len({o.parent for o in outs}) == n, "the %d forwards share parents: %s", n, [o.parent for o in outs])
        for o in outs:
            check(o.parent in proc_in, "forward %r: its parent %s is not one of the forwarder's `process %s` spans", o, o.parent, sin)
            pb, p = proc_in[o.parent]
            check(o.trace == p.trace == pb.trace, "forward %r: trace %s, the message it forwards is in trace %s", o, o.trace, p.trace)
        hop2 = check_broker_chain(res, sout, fwdr["_pid"], {sinkr["_pid"]}, srv, n)
        for pb, d, p in hop2:
            check(p.trace == proc_in[pb.parent][0].trace, "the sink's %r is not in the original publish's trace", p)


def test_agent_reply_hop_parents_resolve():
    """Request-reply seen whole on one host: the server's `deliver _INBOX.*` spans name printed parents in the request's trace."""
    n = 5
    with Env("reply-hop") as env:
        srv = start_nats(env)
        agent = Agent(env, ["--port", srv.port])
        subj = "ws.svc.hop"
        rsp = start_peer(env, peer_cmd("c", srv, "reply", subj, "--count", n), "reply-c", ready=True)
        r = finish_peer(start_peer(env, peer_cmd("go", srv, "req", subj, "--count", n), "req-go"))
        rspr = finish_peer(rsp)
        agent.wait_counts({("send " + subj, r["_pid"]): n, ("process " + subj, rspr["_pid"]): n, ("deliver _INBOX.*", srv.pid): n})
        res = agent.stop()
        res.check_well_formed()
        res.check_metrics()
        sends, _ = check_request_reply(res, subj, r, rspr["_pid"], n, "go")
        by_id = {s.id: s for s in res.spans}
        by_inbox = {s.a("nats.reply_to"): s for s in sends}
        hops = res.select(name="deliver _INBOX.*", pid=srv.pid)
        check(len(hops) == n, "expected %d `deliver _INBOX.*` spans, got %d", n, len(hops))
        for h in hops:
            s = by_inbox.get(h.a("messaging.destination.name"))
            check(s is not None, "%r: delivers to %r, which is no request's inbox", h, h.a("messaging.destination.name"))
            check(h.parent in by_id, "the reply's broker hop %r names parent %s, but no span with that id was printed "
                  "(the responder's reply PUB makes no span of its own); its request %r is in trace %s, the hop in %s",
                  h, h.parent, s, s.trace, h.trace)
            check(h.trace == s.trace, "the reply's broker hop %r is in trace %s, its request %r in %s", h, h.trace, s, s.trace)
