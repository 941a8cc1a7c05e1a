#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""`make kernels`: wirespan on Debian 12's own 6.1 kernel under qemu, and on
this host's kernel, with per-program verifier instruction counts (issue 9,
reliability item 8; docs/RELIABILITY.md, "Kernels").

  run.py [--accel tcg|kvm] [--smp N] [--kernel-package NAME] [--no-host]
         [--record] [--timeout SECONDS]

1. Installs qemu-system-x86 if missing; fetches the kernel package (default:
   what linux-image-amd64 depends on, i.e. Debian 12's current 6.1) with
   `apt-get download` and unpacks it with dpkg-deb (build/kernels/cache/).
2. A Debian 12 root (debootstrap minbase + nats-server, python3, bpftool,
   busybox-static + the DEPENDS of `make dist`), kept in build/kernels/root/
   so reruns skip it; a small initramfs (busybox, the virtio/9p modules).
3. Boots the kernel under qemu (TCG software emulation by default) with the
   root and a work directory shared over virtio-9p; inside, exercise.py loads
   and attaches every program of the dist binary, measures each program's
   verified_insns, and checks the bytes of a real NATS exchange.
4. Runs exercise.py on this host too, prints the table (program, insns on
   the guest's kernel, on this host's, change since the recorded figures) and
   writes build/kernels/results.{json,md}. --record also rewrites the
   committed tests/kernels/verified_insns.json (so a commit shows growth).

Ends with `kernels: PASS` (exit 0) or `kernels: FAIL` (exit 1). Needs root.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.path.join(ROOT, "build")
OUT = os.path.join(BUILD, "kernels")
RECORD = os.path.join(HERE, "verified_insns.json")
# In the guest root: the peers and tools exercise.py uses, and busybox for
# the initramfs. The wirespan runtime libraries come from DEPENDS.
ROOT_PACKAGES = ["nats-server", "python3", "bpftool", "busybox-static"]
# Modules (and what they depend on) to mount a virtio-9p root.
BOOT_MODULES = ["virtio_pci", "9pnet_virtio", "9p"]
MIRROR = "http://deb.debian.org/debian"


def log(fmt, *a):
    print("kernels: " + (fmt % a if a else fmt), flush=True)


def sh(cmd, **kw):
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


def host_packages():
    if shutil.which("qemu-system-x86_64"):
        return
    log("installing qemu-system-x86")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sh(["apt-get", "update", "-qq"], env=env)
    sh(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "qemu-system-x86"], env=env)


def kernel_package(name):
    """Download and unpack the kernel package: (vmlinuz, modules dir, version)."""
    if not name:
        r = sh(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True)
        name = re.search(r"Depends: (linux-image-[0-9][^\s]*)", r.stdout).group(1)
    cache = os.path.join(OUT, "cache")
    os.makedirs(cache, exist_ok=True)
    debs = [d for d in os.listdir(cache) if d.startswith(name + "_") and d.endswith(".deb")]
    if not debs:
        log("apt-get download %s", name)
        sh(["apt-get", "download", name], cwd=cache, capture_output=True)
        debs = [d for d in os.listdir(cache) if d.startswith(name + "_") and d.endswith(".deb")]
    deb = sorted(debs)[-1]
    tree = os.path.join(cache, deb[:-4])
    if not os.path.isdir(tree):
        sh(["dpkg-deb", "-x", os.path.join(cache, deb), tree + ".tmp"])
        os.rename(tree + ".tmp", tree)
    kver = os.listdir(os.path.join(tree, "lib", "modules"))[0]
    return os.path.join(tree, "boot", "vmlinuz-" + kver), os.path.join(tree, "lib", "modules", kver), kver, deb[:-4]


def dist():
    r = sh(["make", "-s", "-C", ROOT, "dist"], capture_output=True, text=True)
    return os.path.join(ROOT, r.stdout.strip().splitlines()[-1])


def chroot_missing(root, pkgs):
    r = subprocess.run(["chroot", root, "dpkg-query", "-W", "-f=${Package} ${Status}\n"] + pkgs,
                       capture_output=True, text=True)
    ok = {l.split()[0] for l in r.stdout.splitlines() if l.endswith("install ok installed")}
    return [p for p in pkgs if p not in ok]


