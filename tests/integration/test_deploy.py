# SPDX-License-Identifier: Apache-2.0
"""Deployment artefacts (deploy/): the systemd unit, the Kubernetes
manifests, `make install` / `make uninstall` / `make dist`.

- The capabilities the unit and the DaemonSet grant are exactly the ones the
  agent checks for (`wirespan doctor --caps`), and an agent running as an
  unprivileged user with only those capabilities traces real NATS traffic.
- The manifests parse (yamllint) and keep the least-privilege settings.
- `make install DESTDIR=...` installs what it says and `systemd-analyze
  verify` accepts the installed unit; `make uninstall` removes it again.
- `make dist`'s tarball runs on a clean Debian 12 root (debootstrap) that has
  only the packages its DEPENDS file lists.
"""

import os
import re
import shutil
import subprocess
import tarfile
import tempfile

import yaml

from harness import (
    ROLE_GO_PEER,
    Agent,
    Env,
    check,
    finish_peer,
    log,
    nobody_copy,
    start_nats,
    start_peer,
)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
WIRESPAN = os.path.join(ROOT, "build", "wirespan")


def agent_caps():
    out = subprocess.run([WIRESPAN, "doctor", "--caps"], capture_output=True, check=True, text=True).stdout
    caps = dict(line.split() for line in out.splitlines())
    return {c for c, kind in caps.items() if kind == "required"}


def unit_caps():
    text = open(os.path.join(DEPLOY, "systemd", "wirespan.service")).read()
    amb = re.search(r"^AmbientCapabilities=(.*)$", text, re.M)
    bnd = re.search(r"^CapabilityBoundingSet=(.*)$", text, re.M)
    check(amb and bnd, "the unit sets no AmbientCapabilities/CapabilityBoundingSet")
    return set(amb.group(1).split()), set(bnd.group(1).split()), text


def manifests():
    docs = []
    kdir = os.path.join(DEPLOY, "kubernetes")
    for name in sorted(os.listdir(kdir)):
        if name.endswith(".yaml"):
            with open(os.path.join(kdir, name)) as f:
                docs += [(name, d) for d in yaml.safe_load_all(f) if d]
    return docs


