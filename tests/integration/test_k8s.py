# SPDX-License-Identifier: Apache-2.0
"""Kubernetes identity of real processes (root only).

There is no cluster here, so the test builds what a kubelet node would show
the agent: real cgroups in the cgroup2 hierarchy with kubepods systemd-slice
names (kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>
.slice/cri-containerd-<id>.scope), real NATS processes moved into them
before they exec (their cgroup.procs), and a fake API server
(tests/peers/py/fake_apiserver.py) serving the pods of tests/fixtures/k8s/
and the pods recorded from real clusters in tests/fixtures/k8s/recorded/
(moved to this node: spec.nodeName is the only change) with real
list+watch semantics. `wirespan agent --k8s-api URL` must then put
the right pod, container, owner, labels and service.name on every span, and
the right peer on the client spans; and it must get through a dropped watch
connection and a 410 Gone (re-list), visible in its counters.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from harness import (
    PEERS_SRC,
    PYTHON,
    REPO,
    ROLE_C_PEER,
    ROLE_GO_PEER,
    Agent,
    Env,
    TestFailure,
    check,
    finish_peer,
    log,
    start_nats,
    start_peer,
)

FIXTURES = REPO / "tests" / "fixtures" / "k8s"
RECORDED = FIXTURES / "recorded"
FAKE_API = PEERS_SRC / "py" / "fake_apiserver.py"
NODE = "worker-2"


def cgroup2_mount():
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, mnt, typ = line.split()[:3]
            if typ == "cgroup2":
                return Path(mnt)
    raise TestFailure("no cgroup2 mount in /proc/self/mounts")


def fixture(name):
    return json.loads((FIXTURES / (name + ".json")).read_text())


def recorded(name, item=0):
    """A recorded pod (a Pod file, or item of a PodList file), on our node."""
    obj = json.loads((RECORDED / (name + ".json")).read_text())
    pod = obj["items"][item] if obj.get("kind") == "PodList" else obj
    pod["spec"]["nodeName"] = NODE
    return pod


def container_status(pod, cname):
    for key in ("containerStatuses", "initContainerStatuses"):
        for c in pod["status"].get(key, []):
            if c["name"] == cname:
                return c
    raise TestFailure("fixture %s has no container %s" % (pod["metadata"]["name"], cname))


def container_id(pod, cname):
    return container_status(pod, cname)["containerID"].split("://", 1)[1]


# systemd-driver scope of a container, by the runtime of its containerID
SCOPE = {"containerd": "cri-containerd-%s.scope", "docker": "docker-%s.scope", "cri-o": "crio-%s.scope"}


class Cgroups:
    """kubepods-style cgroups, removed at the end even if the test fails."""

    def __init__(self, root):
        self.root = root
        self.made = []

    def container(self, pod, cname):
        """The cgroup the kubelet's systemd driver makes for container cname
        of pod (its QoS class and runtime from the pod's status)."""
        uid = pod["metadata"]["uid"].replace("-", "_")
        qos = pod["status"].get("qosClass", "Burstable").lower()
        scheme, cid = container_status(pod, cname)["containerID"].split("://", 1)
        pod_slice = ("kubepods.slice/kubepods-pod%s.slice" % uid if qos == "guaranteed" else
                     "kubepods.slice/kubepods-%s.slice/kubepods-%s-pod%s.slice" % (qos, qos, uid))
        rel = pod_slice + "/" + SCOPE[scheme] % cid
        path = self.root
        for part in rel.split("/"):
            path = path / part
            if not path.exists():
                path.mkdir()
                self.made.append(path)
        return path

    def cleanup(self):
        # processes still inside go back to the root, then the dirs go,
        # innermost first
        for d in reversed(self.made):
            try:
                for pid in (d / "cgroup.procs").read_text().split():
                    try:
                        (self.root / "cgroup.procs").write_text(pid)
                    except OSError:
                        pass
            except OSError:
                pass
        for d in reversed(self.made):
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def in_cgroup(cg, args):
    """args run as a process that first moves itself into cgroup cg."""
    return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(cg)] + [str(a) for a in args]


