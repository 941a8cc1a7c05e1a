#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Pod churn for the agent's memory benchmark (tests/bench/identity_mem.sh,
churn phase; docs/BENCHMARKS.md, "Pod churn: 1k creations per minute").

While the agent watches tests/peers/py/fake_apiserver.py, for --minutes
minutes: --per-min times a minute, evenly spread (1000/min: one every 60 ms),
the oldest pod goes (its processes get SIGTERM, then /control/delete) and a
new one comes (/control/add), made like the benchmark's other pods (clone_pod
from the recorded pods, index --first + j). A new pod gets a real process in
its kubepods cgroup (tests/bench/idle_clients.c --client: connects to
nats-server, CONNECT, PUB, PING, PONG, stays) when the pod it replaces had
one, so the node keeps as many pods and processes as at the start while both
the pod store and the process cache churn.

Every --sample seconds: the agent's VmRSS/VmHWM/RssAnon (/proc/PID/status)
and its agent_metrics (SIGUSR1: pod store, process cache, heap), and the API
server's pod count (/control/stats). At the end it waits (up to --settle
seconds) for the store to hold as many pods as the API server, takes a last
sample and writes OUT/churn.json: the samples, a linear fit of the second
half's RSS and heap, the k8s counters over the churn.
"""

import argparse
import glob
import http.client
import json
import os
import select
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers", "py"))
from fake_apiserver import cgroup_of, clone_pod, load_pods  # noqa: E402

# the client's command: join the pod's cgroup, then be idle_clients --client
# (its one-byte report, K or F, on fd 3 = our pipe), with the command line
# idle_clients gives its own processes (the same bytes in the agent's cache)
SPAWN = 'echo 0 >"$1/cgroup.procs" && exec -a idle_clients "$2" --client "$3" "$4" --subject "$5" 3>&1'


class Api:
    def __init__(self, port):
        self.port = port
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(3):
            try:
                self.c.request(method, path, body=data, headers={"Content-Type": "application/json"})
                r = self.c.getresponse()
                out = r.read()
                return r.status, json.loads(out or b"{}")
            except (OSError, http.client.HTTPException):
                self.c.close()
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt == 2:
                    raise
        return 0, {}


def kb(pid, key):
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


class Metrics:
    """agent_metrics lines off the agent's stderr file, by SIGUSR1."""

    def __init__(self, pid, path):
        self.pid, self.path, self.off, self.buf = pid, path, 0, b""
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            self.off = fh.tell()

    def get(self, timeout=10.0):
        os.kill(self.pid, signal.SIGUSR1)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with open(self.path, "rb") as fh:
                fh.seek(self.off)
                new = fh.read()
            self.off += len(new)
            self.buf += new
            *lines, self.buf = self.buf.split(b"\n")
            for line in reversed(lines):
                if b'"type":"agent_metrics"' in line:
                    try:
                        return json.loads(line)
                    except ValueError:
                        pass
            time.sleep(0.05)
        return None