def guest_root(depends):
    """The cached Debian 12 root, with every package it needs."""
    root = os.path.join(OUT, "root")
    pkgs = ROOT_PACKAGES + depends
    if not os.path.isfile(os.path.join(root, "etc", "debian_version")):
        tmp = root + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        log("debootstrap (minbase bookworm, %s) into %s", ",".join(pkgs), tmp)
        r = subprocess.run(["debootstrap", "--variant=minbase", "--include=" + ",".join(pkgs), "bookworm", tmp, MIRROR],
                           capture_output=True, text=True)
        if r.returncode:
            sys.exit("kernels: debootstrap failed:\n" + (r.stdout + r.stderr)[-3000:])
        shutil.rmtree(root, ignore_errors=True)
        os.rename(tmp, root)
    missing = chroot_missing(root, pkgs)
    if missing:
        log("installing %s in the guest root", " ".join(missing))
        shutil.copy("/etc/resolv.conf", os.path.join(root, "etc", "resolv.conf"))
        sh(["mount", "-t", "proc", "proc", os.path.join(root, "proc")])
        try:
            sh(["chroot", root, "sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                "--no-install-recommends " + " ".join(missing)], capture_output=True)
        finally:
            sh(["umount", os.path.join(root, "proc")])
    os.makedirs(os.path.join(root, "ws"), exist_ok=True)
    return root


def module_deps(moddir, names):
    """The .ko files for names and what they depend on (modinfo depends=),
    dependencies first."""
    files = {}
    for d, _, ns in os.walk(os.path.join(moddir, "kernel")):
        for n in ns:
            if n.endswith(".ko"):
                files[n[:-3].replace("-", "_")] = os.path.join(d, n)
    order = []

    def add(name):
        name = name.replace("-", "_")
        if name in order:
            return
        if name not in files:  # built in
            return
        data = open(files[name], "rb").read()
        m = re.search(rb"\x00depends=([^\x00]*)\x00", data)
        for dep in (m.group(1).decode().split(",") if m and m.group(1) else []):
            add(dep)
        order.append(name)

    for n in names:
        add(n)
    return [files[n] for n in order]


def cpio_newc(entries, path):
    """Write a newc cpio archive: entries are (name, mode, data or None)."""
    with open(path, "wb") as f:
        def put(name, mode, data, ino):
            nb = name.encode() + b"\x00"
            hdr = "070701" + "".join("%08x" % v for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
            f.write(hdr.encode() + nb + b"\x00" * ((4 - (110 + len(nb)) % 4) % 4))
            f.write(data + b"\x00" * ((4 - len(data) % 4) % 4))
        for i, (name, mode, data) in enumerate(entries + [("TRAILER!!!", 0, b"")]):
            put(name, mode, data or b"", i + 1)


def initramfs(root, moddir):
    kos = module_deps(moddir, BOOT_MODULES)
    entries = [("bin", 0o40755, None), ("modules", 0o40755, None),
               ("bin/busybox", 0o100755, open(os.path.join(root, "bin", "busybox"), "rb").read()),
               ("init", 0o100755, open(os.path.join(HERE, "initramfs-init.sh"), "rb").read()),
               ("modules.order", 0o100644, "".join(os.path.basename(k) + "\n" for k in kos).encode())]
    entries += [("modules/" + os.path.basename(k), 0o100644, open(k, "rb").read()) for k in kos]
    path = os.path.join(OUT, "initramfs.cpio")
    cpio_newc(entries, path)
    return path, [os.path.basename(k)[:-3] for k in kos]


def expected_programs():
    """The programs of the BPF object, from the skeleton's progs struct."""
    text = open(os.path.join(BUILD, "wirespan.skel.h")).read()
    block = re.search(r"struct \{\n((?:\s*struct bpf_program \*\w+;\n)+)\s*\} progs;", text).group(1)
    return re.findall(r"\*(\w+);", block)


def work_dir(tarball, programs):
    work = os.path.join(OUT, "work")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(work, "out"))
    with tarfile.open(tarball) as t:
        t.extractall(work)
        top = t.getnames()[0].split("/")[0]
    os.rename(os.path.join(work, top), os.path.join(work, "dist"))
    for n in ("exercise.py", "guest-init.sh"):
        shutil.copy(os.path.join(HERE, n), work)
    with open(os.path.join(work, "programs.txt"), "w") as f:
        f.write("\n".join(programs) + "\n")
    return work


def boot(vmlinuz, initrd, root, work, accel, smp, timeout, console_path):
    """Boot, stream the console to a file; (seconds, console text, timed out)."""
    cpu = "host" if accel == "kvm" else "max"
    # One host thread runs both vCPUs in turn (thread=single): on a busy
    # host, multi-threaded TCG lets one vCPU thread starve while the other
    # waits for it, and the guest stalls in RCU at boot (seen here at load
    # average 20 under nice).
    accel_opt = "tcg,thread=single" if accel == "tcg" else accel
    cmd = ["qemu-system-x86_64", "-machine", "q35", "-accel", accel_opt, "-cpu", cpu, "-m", "1536", "-smp", str(smp),
           "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
           "-kernel", vmlinuz, "-initrd", initrd,
           "-append", "console=ttyS0 panic=-1 loglevel=4",
           "-virtfs", "local,path=%s,mount_tag=rootfs,security_model=passthrough,id=rootfs" % root,
           "-virtfs", "local,path=%s,mount_tag=ws,security_model=passthrough,id=ws" % work]
    log("boot: %s", " ".join(cmd))
    t0 = time.monotonic()
    timed_out = False
    with open(console_path, "wb") as con:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        os.set_blocking(proc.stdout.fileno(), False)
        line = b""
        while True:
            chunk = proc.stdout.read(65536)
            if chunk:
                con.write(chunk)
                con.flush()
                line += chunk
                *done, line = line.split(b"\n")
                for l in done:
                    text = l.decode("utf-8", "replace").rstrip("\r")
                    # the guest's own progress lines and the kernel's errors
                    if text.startswith(("kernels:", "  ok", "  FAIL")) or "Kernel panic" in text or "BUG" in text:
                        print("  guest| " + text, flush=True)
            elif proc.poll() is not None:
                break
            else:
                time.sleep(0.05)
            if time.monotonic() - t0 > timeout:
                timed_out = True
                proc.kill()
                proc.wait()
                break
    with open(console_path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    return time.monotonic() - t0, text, timed_out


def host_run(programs):
    work = os.path.join(OUT, "host")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    plist = os.path.join(work, "programs.txt")
    with open(plist, "w") as f:
        f.write("\n".join(programs) + "\n")
    out = os.path.join(work, "host.json")
    t0 = time.monotonic()
    subprocess.run([sys.executable, os.path.join(HERE, "exercise.py"), "--wirespan", os.path.join(BUILD, "wirespan"),
                    "--programs", plist, "--out", out, "--label", "host", "--tmp", os.path.join(work, "tmp")])
    if not os.path.isfile(out):
        return None, time.monotonic() - t0
    return json.load(open(out)), time.monotonic() - t0


def insns(report, variant):
    if not report or variant not in report or "programs" not in report[variant]:
        return {}
    return {n: p["verified_insns"] for n, p in report[variant]["programs"].items()}


def git_commit():
    r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True)
    return r.stdout.strip() or "?"


def bpf_source():
    """The last commit of what decides the counts (the BPF code, its shared
    headers, the loader's settings), -dirty when they have local changes."""
    paths = ["bpf", "include", "agent/loader.c"]
    r = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h", "--"] + paths, capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--"] + paths).returncode != 0
    return (r.stdout.strip() or "?") + ("-dirty" if dirty else "")