class FakeApi:
    def __init__(self, env, token):
        tok = env.path("token")
        tok.write_text(token + "\n")
        self.token_path = tok
        self.proc = start_peer(env, [PYTHON, FAKE_API, "--fixtures", FIXTURES / "checkout.json",
                                     "--fixtures", FIXTURES / "nats.json", "--fixtures", FIXTURES / "orders.json",
                                     "--fixtures", FIXTURES / "fluentbit.json", "--fixtures", RECORDED,
                                     "--set-node", NODE, "--token", token,
                                     "--bookmark-interval", "0.5"], "fake-apiserver", ready=True)
        first = Path(self.proc.wirespan_out).read_text().splitlines()[0]
        self.url = "http://127.0.0.1:%d" % json.loads(first)["port"]

    def post(self, what, body=None):
        req = urllib.request.Request(self.url + "/control/" + what, data=json.dumps(body or {}).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def stats(self):
        with urllib.request.urlopen(self.url + "/control/stats", timeout=5) as r:
            return json.loads(r.read())


def metrics_now(agent, timeout=5.0):
    """SIGUSR1 -> the next agent_metrics line."""
    import signal

    with agent._lock:
        k = len(agent.stderr_lines)
    agent.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with agent._lock:
            new = agent.stderr_lines[k:]
        for line in new:
            if line.startswith('{"type":"agent_metrics"'):
                return json.loads(line)
        time.sleep(0.05)
    return None


def wait_k8s(agent, pred, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    m = None
    while time.monotonic() < deadline:
        m = metrics_now(agent)
        if m and pred(m.get("k8s", {})):
            return m["k8s"]
        time.sleep(0.3)
    raise TestFailure("agent k8s counters never showed %s; last: %s" % (what, json.dumps((m or {}).get("k8s"))))


def check_res(spans, want, who):
    check(spans, "%s: no spans", who)
    for s in spans:
        for k, v in want.items():
            got = s.resource.get(k)
            check(got == v, "%s: span %r resource %s = %r, expected %r (resource: %s)", who, s, k, got, v,
                  json.dumps(s.resource, sort_keys=True)[:1500])


def test_k8s_pod_identity():
    """Real processes in kubepods cgroups + a fake API server: pod, container, owner, labels, service.name, peers; 410 and dropped watches survived."""
    if shutil.which("sh") is None:
        raise TestFailure("no /bin/sh")
    root = cgroup2_mount()
    cgs = Cgroups(root)
    try:
        with Env("k8s") as env:
            api = FakeApi(env, "t0k3n-for-the-fake-apiserver")
            checkout, nats, orders, payments = (fixture(n) for n in ("checkout", "nats", "orders", "payments"))
            cg_nats = cgs.container(nats, "nats")
            cg_pub = cgs.container(checkout, "checkout")
            cg_sub = cgs.container(orders, "orders")
            cg_pay = cgs.container(payments, "payments")
            # pods recorded from real clusters: cri-o (OpenShift, a
            # statefulset), containerd (kind, a native sidecar: an init
            # container that keeps running), docker (an old replicaset hash)
            workbench, sleep, kairosdb = (recorded("odh-dashboard-workbench-podlist"), recorded("k9s-po_sidecar"),
                                          recorded("fluent-bit-kairosdb"))
            rec = [(workbench, "workbench"), (sleep, "sidecar"), (kairosdb, "kairosdb")]
            cg_rec = [cgs.container(p, c) for p, c in rec]

            # nats-server runs in the nats-0 pod's "nats" container
            srv = start_nats(env)  # a real server, started normally
            # ...moved into its container's cgroup before any client connects
            (cg_nats / "cgroup.procs").write_text(str(srv.pid))
            agent = Agent(env, ["--port", srv.port, "--k8s-api", api.url, "--k8s-token", api.token_path,
                                "--node-name", NODE, "--k8s-label", "tier",
                                "--service-rule", "billing=namespace:shop,container:payments"])
            k = wait_k8s(agent, lambda k: k.get("pods") == 8 and k.get("lists", 0) >= 1, "the 8 listed pods")
            log("k8s after list: %s", k)

            subj = "ws.k8s.orders"
            n = 5
            sub = start_peer(env, in_cgroup(cg_sub, [ROLE_C_PEER, "--url", srv.url, "--mode", "sub", "--subject", subj,
                                                     "--count", n, "--size", 64]), "sub-c", ready=True)
            pub = finish_peer(start_peer(env, in_cgroup(cg_pub, [ROLE_GO_PEER, "--url", srv.url, "--mode", "pub",
                                                                 "--subject", subj, "--count", n, "--size", 64]),
                                         "pub-go"))
            subr = finish_peer(sub)
            rec_pubs = [finish_peer(start_peer(env, in_cgroup(cg, [ROLE_C_PEER, "--url", srv.url, "--mode", "pub",
                                                                   "--subject", "ws.k8s.rec", "--count", 2,
                                                                   "--size", 16]), "pub-rec-%d" % i))
                        for i, cg in enumerate(cg_rec)]

            # the watch: a dropped connection, then (while the agent backs
            # off) the cluster compacts: the re-watch gets 410 and re-lists;
            # the payments pod is created after that and comes as an event
            api.post("drop")
            api.post("compact")
            wait_k8s(agent, lambda k: k.get("watch_dropped", 0) >= 1 and k.get("gone", 0) >= 1 and k.get("lists", 0) >= 2,
                     "a dropped watch, a 410 and a re-list")
            api.post("add", payments)
            wait_k8s(agent, lambda k: k.get("pods") == 9 and k.get("added", 0) >= 1, "the payments pod added by a watch event")
            pay = finish_peer(start_peer(env, in_cgroup(cg_pay, [ROLE_GO_PEER, "--url", srv.url, "--mode", "pub",
                                                                 "--subject", "ws.k8s.pay", "--count", 3, "--size", 32]),
                                         "pay-go"))
            # a pod deleted: gone from the store
            api.post("delete", {"uid": fixture("fluentbit")["metadata"]["uid"]})
            wait_k8s(agent, lambda k: k.get("pods") == 8 and k.get("deleted", 0) >= 1, "the fluent-bit pod deleted")
            agent.wait_counts({("publish " + subj, pub["_pid"]): n, ("process " + subj, subr["_pid"]): n,
                               ("deliver " + subj, srv.pid): n, ("publish ws.k8s.pay", pay["_pid"]): 3,
                               **{("publish ws.k8s.rec", r["_pid"]): 2 for r in rec_pubs}})
            res = agent.stop()
            res.check_well_formed()
            am = res.agent_metrics
            log("agent_metrics: %s", json.dumps(am))

            base = {"k8s.node.name": NODE, "container.runtime": "containerd"}
            check_res(res.by_pid(pub["_pid"]), dict(base, **{
                "k8s.pod.name": checkout["metadata"]["name"], "k8s.pod.uid": checkout["metadata"]["uid"],
                "k8s.namespace.name": "shop", "k8s.container.name": "checkout",
                "container.id": container_id(checkout, "checkout"),
                "k8s.replicaset.name": "checkout-7d9f8b6c5d", "k8s.deployment.name": "checkout",
                "k8s.serviceaccount.name": "checkout", "k8s.pod.label.tier": "web",
                "service.name": "checkout", "service.namespace": "shop",
                "service.instance.id": "shop.%s.checkout" % checkout["metadata"]["name"],
                "process.pid": pub["_pid"]}), "publisher (checkout pod)")
            check_res(res.by_pid(subr["_pid"]), dict(base, **{
                "k8s.pod.name": orders["metadata"]["name"], "k8s.container.name": "orders",
                "k8s.deployment.name": "orders", "service.name": "orders-legacy", "service.namespace": "shop",
                "container.id": container_id(orders, "orders")}), "subscriber (orders pod, label app)")
            check_res(res.select(pid=srv.pid), dict(base, **{
                "k8s.pod.name": "nats-0", "k8s.namespace.name": "messaging", "k8s.container.name": "nats",
                "k8s.statefulset.name": "nats", "service.name": "nats"}), "nats-server (nats-0 pod)")
            check_res(res.by_pid(pay["_pid"]), dict(base, **{
                "k8s.pod.name": payments["metadata"]["name"], "k8s.container.name": "payments",
                "service.name": "billing"}), "payments (added by a watch event; service rule)")
            for r, (pod, cname), want in zip(rec_pubs, rec, (
                    {"k8s.namespace.name": "project", "k8s.statefulset.name": "workbench",
                     "k8s.serviceaccount.name": "workbench", "service.name": "workbench", "container.runtime": "cri-o"},
                    {"k8s.namespace.name": "default", "service.name": "sidecar", "container.runtime": "containerd"},
                    {"k8s.namespace.name": "default", "k8s.replicaset.name": "kairosdb-914055854",
                     "k8s.deployment.name": "kairosdb", "service.name": "kairosdb", "container.runtime": "docker"})):
                check_res(res.by_pid(r["_pid"]), dict(want, **{
                    "k8s.node.name": NODE, "k8s.pod.name": pod["metadata"]["name"],
                    "k8s.pod.uid": pod["metadata"]["uid"], "k8s.container.name": cname,
                    "container.id": container_id(pod, cname)}), "recorded pod %s" % pod["metadata"]["name"])
            for s in res.spans:
                check("k8s.pod.label.pod-template-hash" not in s.resource, "a label outside the allow-list was exported: %r", s)
            # peers: the clients' spans name the nats-server's pod and service
            for s in res.by_pid(pub["_pid"]) + res.by_pid(subr["_pid"]):
                check(s.a("peer.service") == "nats", "%r: peer.service %r, expected nats", s, s.a("peer.service"))
                check(s.a("wirespan.peer.process.pid") == srv.pid, "%r: wirespan.peer.process.pid %r, the server is %d",
                      s, s.a("wirespan.peer.process.pid"), srv.pid)
                check(s.a("wirespan.peer.k8s.pod.name") == "nats-0", "%r: wirespan.peer.k8s.pod.name %r", s,
                      s.a("wirespan.peer.k8s.pod.name"))
            # ...and the server's deliver spans name the subscriber
            for s in res.select(pid=srv.pid, name="deliver " + subj):
                check(s.a("peer.service") == "orders-legacy" and s.a("wirespan.peer.process.pid") == subr["_pid"],
                      "%r: peer %r/%r, expected the subscriber orders-legacy/%d", s, s.a("peer.service"),
                      s.a("wirespan.peer.process.pid"), subr["_pid"])
            k = am.get("k8s", {})
            for key, least in (("watch_dropped", 1), ("gone", 1), ("lists", 2), ("added", 1), ("deleted", 1),
                               ("bookmarks", 1)):
                check(k.get(key, 0) >= least, "agent_metrics.k8s.%s = %r, expected >= %d (%s)", key, k.get(key), least,
                      json.dumps(k))
            for key in ("http_errors", "bad_events", "bad_pods", "pods_evicted", "token_errors"):
                check(k.get(key) == 0, "agent_metrics.k8s.%s = %r, expected 0", key, k.get(key))
            ident = am.get("identity", {})
            check(ident.get("cgroup_by_id", 0) >= 4, "identity.cgroup_by_id %r: the cgroup ids were not resolved", ident)
            st = api.stats()
            check(st["gone"] >= 1 and st["dropped"] >= 1 and st["unauthorized"] == 0, "fake API server stats: %s", st)
    finally:
        cgs.cleanup()
