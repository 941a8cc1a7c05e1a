# SPDX-License-Identifier: Apache-2.0
"""The command line: exit codes, usage errors, signals, clean detach."""
import json
import signal
import subprocess
import time

from harness import NATS_SERVER, WIRESPAN, Capture, Env, check, free_port, wait_port


def _run(args, timeout=30):
    return subprocess.run([str(WIRESPAN)] + args, capture_output=True, timeout=timeout)


def _our_programs():
    """Ids of loaded BPF programs named like ours (tp_* from wirespan.bpf.c)."""
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, timeout=30)
    check(out.returncode == 0, "bpftool prog show failed: %s", out.stderr.decode()[-300:])
    return {p["id"] for p in json.loads(out.stdout or b"[]") if p.get("name", "").startswith("tp_")}


def test_usage_errors():
    """A wrong flag: one-line error, the usage, exit 2; --help and version exit 0."""
    for args in (["capture", "--bogus"], ["capture", "--port", "0"], ["capture", "--ringbuf-size", "1000"],
                 ["agent", "--output", "carrier-pigeon"], ["nosuchcommand"], ["version", "extra"]):
        r = _run(args)
        check(r.returncode == 2, "%s: exit %s, expected 2", args, r.returncode)
        err = r.stderr.decode()
        check(err.startswith("wirespan: "), "%s: stderr does not start with a one-line error: %r", args, err[:200])
        check("usage:" in err, "%s: no usage after the error: %r", args, err[:400])
    for args in (["--help"], ["capture", "--help"], ["agent", "--help"], ["version", "--help"], ["version"]):
        r = _run(args)
        check(r.returncode == 0, "%s: exit %s, expected 0", args, r.returncode)
        check(r.stdout, "%s printed nothing", args)
    check(b"event ABI" in _run(["version"]).stdout, "version does not name the event ABI")


def test_signals_and_clean_detach():
    """SIGUSR1 prints metrics and keeps running; SIGTERM exits 0 and leaves no program behind."""
    before = _our_programs()  # another capture on this host may own some
    with Env("detach") as env:
        cap = Capture(env, ["--port", "1"])
        ours = _our_programs() - before
        check(len(ours) >= 16, "only %d new programs loaded while capturing", len(ours))
        m = cap.metrics_now()
        check(m is not None and "kernel" in m and "user" in m, "SIGUSR1 printed no metrics line")
        check(cap.proc.poll() is None, "capture exited after SIGUSR1")
        cap.proc.send_signal(signal.SIGTERM)
        rc = cap.proc.wait(20)
        check(rc == 0, "exit %s after SIGTERM", rc)
    deadline = time.monotonic() + 5
    while ours & _our_programs() and time.monotonic() < deadline:
        time.sleep(0.2)
    check(not (ours & _our_programs()), "programs left behind after exit: ids %s", sorted(ours & _our_programs()))


def _byte_exact_with(var):
    """Two byte-exact capture tests (a raw-socket client, nats-server's
    writev) with the environment variable var=1 forcing a fallback path."""
    import os

    import test_capture

    os.environ[var] = "1"
    try:
        test_capture.test_py_raw_client()
        test_capture.test_server_writev()
    finally:
        del os.environ[var]


def test_hash_map_fallback():
    """Kernels without task storage for tracepoints keep syscall arguments in a
    hash map: the same byte-exact capture through that path."""
    _byte_exact_with("WIRESPAN_NO_TASK_STORAGE")


def test_helper_read_fallback():
    """Kernels without bpf_rdonly_cast (before 6.2) get the enter programs
    that walk the fd table with helper reads: the same byte-exact capture
    through them."""
    import os

    for env, want in (({}, "direct loads (bpf_rdonly_cast)"), ({"WIRESPAN_NO_RDONLY_CAST": "1"}, "helper reads")):
        r = subprocess.run([str(WIRESPAN), "capture", "--summary", "--duration", "1", "-v"], capture_output=True,
                           timeout=30, env=dict(os.environ, **env))
        err = r.stderr.decode()
        check(r.returncode == 0 and ("fd walk: " + want) in err, "capture %s: exit %s, no 'fd walk: %s': %r",
              env, r.returncode, want, err[-400:])
    _byte_exact_with("WIRESPAN_NO_RDONLY_CAST")