def table(programs, guest, host, previous):
    g, gh = insns(guest, "default"), insns(guest, "hashmap")
    h, hh = insns(host, "default"), insns(host, "hashmap")
    prev_g = previous.get("guest", {}).get("default", {})
    prev_h = previous.get("host", {}).get("default", {})

    def cell(v):
        return "%d" % v if isinstance(v, int) else "not loaded"

    def delta(now, before):
        if not isinstance(now, int) or not isinstance(before, int):
            return "n/a"
        if now == before:
            return "="
        return "%+d" % (now - before)

    gstore = (guest or {}).get("default", {}).get("args_store", "?")
    hstore = (host or {}).get("default", {}).get("args_store", "?")
    gk = (guest or {}).get("kernel", "guest")
    hk = (host or {}).get("kernel", "host")
    rows = ["| program | %s (%s) | %s (%s) | %s (hash map) | %s (hash map) | change since recorded (guest, host) |"
            % (gk, gstore, hk, hstore, gk, hk), "|---|---|---|---|---|---|"]
    tot = [0, 0, 0, 0]
    for p in programs:
        vals = [g.get(p), h.get(p), gh.get(p), hh.get(p)]
        for i, v in enumerate(vals):
            tot[i] += v if isinstance(v, int) else 0
        rows.append("| %s | %s | %s | %s | %s | %s, %s |" % (p, cell(vals[0]), cell(vals[1]), cell(vals[2]), cell(vals[3]),
                                                           delta(vals[0], prev_g.get(p)), delta(vals[1], prev_h.get(p))))
    rows.append("| **all %d** | %d | %d | %d | %d | %s, %s |" % (
        len(programs), tot[0], tot[1], tot[2], tot[3],
        delta(tot[0], sum(prev_g.values()) if prev_g else None), delta(tot[1], sum(prev_h.values()) if prev_h else None)))
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser()
    # This machine's /dev/kvm is kvm-pvm, which boots only PVM guest kernels:
    # Debian's stops at "Probing EDD" under it. TCG boots anything.
    ap.add_argument("--accel", choices=("tcg", "kvm"), default="tcg",
                    help="qemu accelerator (default tcg: software emulation)")
    ap.add_argument("--smp", type=int, default=2, help="guest CPUs (default 2, as this host)")
    ap.add_argument("--kernel-package", default="", help="default: what linux-image-amd64 depends on")
    ap.add_argument("--no-host", action="store_true", help="skip the run on this host's kernel")
    ap.add_argument("--record", action="store_true", help="rewrite tests/kernels/verified_insns.json")
    ap.add_argument("--timeout", type=float, default=1500, help="seconds for the whole guest run")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("kernels: needs root (debootstrap, BPF)")
    t_all = time.monotonic()
    os.makedirs(OUT, exist_ok=True)
    host_packages()
    vmlinuz, moddir, kver, kpkg = kernel_package(args.kernel_package)
    log("kernel %s (%s)", kver, kpkg)
    tarball = dist()
    with tarfile.open(tarball) as t:
        name = [n for n in t.getnames() if n.endswith("/DEPENDS")][0]
        depends = t.extractfile(name).read().decode().split()
    t0 = time.monotonic()
    root = guest_root(depends)
    initrd, mods = initramfs(root, moddir)
    prep = time.monotonic() - t0
    programs = expected_programs()
    work = work_dir(tarball, programs)
    accel = args.accel
    log("root and initramfs ready in %.1f s (modules: %s); booting %s under qemu (%s)", prep, " ".join(mods), kver, accel)
    console = os.path.join(OUT, "console-%s-%s.log" % (kver, accel))
    boot_s, text, timed_out = boot(vmlinuz, initrd, root, work, accel, args.smp, args.timeout, console)
    gpath = os.path.join(work, "out", "guest.json")
    guest = json.load(open(gpath)) if os.path.isfile(gpath) else None
    m = re.search(r"kernels: guest userspace up at ([0-9.]+) s", text)
    up_s = float(m.group(1)) if m else None
    log("guest: %s in %.1f s of qemu (userspace up at %s s of guest uptime)%s; console: %s",
        "PASS" if guest and guest["passed"] else "FAIL", boot_s, up_s, " TIMED OUT" if timed_out else "", console)
    if guest is None:
        print(text[-4000:])
    host, host_s = (None, 0.0) if args.no_host else host_run(programs)
    previous = json.load(open(RECORD)) if os.path.isfile(RECORD) else {}
    tab = table(programs, guest, host, previous)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ok = bool(guest and guest["passed"]) and (args.no_host or bool(host and host["passed"]))
    results = {
        "date": when, "commit": git_commit(), "bpf_source": bpf_source(), "accel": accel, "kernel_package": kpkg,
        "qemu_seconds": round(boot_s, 1), "guest_userspace_up_s": up_s, "host_seconds": round(host_s, 1),
        "load": os.getloadavg(), "passed": ok,
        "guest": guest, "host": host,
    }
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    md = ("`make kernels` on %s, commit %s (BPF source %s); guest %s (%s) under qemu %s: %.0f s from qemu start to power-off "
          "(userspace up at %s s); host %s: %.0f s; load average %s\n\n%s\n" % (
              when, results["commit"], results["bpf_source"], kver, kpkg, accel, boot_s, up_s, platform.release(), host_s,
              " ".join("%.1f" % x for x in os.getloadavg()), tab))
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(md)
    print(md)
    for who, rep in (("guest", guest), ("host", host)):
        for c in (rep or {}).get("checks", []):
            if not c["ok"]:
                log("%s FAILED %s: %s", who, c["name"], c["detail"][:2000])
    if args.record and ok:
        rec = {"date": when, "commit": results["commit"], "bpf_source": results["bpf_source"], "accel": accel,
               "guest": {"kernel": guest["kernel"], "package": kpkg, "args_store": guest["default"]["args_store"],
                         "default": insns(guest, "default"), "hashmap": insns(guest, "hashmap")}}
        if host:
            rec["host"] = {"kernel": host["kernel"], "args_store": host["default"]["args_store"],
                           "default": insns(host, "default"), "hashmap": insns(host, "hashmap")}
        with open(RECORD, "w") as f:
            json.dump(rec, f, indent=1, sort_keys=True)
            f.write("\n")
        log("recorded in %s", os.path.relpath(RECORD, ROOT))
    log("%s (%.0f s in all)", "PASS" if ok else "FAIL", time.monotonic() - t_all)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
