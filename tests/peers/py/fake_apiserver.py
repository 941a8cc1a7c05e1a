#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A small Kubernetes API server for the pod watcher's tests (stdlib only).

It serves pods (from JSON fixtures: Pod or PodList files, e.g.
tests/fixtures/k8s/*.json and the pods recorded from real clusters in
tests/fixtures/k8s/recorded/, optionally moved to one node with --set-node;
and/or N generated pods: --synth N from a built-in template, or with
--synth-from DIR cloned from the recorded pods of DIR, see clone_pod; --index
FILE lists their uids and container cgroups) with the list+watch semantics
of the real API server:

  GET /api/v1/pods?fieldSelector=spec.nodeName=N&limit=L[&continue=T]
      a PodList page with metadata.resourceVersion and metadata.continue;
  GET /api/v1/pods?watch=1&resourceVersion=R&allowWatchBookmarks=true
      &timeoutSeconds=S
      a chunked stream (Transfer-Encoding: chunked) of one JSON event per
      line: every change after R (ADDED/MODIFIED/DELETED), a BOOKMARK every
      --bookmark-interval seconds, then the stream ends after S seconds.
      A resourceVersion older than the compaction point gets a 200 with an
      ERROR event (Status, code 410, reason Expired), as the real server
      does, then the stream ends.

Control endpoints for the tests (POST, JSON bodies):
  /control/add       a Pod object: added (or modified if its uid exists)
  /control/delete    {"uid": ...}
  /control/compact   the cluster moves one version on and history is
                     compacted: watches from any older version get 410
  /control/drop      cut every open watch stream mid-event (half an event
                     line written, then the socket closed without the last
                     chunk)
  GET /control/stats request counters

--token T requires "Authorization: Bearer T" (401 otherwise). Prints
{"ready": true, "port": P} once listening.
"""

import argparse
import bisect
import copy
import glob
import json
import os
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class State:
    def __init__(self, bookmark_interval):
        self.lock = threading.Condition()
        self.rv = 1000
        self.pods = {}  # uid -> pod
        self.history = []  # (rv, type, pod)
        self.compacted = 0  # watches from rv < compacted get 410
        self.bookmark_interval = bookmark_interval
        self.drop_gen = 0
        self.stats = {"lists": 0, "list_pages": 0, "watches": 0, "gone": 0, "dropped": 0, "bookmarks": 0,
                      "events": 0, "unauthorized": 0}

    def _bump(self, pod):
        self.rv += 1
        pod.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        return self.rv

    def put(self, pod, deep=True):
        with self.lock:
            uid = pod["metadata"]["uid"]
            kind = "MODIFIED" if uid in self.pods else "ADDED"
            # a generated pod (clone_pod) has its own metadata and shares
            # the rest, which nothing here changes
            pod = copy.deepcopy(pod) if deep else dict(pod, metadata=dict(pod["metadata"]))
            rv = self._bump(pod)
            self.pods[uid] = pod
            self.history.append((rv, kind, pod))
            self.lock.notify_all()

    def delete(self, uid):
        with self.lock:
            pod = self.pods.pop(uid, None)
            if pod is None:
                return False
            # its last state with a new resourceVersion (only metadata
            # changes: stored pods are private copies, see put)
            pod = dict(pod, metadata=dict(pod["metadata"]))
            rv = self._bump(pod)
            self.history.append((rv, "DELETED", pod))
            self.lock.notify_all()
            return True

    def compact(self):
        with self.lock:
            # the cluster moved on (one version) and etcd compacted: every
            # version a client holds is now too old; the current one is not
            self.rv += 1
            self.compacted = self.rv
            self.history = []

    def drop(self):
        with self.lock:
            self.drop_gen += 1
            self.lock.notify_all()


def synth_pod(k, node):
    uid = str(uuid.UUID(int=k + 1))
    name = "synth-%05d-7d9f8b6c5d-%05x" % (k, k)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns-%d" % (k % 50), "uid": uid,
                     "labels": {"app.kubernetes.io/name": "svc-%d" % (k % 500), "pod-template-hash": "7d9f8b6c5d",
                                "tier": "web"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": True,
                                          "name": "synth-%05d-7d9f8b6c5d" % k, "uid": str(uuid.UUID(int=10**9 + k))}]},
        "spec": {"nodeName": node, "serviceAccountName": "default",
                 "containers": [{"name": "app", "image": "registry.example.com/app:1"},
                                {"name": "sidecar", "image": "registry.example.com/proxy:1"}]},
        "status": {"phase": "Running", "podIP": "10.%d.%d.%d" % (100 + k // 65536, (k // 256) % 256, k % 256),
                   "containerStatuses": [
                       {"name": "app", "containerID": "containerd://%064x" % (2 * k + 1)},
                       {"name": "sidecar", "containerID": "containerd://%064x" % (2 * k + 2)}]},
    }


CGROUP_SCOPE = {"containerd": "cri-containerd-%s.scope", "docker": "docker-%s.scope", "cri-o": "crio-%s.scope"}


def clone_pod(t, k, node):
    """Pod k made from the recorded pod t: its own uid, name, owner, IPs and
    container ids (same runtime scheme), 50 namespaces, 500 workloads; the
    rest (spec, managedFields, conditions...) shared with t, unchanged."""
    tm = t["metadata"]
    m = dict(tm)
    base = tm.get("generateName") or tm["name"] + "-"
    wl = k % 500
    h = "%010x" % (0x5d00000000 + wl)
    m["uid"] = str(uuid.UUID(int=(7 << 120) + k + 1))
    m["namespace"] = "%s-%d" % (tm.get("namespace", "default"), k % 50)
    m["labels"] = dict(tm.get("labels") or {})
    refs = []
    for r in tm.get("ownerReferences") or []:
        r = dict(r, uid=str(uuid.UUID(int=(8 << 120) + wl)))
        if r.get("kind") == "ReplicaSet":
            owner = "%s-w%03d" % (r["name"].rsplit("-", 1)[0], wl)
            r["name"] = "%s-%s" % (owner, h)
            m["labels"]["pod-template-hash"] = h
            m["generateName"] = r["name"] + "-"
        else:
            r["name"] = "%s-w%03d" % (r["name"], wl)
            m["generateName"] = r["name"] + "-"
        refs.append(r)
    if refs:
        m["ownerReferences"] = refs
    m["name"] = "%s%05x" % (m.get("generateName") or base, k)
    p = dict(t, metadata=m, spec=dict(t.get("spec") or {}, nodeName=node))
    st = dict(t.get("status") or {})
    ip = "10.%d.%d.%d" % (100 + k // 65536, (k // 256) % 256, k % 256)
    if "podIP" in st:
        st["podIP"] = ip
        st["podIPs"] = [{"ip": ip}]
    n = 0
    for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        if key not in st:
            continue
        out = []
        for c in st[key]:
            c = dict(c)
            if c.get("containerID"):
                n += 1
                c["containerID"] = "%s://%064x" % (c["containerID"].split("://", 1)[0], (k << 8) + n)
            out.append(c)
        st[key] = out
    p["status"] = st
    return p


def cgroup_of(pod):
    """The kubepods cgroup (systemd driver) of the first running container
    of pod with a known runtime, relative to the cgroup2 mount, or None."""
    qos = (pod.get("status", {}).get("qosClass") or "BestEffort").lower()
    uid = pod["metadata"]["uid"].replace("-", "_")
    for c in pod.get("status", {}).get("containerStatuses") or []:
        scheme, _, cid = (c.get("containerID") or "").partition("://")
        if scheme in CGROUP_SCOPE and cid:
            if qos == "guaranteed":
                pod_slice = "kubepods.slice/kubepods-pod%s.slice" % uid
            else:
                pod_slice = "kubepods.slice/kubepods-%s.slice/kubepods-%s-pod%s.slice" % (qos, qos, uid)
            return pod_slice + "/" + CGROUP_SCOPE[scheme] % cid
    return None


def load_pods(path):
    """The pods of a fixture file: a Pod, or the items of a PodList."""
    with open(path) as fh:
        obj = json.load(fh)
    return obj.get("items") or [] if obj.get("kind") == "PodList" else [obj]


def node_of(pod):
    return pod.get("spec", {}).get("nodeName")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-apiserver/1"
    # a response is two writes (headers, body): without TCP_NODELAY the
    # second waits for the client's delayed ACK, 40 ms a request
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("fake-apiserver: " + fmt % args + "\n")

    def _json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _status(self, code, reason, message):
        self._json(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": message, "reason": reason, "code": code})

    def _authorized(self):
        tok = self.server.token
        if not tok or self.headers.get("Authorization") == "Bearer " + tok:
            return True
        with self.server.state.lock:
            self.server.state.stats["unauthorized"] += 1
        self._status(401, "Unauthorized", "Unauthorized")
        return False

    def do_GET(self):
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        st = self.server.state
        if u.path == "/control/stats":
            with st.lock:
                return self._json(200, dict(st.stats, rv=st.rv, pods=len(st.pods)))
        if u.path != "/api/v1/pods":
            return self._status(404, "NotFound", "the server could not find the requested resource")
        if not self._authorized():
            return
        node = None
        fs = q.get("fieldSelector", "")
        if fs:
            if not fs.startswith("spec.nodeName="):
                return self._status(400, "BadRequest", "unsupported field selector %s" % fs)
            node = fs.split("=", 1)[1]
        if q.get("watch") in ("1", "true"):
            return self._watch(q, node)
        return self._list(q, node)

    def _list(self, q, node):
        st = self.server.state
        limit = int(q.get("limit", "0") or 0)
        cont = q.get("continue")
        with st.lock:
            if not cont:
                st.stats["lists"] += 1
                snap_rv = st.rv
                offset = 0
            else:
                try:
                    offset, snap_rv = (int(x) for x in cont.split(":"))
                except ValueError:
                    return self._status(400, "BadRequest", "invalid continue token")
                if snap_rv < st.compacted:
                    st.stats["gone"] += 1
                    return self._status(410, "Expired", "The provided continue parameter is too old")
            st.stats["list_pages"] += 1
            items = sorted((p for p in st.pods.values() if node is None or node_of(p) == node),
                           key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"]["name"]))
            page = items[offset: offset + limit] if limit else items[offset:]
            meta = {"resourceVersion": str(snap_rv)}
            if limit and offset + limit < len(items):
                meta["continue"] = "%d:%d" % (offset + limit, snap_rv)
            body = {"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": page}
            data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, b):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
        self.wfile.flush()

    def _watch(self, q, node):
        st = self.server.state
        try:
            rv = int(q.get("resourceVersion", "0") or 0)
        except ValueError:
            return self._status(400, "BadRequest", "bad resourceVersion")
        timeout = min(int(q.get("timeoutSeconds", "1800")), 1800)
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with st.lock:
            st.stats["watches"] += 1
            drop_gen = st.drop_gen
            if rv < st.compacted:
                st.stats["gone"] += 1
                ev = {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                                  "status": "Failure", "reason": "Expired", "code": 410,
                                                  "message": "too old resource version: %d (%d)" % (rv, st.compacted)}}
                gone = True
            else:
                gone = False
        if gone:
            self._chunk(json.dumps(ev).encode() + b"\n")
            self._chunk(b"")
            return
        deadline = time.monotonic() + timeout
        next_bm = time.monotonic() + st.bookmark_interval
        sent = rv
        while True:
            with st.lock:
                while True:
                    # history is in resourceVersion order
                    pending = st.history[bisect.bisect_right(st.history, sent, key=lambda e: e[0]):]
                    now = time.monotonic()
                    if pending or st.drop_gen != drop_gen or now >= deadline or (bookmarks and now >= next_bm):
                        break
                    st.lock.wait(min(deadline, next_bm if bookmarks else deadline) - now)
                dropped = st.drop_gen != drop_gen
                if dropped:
                    st.stats["dropped"] += 1
            if dropped:
                # half an event, then the socket goes away without the
                # terminating chunk: a connection dropped mid-watch
                try:
                    self._chunk(b'{"type":"MODIFIED","object":{"kind":"Pod","metadata":{"na')
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self.close_connection = True
                return
            out = []
            for r, t, p in pending:
                sent = r
                if node is None or node_of(p) == node:
                    out.append(json.dumps({"type": t, "object": p}).encode() + b"\n")
            now = time.monotonic()
            if bookmarks and now >= next_bm:
                with st.lock:
                    st.stats["bookmarks"] += 1
                    cur = st.rv
                sent = max(sent, cur)
                out.append(json.dumps({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                                                                      "metadata": {"resourceVersion": str(cur)}}}).encode() + b"\n")
                next_bm = now + st.bookmark_interval
            try:
                for b in out:
                    self._chunk(b)
                with st.lock:
                    st.stats["events"] += len(out)
                if now >= deadline:
                    self._chunk(b"")
                    return
            except OSError:
                self.close_connection = True
                return

    def do_POST(self):
        u = urlparse(self.path)
        n = int(self.headers.get("Content-Length", "0") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        st = self.server.state
        if u.path == "/control/add":
            st.put(body, deep=False)  # body: parsed here, ours alone
        elif u.path == "/control/delete":
            if not st.delete(body.get("uid")):
                return self._status(404, "NotFound", "no such pod")
        elif u.path == "/control/compact":
            st.compact()
        elif u.path == "/control/drop":
            st.drop()
        else:
            return self._status(404, "NotFound", "no such control")
        self._json(200, {"ok": True, "rv": st.rv})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fixtures", action="append", default=[], help="a pod JSON file or a directory of them")
    ap.add_argument("--synth", type=int, default=0, help="add N synthetic pods")
    ap.add_argument("--synth-from", default="", help="make the --synth pods from the pod JSON files of this "
                    "directory (clone_pod), not from the built-in template")
    ap.add_argument("--index", default="", help="write one line per generated pod: uid, name, container "
                    "cgroup (clone_pod)")
    ap.add_argument("--node", default="worker-2", help="node of the synthetic pods")
    ap.add_argument("--set-node", default="", help="put the --fixtures pods on this node (spec.nodeName): "
                    "recorded pods name their cluster's node")
    ap.add_argument("--token", default="")
    ap.add_argument("--bookmark-interval", type=float, default=1.0)
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    st = State(a.bookmark_interval)
    for f in a.fixtures:
        files = sorted(glob.glob(os.path.join(f, "*.json"))) if os.path.isdir(f) else [f]
        for path in files:
            for pod in load_pods(path):
                if a.set_node:
                    pod.setdefault("spec", {})["nodeName"] = a.set_node
                st.put(pod)
    templates = []
    if a.synth_from:
        for path in sorted(glob.glob(os.path.join(a.synth_from, "*.json"))):
            templates += load_pods(path)
    index = open(a.index, "w") if a.index else None
    for k in range(a.synth):
        if templates:
            pod = clone_pod(templates[k % len(templates)], k, a.node)
            st.put(pod, deep=False)
        else:
            pod = synth_pod(k, a.node)
            st.put(pod)
        if index:
            index.write("%s %s %s\n" % (pod["metadata"]["uid"], pod["metadata"]["name"], cgroup_of(pod) or "-"))
    if index:
        index.close()
    srv = ThreadingHTTPServer((a.host, a.port), Handler)
    srv.daemon_threads = True
    srv.state = st
    srv.token = a.token
    srv.verbose = a.verbose
    print(json.dumps({"ready": True, "port": srv.server_address[1], "pods": len(st.pods)}), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