def test_missing_kernel_feature():
    """A kernel without BTF (hidden here in a private mount namespace): a
    message naming what is missing and exit code 3, for both commands."""
    for cmd in ("capture", "agent"):
        r = subprocess.run(
            ["unshare", "-m", "sh", "-c", 'mount -t tmpfs none /sys/kernel/btf && exec "$0" "$@"',
             str(WIRESPAN), cmd, "--duration", "1"],
            capture_output=True, timeout=30)
        err = r.stderr.decode()
        check(r.returncode == 3, "%s without BTF: exit %s, expected 3; stderr: %r", cmd, r.returncode, err[-300:])
        check("BTF" in err and "/sys/kernel/btf/vmlinux" in err, "%s: the message does not name BTF: %r", cmd, err[-300:])


def test_missing_capability():
    """Without a capability the agent needs, both commands name it and exit
    4; CAP_SYS_ADMIN stands in for CAP_BPF (kernels before 5.8)."""
    cases = [
        ("cap_bpf,cap_sys_admin", "CAP_BPF"),
        ("cap_perfmon,cap_sys_admin", "CAP_PERFMON"),
        ("cap_sys_ptrace", "CAP_SYS_PTRACE"),
        ("cap_dac_read_search", "CAP_DAC_READ_SEARCH"),
    ]
    for cmd in ("capture", "agent"):
        for drop, name in cases:
            r = subprocess.run(
                ["capsh", "--drop=" + drop, "--", "-c", '"$0" "$@"',
                 str(WIRESPAN), cmd, "--duration", "1"],
                capture_output=True, timeout=30)
            err = r.stderr.decode()
            check(r.returncode == 4, "%s without %s: exit %s, expected 4; stderr: %r", cmd, drop, r.returncode, err[-300:])
            check("missing capability " + name in err, "%s without %s: message does not name %s: %r", cmd, drop, name, err[-300:])
    # only CAP_BPF dropped: CAP_SYS_ADMIN covers it, the capture starts
    r = subprocess.run(["capsh", "--drop=cap_bpf", "--", "-c", '"$0" "$@"', str(WIRESPAN), "capture", "--duration", "1"],
                       capture_output=True, timeout=30)
    check(r.returncode == 0, "capture without CAP_BPF but with CAP_SYS_ADMIN: exit %s: %r", r.returncode, r.stderr.decode()[-300:])