def test_deploy_capabilities_match_agent():
    """Unit and DaemonSet grant exactly the capabilities the agent requires."""
    want = agent_caps()
    check(want >= {"CAP_BPF", "CAP_PERFMON"}, "agent requires %s", want)
    amb, bnd, text = unit_caps()
    check(amb == want and bnd == want, "systemd unit grants %s / bounds %s; the agent requires %s", amb, bnd, want)
    for key in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=", "PrivateTmp=yes", "Restart=on-failure",
                "StartLimitBurst=", "DynamicUser=yes"):
        check(key in text, "systemd unit lacks %s", key)
    ds = [d for _, d in manifests() if d.get("kind") == "DaemonSet"]
    check(len(ds) == 1, "expected one DaemonSet, found %d", len(ds))
    pod = ds[0]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    sc = c["securityContext"]
    added = {"CAP_" + x for x in sc["capabilities"]["add"]}
    check(added == want, "DaemonSet adds %s; the agent requires %s", added, want)
    check(sc["capabilities"]["drop"] == ["ALL"], "DaemonSet does not drop ALL first: %s", sc["capabilities"])
    check(sc.get("privileged") is False and sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False,
          "DaemonSet container securityContext is not least-privilege: %s", sc)
    check(pod.get("hostPID") is True, "DaemonSet without hostPID")
    check(pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", "seccomp is not RuntimeDefault")
    env = {e["name"]: e for e in c.get("env", [])}
    check(env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
          "NODE_NAME does not come from the downward API")
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    for path in ("/sys/kernel/btf", "/sys/fs/cgroup"):
        check(mounts.get(path, {}).get("readOnly") is True, "%s is not mounted read-only", path)
    health = [a for a in c["args"] if a.startswith("--health=")]
    check(health and health[0].endswith(":%d" % c["ports"][0]["containerPort"]), "health port %s vs ports %s", health, c["ports"])
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz",
          "probes do not use /healthz and /readyz")
    check(c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"], "no resource requests/limits")
    role = [d for _, d in manifests() if d.get("kind") == "ClusterRole"]
    check(len(role) == 1, "expected one ClusterRole")
    for rule in role[0]["rules"]:
        check(set(rule["verbs"]) <= {"get", "list", "watch"}, "ClusterRole grants %s", rule["verbs"])
        check(set(rule["resources"]) <= {"pods", "replicasets"}, "ClusterRole covers %s", rule["resources"])


def test_deploy_manifests_lint():
    """yamllint accepts every YAML file under deploy/; kustomization lists them all."""
    files = []
    for dirpath, _, names in os.walk(DEPLOY):
        files += [os.path.join(dirpath, n) for n in names if n.endswith((".yaml", ".yml"))]
    r = subprocess.run(["yamllint", "-d", "{extends: relaxed, rules: {line-length: {max: 160}}}", "-s"] + files,
                       capture_output=True, text=True)
    check(r.returncode == 0, "yamllint:\n%s", r.stdout + r.stderr)
    kdir = os.path.join(DEPLOY, "kubernetes")
    kust = yaml.safe_load(open(os.path.join(kdir, "kustomization.yaml")))
    listed = set(kust["resources"])
    present = {n for n in os.listdir(kdir) if n.endswith(".yaml") and n != "kustomization.yaml"}
    check(listed == present, "kustomization lists %s, directory has %s", sorted(listed), sorted(present))


def test_deploy_least_privilege_agent():
    """The agent as an unprivileged user (nobody) with only the unit's
    capabilities: starts, and its spans carry the peers' process identity
    (which needs CAP_SYS_PTRACE for another user's /proc/<pid>/exe)."""
    amb, _, _ = unit_caps()
    caps = ",".join(c.lower() for c in sorted(amb))
    # the HMAC secret lives in a state directory the agent owns (systemd:
    # StateDirectory=, Kubernetes: the state volume)
    bindir, binary, state = nobody_copy("wirespan-lp-")
    try:
        wrap = ["capsh", "--caps=%s,cap_setpcap,cap_setuid,cap_setgid+eip" % caps, "--keep=1", "--user=nobody",
                "--addamb=%s" % caps, "--", "-c", 'exec "$0" "$@"']
        with Env("least-privilege") as env:
            srv = start_nats(env)
            agent = Agent(env, ["--port", srv.port, "--key-hash-secret-file", os.path.join(state, "key-hash.secret")],
                          wrap=wrap, binary=binary)
            with open("/proc/%d/status" % agent.proc.pid) as f:
                uid_line = [x for x in f.read().splitlines() if x.startswith("Uid:")][0]
            check(uid_line.split()[1] != "0", "the agent runs as uid 0: %s", uid_line)
            n, subj = 10, "ws.lp"
            sub = start_peer(env, [ROLE_GO_PEER, "--url", srv.url, "--mode", "sub", "--subject", subj, "--count", n], "sub", ready=True)
            pub = finish_peer(start_peer(env, [ROLE_GO_PEER, "--url", srv.url, "--mode", "pub", "--subject", subj, "--count", n], "pub"))
            subr = finish_peer(sub)
            agent.wait_counts({("publish " + subj, pub["_pid"]): n, ("process " + subj, subr["_pid"]): n})
            res = agent.stop()
            res.check_well_formed()
            check(len(res.select(name="publish " + subj, pid=pub["_pid"])) == n, "expected %d publish spans", n)
            procs = res.select(name="process " + subj, pid=subr["_pid"])
            check(len(procs) == n, "expected %d process spans, got %d", n, len(procs))
            # the subscriber was alive when its connection was seen: its
            # resource comes from /proc (exe needs CAP_SYS_PTRACE)
            exe = procs[0].resource.get("process.executable.path")
            check(exe and exe.endswith("natsrole-go"), "process span resource process.executable.path %r; resource %s",
                  exe, procs[0].resource)
    finally:
        shutil.rmtree(bindir, ignore_errors=True)


def test_deploy_install_uninstall():
    """make install DESTDIR=...: binary, unit (ExecStart at PREFIX), docs;
    systemd-analyze verify accepts the unit; make uninstall removes them."""
    dest = tempfile.mkdtemp(prefix="wirespan-install-")
    try:
        prefix = "/opt/ws"
        r = subprocess.run(["make", "-s", "-C", ROOT, "install", "DESTDIR=" + dest, "PREFIX=" + prefix], capture_output=True, text=True)
        check(r.returncode == 0, "make install: %s", r.stdout + r.stderr)
        binp = os.path.join(dest, "opt/ws/bin/wirespan")
        unit = os.path.join(dest, "etc/systemd/system/wirespan.service")
        check(os.access(binp, os.X_OK), "no executable %s", binp)
        check(os.path.isfile(os.path.join(dest, "opt/ws/share/doc/wirespan/README.md")), "docs not installed")
        check(os.path.isdir(os.path.join(dest, "etc/wirespan")), "/etc/wirespan not created")
        text = open(unit).read()
        check("ExecStart=/opt/ws/bin/wirespan agent" in text, "ExecStart not at PREFIX:\n%s", text)
        # verify against the installed binary's real location
        vunit = os.path.join(dest, "wirespan.service")
        with open(vunit, "w") as f:
            f.write(text.replace("/opt/ws/bin/wirespan", binp))
        r = subprocess.run(["systemd-analyze", "verify", vunit], capture_output=True, text=True)
        problems = [x for x in (r.stdout + r.stderr).splitlines() if "wirespan.service" in x]
        check(not problems, "systemd-analyze verify:\n%s", "\n".join(problems))
        r = subprocess.run(["make", "-s", "-C", ROOT, "uninstall", "DESTDIR=" + dest, "PREFIX=" + prefix], capture_output=True, text=True)
        check(r.returncode == 0, "make uninstall: %s", r.stdout + r.stderr)
        left = [os.path.join(d, n) for d, _, ns in os.walk(dest) for n in ns if n != "wirespan.service" or d != dest]
        check(not left, "make uninstall left %s", left)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def _umount_all(root):
    with open("/proc/mounts") as f:
        mps = [line.split()[1] for line in f if line.split()[1].startswith(root)]
    for mp in sorted(mps, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


def test_deploy_dist_on_clean_debian():
    """make dist's tarball on a clean Debian 12 root with only DEPENDS
    installed: version, doctor and a short agent run work."""
    r = subprocess.run(["make", "-s", "-C", ROOT, "dist"], capture_output=True, text=True)
    check(r.returncode == 0, "make dist: %s", r.stdout + r.stderr)
    tarball = os.path.join(ROOT, r.stdout.strip().splitlines()[-1])
    check(os.path.isfile(tarball), "make dist printed %r", r.stdout)
    root = tempfile.mkdtemp(prefix="wirespan-debroot-")
    try:
        log("debootstrap (minbase bookworm) into %s", root)
        r = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", root, "http://deb.debian.org/debian"],
                           capture_output=True, text=True, timeout=900)
        check(r.returncode == 0, "debootstrap failed: %s", (r.stdout + r.stderr)[-2000:])
        with tarfile.open(tarball) as t:
            t.extractall(os.path.join(root, "opt"))
            top = t.getnames()[0].split("/")[0]
        deps = open(os.path.join(root, "opt", top, "DEPENDS")).read().split()
        check("libbpf1" in deps, "DEPENDS %s lacks libbpf1", deps)
        for src in ("/proc", "/sys", "/dev"):
            dst = root + src
            os.makedirs(dst, exist_ok=True)
            subprocess.run(["mount", "--rbind", src, dst], check=True)
        shutil.copy("/etc/resolv.conf", os.path.join(root, "etc/resolv.conf"))
        r = subprocess.run(["chroot", root, "sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                            "--no-install-recommends " + " ".join(deps)], capture_output=True, text=True, timeout=900)
        check(r.returncode == 0, "apt-get install DEPENDS in the chroot: %s", (r.stdout + r.stderr)[-2000:])
        binp = "/opt/%s/bin/wirespan" % top
        r = subprocess.run(["chroot", root, binp, "version"], capture_output=True, text=True)
        check(r.returncode == 0 and r.stdout.startswith("wirespan "), "version in the clean root: %s %r", r.returncode, r.stdout + r.stderr)
        r = subprocess.run(["chroot", root, binp, "doctor", "--no-nats"], capture_output=True, text=True)
        check(r.returncode == 0, "doctor in the clean root:\n%s", r.stdout + r.stderr)
        r = subprocess.run(["chroot", root, binp, "agent", "--output", "stdout", "--duration", "2"], capture_output=True, text=True, timeout=120)
        check(r.returncode == 0 and "ready" in r.stderr and '"agent_metrics"' in r.stderr,
              "agent in the clean root: rc %s\n%s", r.returncode, r.stderr[-1500:])
    finally:
        _umount_all(root)
        with open("/proc/mounts") as f:
            still = [line.split()[1] for line in f if line.split()[1].startswith(root)]
        if not still:
            shutil.rmtree(root, ignore_errors=True)
        else:
            log("leaving %s: still mounted %s", root, still)


def test_deploy_containerfile_runtime_packages():
    """The image's runtime packages are the ones `make dist` derives from
    the binary (DEPENDS), so the image cannot miss a library."""
    r = subprocess.run(["make", "-s", "-C", ROOT, "dist"], capture_output=True, text=True)
    check(r.returncode == 0, "make dist: %s", r.stdout + r.stderr)
    tarball = os.path.join(ROOT, r.stdout.strip().splitlines()[-1])
    with tarfile.open(tarball) as t:
        name = [n for n in t.getnames() if n.endswith("/DEPENDS")][0]
        deps = set(t.extractfile(name).read().decode().split())
    text = open(os.path.join(DEPLOY, "container", "Containerfile")).read()
    stage = text.split("FROM debian:bookworm-slim", 1)[1]
    m = re.search(r"apt-get install -y --no-install-recommends \\\s*\n(.*?)&&", stage, re.S)
    check(m, "no runtime apt-get install in the Containerfile")
    pkgs = set(m.group(1).replace("\\", " ").split()) - {"ca-certificates"}
    check(pkgs == deps, "Containerfile installs %s; the binary needs %s (missing %s, extra %s)",
          sorted(pkgs), sorted(deps), sorted(deps - pkgs), sorted(pkgs - deps))


def test_deploy_configmap_is_valid_config():
    """The ConfigMap's wirespan.yaml passes `wirespan agent --check-config`
    (with its creds path pointed at a readable file), and the DaemonSet sets
    the subject's node token from the node name."""
    cm = [d for _, d in manifests() if d.get("kind") == "ConfigMap"][0]
    text = cm["data"]["wirespan.yaml"]
    tmp = tempfile.mkdtemp(prefix="wirespan-cm-")
    try:
        creds = os.path.join(tmp, "agent.creds")
        with open(creds, "w") as f:
            f.write("placeholder\n")
        conf = os.path.join(tmp, "wirespan.yaml")
        with open(conf, "w") as f:
            f.write(text.replace("/etc/wirespan/creds/agent.creds", creds)
                    .replace("/var/lib/wirespan/key-hash.secret", os.path.join(tmp, "key.secret")))
        r = subprocess.run([WIRESPAN, "agent", "--check-config", "--config", conf], capture_output=True, text=True,
                           env=dict(os.environ, WIRESPAN_EXPORT_NODE="node-1"))
        check(r.returncode == 0, "--check-config of the ConfigMap: rc %s\n%s", r.returncode, r.stdout + r.stderr)
        check(re.search(r'^export\.node: "?node-1"?$', r.stdout, re.M), "WIRESPAN_EXPORT_NODE not applied:\n%s", r.stdout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ds = [d for _, d in manifests() if d.get("kind") == "DaemonSet"][0]
    env = {e["name"]: e for e in ds["spec"]["template"]["spec"]["containers"][0]["env"]}
    check(env.get("WIRESPAN_EXPORT_NODE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
          "WIRESPAN_EXPORT_NODE does not come from spec.nodeName")