def slope(points):
    """Least-squares slope of [(x, y)], or None."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--api", type=int, required=True, help="the fake API server's port")
    ap.add_argument("--index", required=True, help="the fake API server's --index file (uid name cgroup)")
    ap.add_argument("--synth-from", required=True, help="the recorded pods the server's pods were made from")
    ap.add_argument("--node", required=True)
    ap.add_argument("--procs", type=int, default=0, help="the first PROCS pods of the index have a process "
                    "(idle_clients, in the pod's cgroup)")
    ap.add_argument("--cgroot", required=True)
    ap.add_argument("--clients", required=True, help="the idle_clients binary")
    ap.add_argument("--nats-port", type=int, required=True)
    ap.add_argument("--no-procs", action="store_true", help="new pods get no process")
    ap.add_argument("--agent", type=int, required=True, help="the agent's pid")
    ap.add_argument("--agent-err", required=True, help="the agent's stderr file (agent_metrics lines)")
    ap.add_argument("--minutes", type=float, default=3)
    ap.add_argument("--per-min", type=int, default=1000)
    ap.add_argument("--sample", type=float, default=10)
    ap.add_argument("--settle", type=float, default=60)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    templates = []
    for path in sorted(glob.glob(os.path.join(a.synth_from, "*.json"))):
        templates += load_pods(path)
    # the pods now, oldest first: [uid, cgroup dir or None, Popen or None,
    # has a process]
    queue = []
    with open(a.index) as fh:
        for k, line in enumerate(fh):
            uid, _, cg = line.split()
            proc = k < a.procs and cg != "-"
            queue.append([uid, os.path.join(a.cgroot, cg) if proc else None, None, proc])
    first = len(queue)
    api = Api(a.api)
    met = Metrics(a.agent, a.agent_err)
    made = open(os.path.join(a.out, "churn-cgroups.made"), "a")
    samples = []
    st = {"created": 0, "deleted": 0, "procs_started": 0, "procs_ok": 0, "procs_failed": 0,
          "procs_stopped": 0, "api_errors": 0, "spawn_errors": 0, "behind_max_s": 0.0}
    t0 = time.monotonic()

    def reported(p):
        # the client's K/F, if it came
        if p.returncode is None and p.stdout and select.select([p.stdout], [], [], 0)[0]:
            b = p.stdout.read(1)
            st["procs_ok" if b == b"K" else "procs_failed"] += 1
            p.stdout.close()
            p.stdout = None

    def stop(victim):
        uid, cg, p, _ = victim
        if p is not None:
            reported(p)
            p.terminate()
            p.wait()
            if p.stdout:
                p.stdout.close()
            st["procs_stopped"] += 1
            # the scope and the pod slice made for it, if now empty
            d = cg
            while d and d != a.cgroot and os.path.basename(d) != "kubepods.slice":
                try:
                    os.rmdir(d)
                except OSError:
                    break
                d = os.path.dirname(d)
        elif cg is not None:
            # one of idle_clients' processes (it reaps them at the end)
            try:
                with open(os.path.join(cg, "cgroup.procs")) as fh:
                    pids = [int(x) for x in fh.read().split()]
            except OSError:
                pids = []
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGTERM)
                    st["procs_stopped"] += 1
                except OSError:
                    pass
        code, _ = api.call("POST", "/control/delete", {"uid": uid})
        if code == 200:
            st["deleted"] += 1
        else:
            st["api_errors"] += 1

    def create(k, proc):
        pod = clone_pod(templates[k % len(templates)], k, a.node)
        code, _ = api.call("POST", "/control/add", pod)
        if code != 200:
            st["api_errors"] += 1
            return
        st["created"] += 1
        entry = [pod["metadata"]["uid"], None, None, False]
        cg = cgroup_of(pod) if proc and not a.no_procs else None
        if cg:
            d = a.cgroot
            for part in cg.split("/"):
                d = os.path.join(d, part)
                if not os.path.isdir(d):
                    os.mkdir(d)
                    made.write(d + "\n")
            made.flush()
            try:
                p = subprocess.Popen(["bash", "-c", SPAWN, "bash", d, a.clients, str(a.nats_port),
                                      "idle-%05d" % (k % 100000), "bench.identity.svc%d.events" % (k % 500)],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
                entry[1:] = [d, p, True]
                st["procs_started"] += 1
            except OSError:
                st["spawn_errors"] += 1
        queue.append(entry)

    def sample(phase):
        m = met.get()
        code, api_st = api.call("GET", "/control/stats")
        s = {"t": round(time.monotonic() - t0, 2), "phase": phase, "load": open("/proc/loadavg").read().split()[0],
             "rss_kb": kb(a.agent, "VmRSS"), "hwm_kb": kb(a.agent, "VmHWM"), "anon_kb": kb(a.agent, "RssAnon"),
             "api_pods": api_st.get("pods"), "created": st["created"], "deleted": st["deleted"],
             "procs_alive": sum(1 for e in queue if e[2] is not None)}
        if m:
            s.update({key: m.get(key) for key in ("k8s", "identity", "memory", "peers", "go", "nats", "spans_out")})
        samples.append(s)
        print("pod_churn: t=%5.0fs rss %d kB, store %s, api %s, cached %s" % (
            s["t"], s["rss_kb"], (s.get("k8s") or {}).get("pods"), s["api_pods"],
            (s.get("identity") or {}).get("cached")), file=sys.stderr, flush=True)
        return s

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        sample("start")
        total = int(round(a.minutes * a.per_min))
        step = 60.0 / a.per_min
        start = time.monotonic()
        next_sample = start + a.sample
        for j in range(total):
            due = start + j * step
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            else:
                st["behind_max_s"] = max(st["behind_max_s"], now - due)
            victim = queue.pop(0)
            stop(victim)
            create(first + j, victim[3])
            if j % 64 == 0:
                for e in queue[-64:]:
                    if e[2] is not None:
                        reported(e[2])
            if time.monotonic() >= next_sample:
                sample("churn")
                next_sample += a.sample
        end = time.monotonic()
        sample("churn")
        # the watch catching up: the store holds what the API server holds and
        # the agent saw every event
        settle_end = time.monotonic() + a.settle
        while True:
            s = sample("settle")
            k = s.get("k8s") or {}
            if k.get("pods") == s["api_pods"] and k.get("added", 0) - (samples[0].get("k8s") or {}).get("added", 0) \
                    >= st["created"] or time.monotonic() >= settle_end:
                break
            time.sleep(2)
        for e in queue:
            if e[2] is not None:
                reported(e[2])

        churn = [s for s in samples if s["phase"] != "settle"]
        dur = churn[-1]["t"] - churn[0]["t"]
        half = [s for s in churn if s["t"] >= churn[0]["t"] + dur / 2]
        rss_slope = slope([(s["t"], s["rss_kb"]) for s in half])
        heap_slope = slope([(s["t"], s["memory"]["heap_in_use"]) for s in half if s.get("memory")])
        k0, k1 = samples[0].get("k8s") or {}, samples[-1].get("k8s") or {}
        i0, i1 = samples[0].get("identity") or {}, samples[-1].get("identity") or {}
        res = {
            "minutes": a.minutes, "per_min": a.per_min, "sample_s": a.sample, "first_pods": first,
            "wall_s": round(end - start, 1), "driver": st,
            "rss_start_kb": churn[0]["rss_kb"], "rss_max_kb": max(s["rss_kb"] for s in samples),
            "rss_end_kb": samples[-1]["rss_kb"], "hwm_end_kb": samples[-1]["hwm_kb"],
            "rss_growth_mib_per_h": round(rss_slope * 3600 / 1024, 2) if rss_slope is not None else None,
            "heap_growth_mib_per_h": round(heap_slope * 3600 / 1048576, 2) if heap_slope is not None else None,
            "heap_start": (churn[0].get("memory") or {}).get("heap_in_use"),
            "heap_end": (samples[-1].get("memory") or {}).get("heap_in_use"),
            "store_bytes_start": (churn[0].get("memory") or {}).get("k8s_store_bytes"),
            "store_bytes_end": (samples[-1].get("memory") or {}).get("k8s_store_bytes"),
            "identity_bytes_start": (churn[0].get("memory") or {}).get("identity_bytes"),
            "identity_bytes_end": (samples[-1].get("memory") or {}).get("identity_bytes"),
            "store_pods_end": k1.get("pods"), "api_pods_end": samples[-1]["api_pods"],
            "expected_pods_end": first + st["created"] - st["deleted"],
            "caught_up": k1.get("pods") == samples[-1]["api_pods"],
            "settle_s": round(samples[-1]["t"] - churn[-1]["t"], 1),
            # the watch's lag at each churn sample: events the driver made that
            # the agent had not applied yet
            "lag_max_events": max(((s["created"] + s["deleted"]) - (((s.get("k8s") or {}).get("added", 0) - k0.get("added", 0))
                                                                    + ((s.get("k8s") or {}).get("deleted", 0) - k0.get("deleted", 0)))
                                   for s in churn), default=None),
            "k8s_delta": {key: k1.get(key, 0) - k0.get(key, 0) for key in k1 if isinstance(k1.get(key), int)},
            "identity_delta": {key: i1.get(key, 0) - i0.get(key, 0) for key in i1 if isinstance(i1.get(key), int)},
            "cached_start": i0.get("cached"), "cached_end": i1.get("cached"),
            "load_start": churn[0]["load"], "load_end": samples[-1]["load"],
            "samples": samples,
        }
        with open(os.path.join(a.out, "churn.json"), "w") as fh:
            json.dump(res, fh, indent=1)
    finally:
        # the churn's own processes end with the benchmark (identity_mem.sh's
        # cleanup ends idle_clients'; these are ours), also when it is cut
        for e in queue:
            if e[2] is not None:
                e[2].terminate()
        for e in queue:
            if e[2] is not None:
                e[2].wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