def test_doctor():
    """`wirespan doctor`: every host check passes here; NATS: unreachable
    fails, a reachable server passes, a publish the server's permissions deny
    fails with a hint; a dropped capability fails naming it."""
    def doctor(*args):
        r = subprocess.run([str(WIRESPAN), "doctor"] + list(args), capture_output=True, timeout=30)
        return r.returncode, r.stdout.decode()

    with Env("doctor") as env:
        port = free_port()
        conf = env.path("nats.conf")
        conf.write_text("""
listen: 127.0.0.1:%d
authorization {
  users = [
    {user: node-a, password: pw-a, permissions: {publish: ["otel.traces.*.node-a"]}}
  ]
}
""" % port)
        url = "nats://127.0.0.1:%d" % port
        rc, out = doctor("--nats-url", "nats://127.0.0.1:%d" % free_port())
        check(rc == 1 and "FAIL  NATS connection" in out, "unreachable NATS: rc %s\n%s", rc, out)
        for line in out.splitlines()[:-1]:
            check(line.startswith(("PASS", "WARN", "FAIL", "      ->")), "unexpected doctor line %r", line)
            check(not line.startswith("FAIL") or "NATS" in line, "a host check failed here: %r", line)
        p = env.spawn([NATS_SERVER, "-c", str(conf)], stdout=env.path("nats.log"), stderr=subprocess.STDOUT, name="nats-server")
        wait_port("127.0.0.1", port, 10.0, p)
        rc, out = doctor("--nats-url", url, "--user", "node-a", "--password", "pw-a", "--subject", "otel.traces.nats.node-a")
        check(rc == 0 and "PASS  NATS publish" in out and out.rstrip().endswith("0 failed"), "permitted publish: rc %s\n%s", rc, out)
        rc, out = doctor("--nats-url", url, "--user", "node-a", "--password", "pw-a", "--subject", "otel.traces.nats.node-b")
        check(rc == 1 and "FAIL  NATS publish" in out and "denied" in out, "denied publish: rc %s\n%s", rc, out)
        rc, out = doctor("--nats-url", url, "--user", "node-a", "--password", "wrong")
        check(rc == 1 and "FAIL  NATS connection" in out, "bad password: rc %s\n%s", rc, out)
    r = subprocess.run(["capsh", "--drop=cap_dac_read_search", "--", "-c", '"$0" "$@"', str(WIRESPAN), "doctor", "--no-nats"],
                       capture_output=True, timeout=30)
    out = r.stdout.decode()
    check(r.returncode == 1 and "FAIL  CAP_DAC_READ_SEARCH" in out, "doctor without CAP_DAC_READ_SEARCH: rc %s\n%s", r.returncode, out)


def test_health_endpoint():
    """`--health ADDR`: /readyz turns 200 once the programs are attached,
    /healthz is 200 while the loop runs, other paths 404; an address that
    cannot be bound is a clear error."""
    import urllib.error
    import urllib.request

    def get(url):
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return None, str(e)

    port = free_port()
    base = "http://127.0.0.1:%d" % port
    p = subprocess.Popen([str(WIRESPAN), "agent", "--output", "stdout", "--health", "127.0.0.1:%d" % port, "--duration", "60"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        seen = []
        deadline = time.time() + 30
        while time.time() < deadline:
            st, body = get(base + "/readyz")
            seen.append(st)
            if st == 200:
                break
            time.sleep(0.1)
        check(seen and seen[-1] == 200, "/readyz never 200: %s", seen[-5:])
        check(all(s in (None, 503, 200) for s in seen), "/readyz answered %s", seen)
        st, body = get(base + "/healthz")
        check(st == 200 and body == "ok\n", "/healthz: %s %r", st, body)
        st, _ = get(base + "/metrics/../secrets")
        check(st == 404, "unknown path: %s", st)
    finally:
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
    check(p.returncode == 0, "agent exit %s", p.returncode)
    r = subprocess.run([str(WIRESPAN), "agent", "--output", "stdout", "--health", "192.0.2.1:%d" % port, "--duration", "1"],
                       capture_output=True, timeout=30)
    check(r.returncode == 1 and b"cannot listen on 192.0.2.1" in r.stderr, "unbindable address: rc %s %r", r.returncode, r.stderr[-300:])


def test_every_config_key_documented():
    """Every key `wirespan agent --check-config` prints has a row in
    docs/CONFIGURATION.md, and every documented key exists."""
    import os
    import re
    r = subprocess.run([str(WIRESPAN), "agent", "--check-config"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, "--check-config: rc %s %s", r.returncode, r.stderr)
    keys = {line.split(":", 1)[0] for line in r.stdout.splitlines() if ":" in line}
    check(len(keys) > 40, "only %d keys printed", len(keys))
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "CONFIGURATION.md")).read()
    section = doc.split("\n## Keys", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z0-9_.]+)` \|", section, re.M))
    check(keys <= documented, "keys without a row in docs/CONFIGURATION.md: %s", sorted(keys - documented))
    check(documented <= keys, "documented keys the agent does not know: %s", sorted(documented - keys))
