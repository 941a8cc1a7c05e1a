# SPDX-License-Identifier: Apache-2.0
"""Helpers for the wirespan capture integration tests (Python 3 stdlib only).

What lives here:
  - Env: a per-test sandbox (temp dir + every process the test started,
    stopped at the end by pid, never by name);
  - start_nats(): nats-server on a free loopback port (IPv4 or ::1, optional
    JetStream), waited for until it accepts connections;
  - Capture: `build/wirespan capture ARGS` with stdout to a file; waits for
    "ready" on stderr (30 s), stops it with SIGINT and checks exit code 0,
    parses the JSON lines and the final metrics line;
  - CaptureResult / ConnView / Stream: per-(conn, dir) streams rebuilt from
    data + gap lines, with contiguity (tiling) checks, close invariants,
    pairing of client and server ends by address, and byte-exact comparison
    with the other end or with the bytes a peer recorded itself;
  - a small NATS frame parser for checking what a peer said it did;
  - Agent / AgentResult / Span: `build/wirespan agent --output stdout ARGS`,
    its OTLP/JSON lines flattened into spans with their resource, the
    metrics and agent_metrics lines it prints at SIGINT; start_peer /
    finish_peer for peers that run in the background (a {"ready":true} line
    first, the JSON result line last); start_nats_conf for a nats-server
    with a configuration file (authorization).

Every check raises TestFailure with a message that says what was expected and
what was seen.
"""

import collections
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build"
PEERS_SRC = REPO / "tests" / "peers"
PEERS_BIN = Path(os.environ.get("WIRESPAN_PEERS", BUILD / "peers"))
WIRESPAN = Path(os.environ.get("WIRESPAN", BUILD / "wirespan"))
PYTHON = sys.executable or "/usr/bin/python3"
NODE = shutil.which("node") or "/usr/bin/node"
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
CADDY = shutil.which("caddy") or "/usr/bin/caddy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CURL = shutil.which("curl") or "/usr/bin/curl"

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0

GO_PEER = PEERS_BIN / "natsclient-go"
C_PEER = PEERS_BIN / "natsclient-c"
NODE_PEER = PEERS_SRC / "node" / "natsclient.js"
RAW_PEER = PEERS_SRC / "py" / "rawclient.py"
SINK_PEER = PEERS_SRC / "py" / "natssink.py"
HTTP_BACKEND = PEERS_SRC / "py" / "httpbackend.py"

VERBOSE = bool(os.environ.get("WIRESPAN_TEST_VERBOSE"))


class TestFailure(AssertionError):
    pass


def check(cond, msg, *args):
    if not cond:
        raise TestFailure(msg % args if args else msg)


def log(msg, *args):
    if VERBOSE:
        print("    " + (msg % args if args else msg), file=sys.stderr, flush=True)


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def payload(k, size):
    """Payload of message k as every peer generates it: byte j = (k*131+j)&0xff."""
    start = (k * 131) & 0xFF
    cycle = bytes((start + j) & 0xFF for j in range(256))
    return (cycle * (size // 256 + 1))[:size]


def show(b, n=48):
    b = bytes(b[:n])
    return repr(b) + ("..." if n < len(b) else "")


# --------------------------------------------------------------------------
# processes


def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host, port, timeout=10.0, proc=None):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise TestFailure("%s exited with %s before listening on %s:%d" % (proc.args[0], proc.returncode, host, port))
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            try:
                s.connect((host, port))
                return
            except OSError:
                time.sleep(0.05)
    raise TestFailure("nothing listening on %s:%d after %.0fs" % (host, port, timeout))


class Env:
    """A test's sandbox: a temp dir and the processes it started."""

    def __init__(self, name):
        self.name = name
        self.tmp = Path(tempfile.mkdtemp(prefix="wirespan-it-%s-" % name))
        self.procs = []
        self.results = []
        self.failed = False

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.failed = et is not None
        self.cleanup()
        if not self.failed:
            # Field-level problems of the capture output are reported after
            # the byte checks passed, so a run shows both kinds of findings.
            for res in self.results:
                res.check_fields()
        return False

    def path(self, name):
        return self.tmp / name

    def spawn(self, args, stdout=None, stderr=None, env=None, name=None):
        """Start a process in its own process group; it is stopped by pid at cleanup."""
        args = [str(a) for a in args]
        log("spawn %s", " ".join(args))
        opened = []

        def target(x):
            if isinstance(x, (str, Path)):
                f = open(x, "wb")
                opened.append(f)
                return f
            return subprocess.DEVNULL if x is None else x

        try:
            p = subprocess.Popen(
                args,
                stdout=target(stdout),
                stderr=target(stderr),
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=str(self.tmp),
                start_new_session=True,
            )
        finally:
            for f in opened:
                f.close()
        p.wirespan_name = name or Path(args[0]).name
        self.procs.append(p)
        return p

    def run_peer(self, args, timeout=60.0, name=None, expect_ok=True):
        """Run a test peer to completion; return its JSON result line (parsed)."""
        name = name or Path(str(args[0])).name
        outp = self.path("%s.%d.out" % (name, len(self.procs)))
        errp = self.path("%s.%d.err" % (name, len(self.procs)))
        p = self.spawn(args, stdout=outp, stderr=errp, name=name)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process(p)
            raise TestFailure("%s did not finish within %.0fs; stderr: %s" % (name, timeout, tail(errp)))
        return peer_result(p, outp, errp, name, expect_ok)

    def cleanup(self):
        for p in reversed(self.procs):
            stop_process(p)
        keep = os.environ.get("WIRESPAN_KEEP_TMP", "")
        if keep == "all" or (self.failed and keep):
            print("    (kept %s)" % self.tmp, file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def peer_result(p, outp, errp, name, expect_ok=True):
    text = Path(outp).read_text(errors="replace").strip().splitlines()
    res = None
    for line in reversed(text):
        if line.startswith("{"):
            try:
                res = json.loads(line)
                break
            except ValueError:
                pass
    if res is None:
        raise TestFailure("%s (exit %s) printed no JSON result; stderr: %s" % (name, p.returncode, tail(errp)))
    res["_pid"] = p.pid
    if expect_ok:
        check(
            p.returncode == 0 and res.get("ok"),
            "%s failed (exit %s): %s; stderr: %s",
            name,
            p.returncode,
            res.get("error") or res.get("errors"),
            tail(errp),
        )
    return res


def tail(path, n=600):
    try:
        t = Path(path).read_text(errors="replace")
    except OSError:
        return "(no output)"
    t = t.strip()
    return ("..." + t[-n:]) if len(t) > n else (t or "(empty)")


def stop_process(p, sig=signal.SIGTERM, timeout=5.0):
    if p.poll() is not None:
        return p.returncode
    try:
        p.send_signal(sig)
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        try:
            return p.wait(5)
        except subprocess.TimeoutExpired:
            return None
    except ProcessLookupError:
        return p.poll()


class NatsServer:
    def __init__(self, proc, host, port):
        self.proc = proc
        self.host = host
        self.port = port
        self.pid = proc.pid
        h = "[%s]" % host if ":" in host else host
        self.url = "nats://%s:%d" % (h, port)


def start_nats(env, host="127.0.0.1", jetstream=False):
    port = free_port(host)
    args = [NATS_SERVER, "-a", host, "-p", str(port)]
    if jetstream:
        sd = env.path("js")
        sd.mkdir(exist_ok=True)
        args += ["-js", "-sd", str(sd)]
    p = env.spawn(args, stdout=env.path("nats-server.%d.log" % port), stderr=subprocess.STDOUT, name="nats-server")
    wait_port(host, port, 10.0, p)
    return NatsServer(p, host, port)


# --------------------------------------------------------------------------
# the capture process


class Capture:
    """A running `wirespan capture`."""

    def __init__(self, env, args):
        self.env = env
        self.args = [str(a) for a in args]
        self.out_path = env.path("capture.%d.jsonl" % len(env.procs))
        self.stderr_lines = []
        self._ready = threading.Event()
        self._lock = threading.Lock()
        if not WIRESPAN.exists():
            raise TestFailure("%s does not exist (run make)" % WIRESPAN)
        cmd = [str(WIRESPAN), "capture"] + self.args
        self.cmd = " ".join(cmd)
        log("capture: %s", self.cmd)
        self.proc = env.spawn(cmd, stdout=self.out_path, stderr=subprocess.PIPE, name="wirespan")
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._pos = 0
        self._partial = b""
        self._lines = []
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None:
                self._reader.join(2)
                raise TestFailure(
                    "`%s` exited with %s before printing ready; stderr:\n%s"
                    % (self.cmd, self.proc.returncode, self.stderr_tail())
                )
            if time.monotonic() > deadline:
                raise TestFailure("`%s` did not print ready within %.0fs; stderr:\n%s" % (self.cmd, READY_TIMEOUT, self.stderr_tail()))
        self.t_ready = time.monotonic()

    def _read_stderr(self):
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.stderr_lines.append(line)
            if re.search(r"\bready\b", line):
                self._ready.set()
        self.proc.stderr.close()

    def stderr_tail(self, n=25):
        with self._lock:
            lines = list(self.stderr_lines)
        # libbpf verifier logs are huge: keep the interesting end.
        return "\n".join("    | " + x[:300] for x in lines[-n:]) or "    | (empty)"

    def poll_lines(self):
        """Lines parsed so far (reads the output file incrementally)."""
        with open(self.out_path, "rb") as f:
            f.seek(self._pos)
            chunk = f.read()
        self._pos += len(chunk)
        buf = self._partial + chunk
        parts = buf.split(b"\n")
        self._partial = parts.pop()
        for raw in parts:
            if raw.strip():
                self._lines.append(parse_json_line(raw, len(self._lines) + 1))
        return self._lines

    def wait_for(self, pred, timeout=15.0, what="condition"):
        """Wait until pred(lines) is true; returns False on timeout (no raise)."""
        deadline = time.monotonic() + timeout
        while True:
            if pred(self.poll_lines()):
                return True
            if self.proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                log("timeout waiting for %s", what)
                return False
            time.sleep(0.1)

    def wait_closes(self, match_open, n, timeout=15.0):
        """Wait until n connections whose open line satisfies match_open are closed."""

        def pred(lines):
            opened = {l["conn"] for l in lines if l.get("type") == "open" and match_open(l)}
            closed = {l["conn"] for l in lines if l.get("type") == "close" and l.get("conn") in opened}
            return len(closed) >= n

        return self.wait_for(pred, timeout, "%d closes" % n)

    def wait_all_closed(self, timeout=10.0):
        """Wait until every opened connection has its close line."""

        def pred(lines):
            opened = {l["conn"] for l in lines if l.get("type") == "open"}
            closed = {l["conn"] for l in lines if l.get("type") == "close"}
            return opened and opened <= closed

        return self.wait_for(pred, timeout, "all closes")

    def metrics_now(self, timeout=5.0):
        """SIGUSR1 -> metrics line on stderr, without stopping."""
        with self._lock:
            k = len(self.stderr_lines)
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                new = self.stderr_lines[k:]
            m = find_metrics(new)
            if m is not None:
                return m
            time.sleep(0.05)
        return None

    def stop(self, settle=0.3):
        """SIGINT, check exit 0, return a CaptureResult."""
        time.sleep(settle)
        if self.proc.poll() is not None:
            raise TestFailure("`%s` exited during the test, before the test stopped it (exit %s); stderr:\n%s" % (self.cmd, self.proc.returncode, self.stderr_tail()))
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise TestFailure("`%s` did not exit within %.0fs of SIGINT; stderr:\n%s" % (self.cmd, STOP_TIMEOUT, self.stderr_tail()))
        self._reader.join(5)
        stop_s = time.monotonic() - t0
        check(rc == 0, "`%s` exited with %s after SIGINT (expected 0); stderr:\n%s", self.cmd, rc, self.stderr_tail())
        lines = self.poll_lines()
        if self._partial.strip():
            raise TestFailure("capture output ends with an unterminated line: %s" % show(self._partial, 200))
        with self._lock:
            err = list(self.stderr_lines)
        metrics = find_metrics(err)
        check(metrics is not None, "no {\"type\":\"metrics\"} line on stderr after SIGINT; stderr:\n%s", self.stderr_tail())
        log("capture stopped in %.2fs: %d lines; metrics %s", stop_s, len(lines), json.dumps(metrics)[:400])
        res = CaptureResult(lines, metrics, err, self.cmd)
        self.env.results.append(res)
        return res


def find_metrics(lines):
    found = None
    for line in lines:
        s = line.strip()
        if s.startswith("{") and '"metrics"' in s:
            try:
                d = json.loads(s)
            except ValueError:
                continue
            if d.get("type") == "metrics":
                found = d
    return found


def metric(metrics, key):
    """Find key anywhere in the (possibly nested) metrics object."""
    if isinstance(metrics, dict):
        if key in metrics and not isinstance(metrics[key], (dict, list)):
            return metrics[key]
        for v in metrics.values():
            r = metric(v, key)
            if r is not None:
                return r
    elif isinstance(metrics, list):
        for v in metrics:
            r = metric(v, key)
            if r is not None:
                return r
    return None


def parse_json_line(raw, lineno):
    try:
        d = json.loads(raw)
    except ValueError as e:
        raise TestFailure("capture stdout line %d is not JSON (%s): %s" % (lineno, e, show(raw, 200)))
    check(isinstance(d, dict) and "type" in d, "capture stdout line %d has no type: %s", lineno, show(raw, 200))
    return d


# --------------------------------------------------------------------------
# parsed output

DIRS = ("egress", "ingress")
GAP_REASONS = {"cap", "iov", "fault", "lost", "unclassified", "evicted"}
SYSCALLS = {"write", "writev", "sendto", "sendmsg", "read", "readv", "recvfrom", "recvmsg"}
EGRESS_SYSCALLS = {"write", "writev", "sendto", "sendmsg"}


class Stream:
    """One direction of one connection, rebuilt from its data and gap lines."""

    def __init__(self, conn, dir, pieces):
        self.conn = conn
        self.dir = dir
        # (offset, len, kind, data-bytes or gap-reason, line)
        self.pieces = sorted(pieces, key=lambda p: (p[0], p[1]))
        self.start = self.pieces[0][0] if self.pieces else 0
        self.end = max((p[0] + p[1] for p in self.pieces), default=0)
        self.data_bytes = sum(p[1] for p in self.pieces if p[2] == "data")
        self.gap_bytes = sum(p[1] for p in self.pieces if p[2] == "gap")
        self.gap_reasons = collections.Counter()
        for p in self.pieces:
            if p[2] == "gap":
                self.gap_reasons[p[3]] += p[1]
        self._buf = None
        self._ranges = None

    def __repr__(self):
        return "<%s %s [%d,%d) data=%d gap=%d %s>" % (self.conn, self.dir, self.start, self.end, self.data_bytes, self.gap_bytes, dict(self.gap_reasons))

    def tiling_problems(self, start=0, end=None):
        """Offsets must tile [start, end) exactly with data and gap pieces."""
        probs = []
        pos = start
        for off, ln, kind, _, _ in self.pieces:
            if off > pos:
                probs.append("hole [%d,%d) before a %s at %d" % (pos, off, kind, off))
            elif off < pos:
                probs.append("overlap: %s at [%d,%d) starts before %d" % (kind, off, off + ln, pos))
            pos = max(pos, off + ln)
        if end is not None and pos != end:
            probs.append("pieces end at %d, expected %d (close bytes)" % (pos, end))
        return probs

    def buf(self):
        """(bytearray indexed by offset - 0, list of captured [lo,hi) ranges)."""
        if self._buf is None:
            b = bytearray(self.end)
            ranges = []
            for off, ln, kind, val, _ in self.pieces:
                if kind == "data":
                    b[off : off + ln] = val
                    if ranges and ranges[-1][1] == off:
                        ranges[-1][1] = off + ln
                    else:
                        ranges.append([off, off + ln])
            self._buf, self._ranges = b, ranges
        return self._buf, self._ranges

    def contiguous(self):
        """All bytes, when the stream has no gaps and starts at 0."""
        check(self.gap_bytes == 0 and self.start == 0, "%r is not gapless from 0", self)
        return bytes(self.buf()[0])

    def data_lines(self):
        return [p[4] for p in self.pieces if p[2] == "data"]

    def gap_lines(self):
        return [p[4] for p in self.pieces if p[2] == "gap"]


def intersect(ra, rb):
    out, i, j = [], 0, 0
    while i < len(ra) and j < len(rb):
        lo = max(ra[i][0], rb[j][0])
        hi = min(ra[i][1], rb[j][1])
        if lo < hi:
            out.append((lo, hi))
        if ra[i][1] < rb[j][1]:
            i += 1
        else:
            j += 1
    return out


def first_diff(a, b):
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n if len(a) != len(b) else -1


class ConnView:
    def __init__(self, cid):
        self.id = cid
        self.open = None
        self.close = None
        self.pieces = {"egress": [], "ingress": []}
        self.nlines = 0

    def __repr__(self):
        o = self.open or {}
        return "%s(%s %s %s:%s->%s:%s)" % (self.id, o.get("comm"), o.get("role"), o.get("laddr"), o.get("lport"), o.get("raddr"), o.get("rport"))

    @property
    def pid(self):
        return int(self.id.split(":")[0])

    @property
    def fd(self):
        return int(self.id.split(":")[1])

    @property
    def gen(self):
        return self.id.split(":", 2)[2]

    def get(self, k, default=None):
        return (self.open or {}).get(k, default)

    def stream(self, d):
        return Stream(self.id, d, self.pieces[d])


class CaptureResult:
    def __init__(self, lines, metrics, stderr, cmd):
        self.lines = lines
        self.metrics = metrics
        self.stderr = stderr
        self.cmd = cmd
        self.conns = collections.OrderedDict()
        self.problems = []  # output that cannot be rebuilt into streams
        self.field_problems = []  # lines that parse but lack or misuse fields
        self.types = collections.Counter()
        for n, l in enumerate(lines, 1):
            t = l.get("type")
            self.types[t] += 1
            cid = l.get("conn")
            if t not in ("open", "close", "data", "gap"):
                continue
            if not isinstance(cid, str) or len(cid.split(":")) != 3:
                self.problems.append("line %d: bad conn %r" % (n, cid))
                continue
            c = self.conns.setdefault(cid, ConnView(cid))
            c.nlines += 1
            if t == "open":
                if c.open is not None:
                    self.problems.append("line %d: second open for %s" % (n, cid))
                if c.pieces["egress"] or c.pieces["ingress"]:
                    self.problems.append("line %d: open for %s after its data" % (n, cid))
                c.open = l
            elif t == "close":
                if c.close is not None:
                    self.problems.append("line %d: second close for %s" % (n, cid))
                c.close = l
            else:
                if c.close is not None:
                    self.problems.append("line %d: %s after close for %s" % (n, t, cid))
                d = l.get("dir")
                if d not in DIRS:
                    self.problems.append("line %d: bad dir %r" % (n, d))
                    continue
                off, ln = l.get("offset"), l.get("len")
                if not isinstance(off, int) or not isinstance(ln, int) or off < 0 or ln <= 0:
                    self.problems.append("line %d: bad offset/len %r/%r" % (n, off, ln))
                    continue
                if t == "data":
                    s = l.get("data")
                    try:
                        b = s.encode("latin-1")
                    except (AttributeError, UnicodeEncodeError):
                        self.problems.append("line %d: data is not one byte per character" % n)
                        continue
                    if len(b) != ln:
                        self.problems.append("line %d: len %d but data has %d bytes" % (n, ln, len(b)))
                        continue
                    missing = [k for k in ("pid", "tid", "comm", "proto", "syscall", "ts") if k not in l]
                    if missing:
                        self.field_problems.append("line %d: data line without %s (offset %d len %d)" % (n, "/".join(missing), off, ln))
                    elif l["syscall"] not in SYSCALLS:
                        self.field_problems.append("line %d: unknown syscall %r" % (n, l["syscall"]))
                    elif (l["syscall"] in EGRESS_SYSCALLS) != (d == "egress"):
                        self.field_problems.append("line %d: syscall %s in direction %s" % (n, l["syscall"], d))
                    c.pieces[d].append((off, ln, "data", b, l))
                else:
                    r = l.get("reason")
                    if r not in GAP_REASONS:
                        self.problems.append("line %d: unknown gap reason %r" % (n, r))
                    c.pieces[d].append((off, ln, "gap", r, l))

    # selection -------------------------------------------------------

    def select(self, pred=None, **kw):
        out = []
        for c in self.conns.values():
            if c.open is None:
                continue
            if any(c.open.get(k) != v for k, v in kw.items()):
                continue
            if pred is not None and not pred(c):
                continue
            out.append(c)
        return out

    def by_pid(self, pid):
        return [c for c in self.conns.values() if c.pid == pid]

    def _tuple_index(self):
        if getattr(self, "_tindex", None) is None:
            idx = collections.defaultdict(list)
            for x in self.conns.values():
                if x.open is not None:
                    o = x.open
                    idx[(o.get("laddr"), o.get("lport"), o.get("raddr"), o.get("rport"))].append(x)
            self._tindex = idx
        return self._tindex

    def peer_of(self, c):
        """The other end of c (client <-> server) by addresses, or None."""
        o = c.open
        cands = [x for x in self._tuple_index().get((o.get("raddr"), o.get("rport"), o.get("laddr"), o.get("lport")), []) if x is not c]
        if len(cands) > 1:
            # the same 4-tuple twice (port reuse): take the one opened closest in time
            cands.sort(key=lambda x: abs(x.open.get("ts", 0) - o.get("ts", 0)))
        return cands[0] if cands else None

    def summary(self):
        return "%d lines %s, %d conns" % (len(self.lines), dict(self.types), len(self.conns))

    def describe_conns(self, limit=12):
        rows = []
        for c in list(self.conns.values())[:limit]:
            rows.append(
                "%r pre=%s close=%s e=%r i=%r"
                % (c, c.get("preexisting"), bool(c.close), c.stream("egress"), c.stream("ingress"))
            )
        more = len(self.conns) - limit
        return "\n      ".join(rows) + ("\n      ... %d more" % more if more > 0 else "")

    # checks ----------------------------------------------------------

    def check_well_formed(self):
        check(not self.problems, "malformed capture output: %s", "; ".join(self.problems[:10]))

    def check_fields(self):
        """Called at the end of a test, so the byte checks run first."""
        p = self.field_problems
        check(not p, "%d capture line(s) with missing/wrong fields: %s%s", len(p), "; ".join(p[:4]), " ..." if len(p) > 4 else "")

    def check_conn(self, c, from_start=True, allow_gaps=(), need_close=True, summary=False):
        """Open/close present, streams tile, close invariants hold."""
        check(c.open is not None, "%s: no open line", c.id)
        for k in ("pid", "comm", "role", "proto", "family", "laddr", "lport", "raddr", "rport", "ts"):
            check(k in c.open, "%r: open line has no %r: %s", c, k, c.open)
        check(c.open["pid"] == c.pid, "%r: open pid %s does not match conn id", c, c.open["pid"])
        check(c.open["role"] in ("client", "server", "unknown"), "%r: bad role %r", c, c.open["role"])
        if need_close:
            check(c.close is not None, "%r: no close line (streams: e=%r i=%r)", c, c.stream("egress"), c.stream("ingress"))
        for d in DIRS:
            s = c.stream(d)
            if summary:
                check(not s.pieces, "%r: data/gap lines in --summary mode", c)
            else:
                end = None
                if c.close is not None and from_start:
                    end = c.close[d]["bytes"]
                start = 0 if from_start else s.start
                probs = s.tiling_problems(start, end)
                check(not probs, "%r %s: offsets do not tile the stream: %s", c, d, "; ".join(probs[:5]))
                bad = set(s.gap_reasons) - set(allow_gaps)
                check(not bad, "%r %s: unexpected gaps %s (allowed: %s); gap lines: %s", c, d, dict(s.gap_reasons), sorted(allow_gaps) or "none",
                      [(g["offset"], g["len"], g["reason"]) for g in s.gap_lines()[:5]])
            if c.close is not None:
                cd = c.close.get(d)
                check(isinstance(cd, dict) and all(k in cd for k in ("bytes", "captured", "gap")), "%r: close line lacks %s.bytes/captured/gap: %s", c, d, c.close)
                if from_start:
                    check(cd["captured"] + cd["gap"] == cd["bytes"], "%r %s: close captured %d + gap %d != bytes %d", c, d, cd["captured"], cd["gap"], cd["bytes"])
                if not summary and from_start:
                    check(cd["captured"] == s.data_bytes, "%r %s: close says captured %d but data lines hold %d", c, d, cd["captured"], s.data_bytes)
                    check(cd["gap"] == s.gap_bytes, "%r %s: close says gap %d but gap lines hold %d", c, d, cd["gap"], s.gap_bytes)

    def check_pair(self, client, server, full=True):
        """client egress == server ingress and server egress == client ingress.

        Compared where both ends captured the bytes; with full=True the two
        streams must also have the same length (close bytes)."""
        for d_c, d_s in (("egress", "ingress"), ("ingress", "egress")):
            a, b = client.stream(d_c), server.stream(d_s)
            ba, ra = a.buf()
            bb, rb = b.buf()
            common = intersect(ra, rb)
            for lo, hi in common:
                if ba[lo:hi] != bb[lo:hi]:
                    i = first_diff(ba[lo:hi], bb[lo:hi]) + lo
                    raise TestFailure(
                        "%r %s != %r %s at offset %d: %s vs %s" % (client, d_c, server, d_s, i, show(ba[i:]), show(bb[i:]))
                    )
            if full and client.close and server.close:
                check(
                    client.close[d_c]["bytes"] == server.close[d_s]["bytes"],
                    "%r %s bytes %d != %r %s bytes %d",
                    client, d_c, client.close[d_c]["bytes"], server, d_s, server.close[d_s]["bytes"],
                )
            if full and not a.gap_bytes and not b.gap_bytes:
                check(ra == rb, "%r %s captured %s but %r %s captured %s", client, d_c, ra[:4], server, d_s, rb[:4])

    def check_against(self, c, d, expect, base=0, need_all=True):
        """Every captured byte of c's direction d equals expect[offset-base]."""
        s = c.stream(d)
        b, ranges = s.buf()
        covered = 0
        for lo, hi in ranges:
            check(lo - base >= 0 and hi - base <= len(expect), "%r %s: data at [%d,%d) outside the %d bytes the peer moved (base %d)", c, d, lo, hi, len(expect), base)
            got = b[lo:hi]
            want = expect[lo - base : hi - base]
            if got != want:
                i = first_diff(got, want)
                raise TestFailure("%r %s differs from the peer's bytes at offset %d: captured %s, peer %s" % (c, d, lo + i, show(got[i:]), show(want[i:])))
            covered += hi - lo
        if need_all:
            check(covered == len(expect) and not s.gap_bytes, "%r %s: captured %d of the peer's %d bytes (gaps %s)", c, d, covered, len(expect), dict(s.gap_reasons))
        return covered


# --------------------------------------------------------------------------
# NATS frames


class Frame:
    __slots__ = ("op", "args", "payload", "headers", "offset")

    def __init__(self, op, args, payload, headers, offset):
        self.op, self.args, self.payload, self.headers, self.offset = op, args, payload, headers, offset

    def __repr__(self):
        return "%s %s (%d B @%d)" % (self.op, " ".join(self.args), len(self.payload), self.offset)


def nats_frames(buf):
    """Parse NATS frames (either direction) from a contiguous byte stream.

    Returns (frames, consumed): consumed < len(buf) when the stream ends inside
    a frame."""
    out, pos = [], 0
    n = len(buf)
    while pos < n:
        end = buf.find(b"\r\n", pos)
        if end < 0:
            break
        line = bytes(buf[pos:end])
        parts = line.split()
        if not parts:
            pos = end + 2
            continue
        op = parts[0].upper().decode("latin-1")
        args = [x.decode("latin-1") for x in parts[1:]]
        if op in ("PUB", "MSG"):
            ln, hl = int(args[-1]), 0
        elif op in ("HPUB", "HMSG"):
            ln, hl = int(args[-1]), int(args[-2])
        else:
            if op in ("INFO", "CONNECT"):
                args = [line[len(op) :].strip().decode("latin-1")]
            out.append(Frame(op, args, b"", b"", pos))
            pos = end + 2
            continue
        if end + 2 + ln + 2 > n:
            break
        body = bytes(buf[end + 2 : end + 2 + ln])
        check(buf[end + 2 + ln : end + 4 + ln] == b"\r\n", "NATS %s at %d: payload not followed by CRLF", op, pos)
        out.append(Frame(op, args, body[hl:], body[:hl], pos))
        pos = end + 4 + ln
    return out, pos


# --------------------------------------------------------------------------
# templates


def render(template, dest, **subs):
    t = Path(template).read_text()
    for k, v in subs.items():
        t = t.replace("@%s@" % k, str(v))
    left = re.findall(r"@[A-Z_]+@", t)
    check(not left, "template %s: unreplaced %s", template, left)
    Path(dest).write_text(t)
    return dest


# --------------------------------------------------------------------------
# `wirespan agent --output stdout`: OTLP/JSON spans


ROLE_GO_PEER = PEERS_BIN / "natsrole-go"
ROLE_C_PEER = PEERS_BIN / "natsrole-c"
ROLE_NODE_PEER = PEERS_SRC / "node" / "natsrole.js"

SPAN_KIND = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def start_nats_conf(env, conf="", jetstream=False, host="127.0.0.1", extra_args=()):
    """nats-server with a configuration file (e.g. authorization) on a free port."""
    port = free_port(host)
    cfg = env.path("nats-server.%d.conf" % port)
    cfg.write_text("listen: \"%s:%d\"\n%s\n" % (host, port, conf))
    args = [NATS_SERVER, "-c", str(cfg)] + [str(a) for a in extra_args]
    if jetstream:
        sd = env.path("js.%d" % port)
        sd.mkdir(exist_ok=True)
        args += ["-js", "-sd", str(sd)]
    p = env.spawn(args, stdout=env.path("nats-server.%d.log" % port), stderr=subprocess.STDOUT, name="nats-server")
    wait_port(host, port, 10.0, p)
    return NatsServer(p, host, port)


def otlp_value(v):
    """An OTLP/JSON AnyValue as a Python value (intValue is a decimal string)."""
    check(isinstance(v, dict) and len(v) == 1, "attribute value is not a one-key AnyValue: %r", v)
    (k, x), = v.items()
    if k == "intValue":
        check(isinstance(x, (str, int)) and re.fullmatch(r"-?\d+", str(x)), "bad intValue %r", x)
        return int(x)
    if k in ("stringValue", "boolValue", "doubleValue"):
        return x
    raise TestFailure("unexpected AnyValue kind %r" % k)


def otlp_attrs(arr, where):
    check(isinstance(arr, list), "%s: attributes is not a list: %r", where, arr)
    out = {}
    for kv in arr:
        check(isinstance(kv, dict) and "key" in kv and "value" in kv, "%s: bad attribute %r", where, kv)
        check(kv["key"] not in out, "%s: attribute %r twice", where, kv["key"])
        out[kv["key"]] = otlp_value(kv["value"])
    return out


class Span:
    """One span of the agent's output, flattened with its resource."""

    __slots__ = ("name", "kind", "trace", "id", "parent", "start", "end", "attrs", "links", "status",
                 "resource", "res_key", "line", "raw")

    def __init__(self, d, resource, res_key, line):
        self.raw = d
        self.line = line
        self.name = d.get("name")
        self.kind = d.get("kind")
        self.trace = d.get("traceId")
        self.id = d.get("spanId")
        self.parent = d.get("parentSpanId") or None
        self.start = int(d.get("startTimeUnixNano", "0"))
        self.end = int(d.get("endTimeUnixNano", "0"))
        self.attrs = otlp_attrs(d.get("attributes", []), "span %r" % self.name)
        self.links = [(l.get("traceId"), l.get("spanId")) for l in d.get("links", [])]
        self.status = d.get("status") or {}
        self.resource = resource
        self.res_key = res_key

    @property
    def pid(self):
        return self.resource.get("process.pid")

    @property
    def exe(self):
        return self.resource.get("process.executable.name")

    def a(self, k, default=None):
        return self.attrs.get(k, default)

    def __repr__(self):
        return "<%s %s pid=%s trace=%s id=%s parent=%s fp=%s>" % (
            self.name, SPAN_KIND.get(self.kind, self.kind), self.pid, (self.trace or "")[:8], self.id,
            self.parent, self.attrs.get("wirespan.message.fingerprint"))


def parse_otlp_line(raw, lineno, problems):
    """One ExportTraceServiceRequest line -> [Span]; shape problems appended."""
    try:
        d = json.loads(raw)
    except ValueError as e:
        raise TestFailure("agent stdout line %d is not JSON (%s): %s" % (lineno, e, show(raw, 200)))
    check(isinstance(d, dict) and isinstance(d.get("resourceSpans"), list),
          "agent stdout line %d is not an ExportTraceServiceRequest: %s", lineno, show(raw, 200))
    out = []
    for rs in d["resourceSpans"]:
        res = otlp_attrs(rs.get("resource", {}).get("attributes", []), "line %d resource" % lineno)
        key = json.dumps(sorted(res.items()))
        if not isinstance(res.get("process.pid"), int):
            problems.append("line %d: resource without an int process.pid: %s" % (lineno, res))
        for ss in rs.get("scopeSpans", []):
            for sd in ss.get("spans", []):
                s = Span(sd, res, key, lineno)
                where = "line %d span %r" % (lineno, s.name)
                if not (isinstance(s.trace, str) and re.fullmatch(r"[0-9a-f]{32}", s.trace)) or s.trace == "0" * 32:
                    problems.append("%s: bad traceId %r" % (where, s.trace))
                if not (isinstance(s.id, str) and re.fullmatch(r"[0-9a-f]{16}", s.id)) or s.id == "0" * 16:
                    problems.append("%s: bad spanId %r" % (where, s.id))
                if s.parent is not None and not re.fullmatch(r"[0-9a-f]{16}", s.parent):
                    problems.append("%s: bad parentSpanId %r" % (where, s.parent))
                if s.kind not in SPAN_KIND:
                    problems.append("%s: bad kind %r" % (where, s.kind))
                if s.start <= 0 or s.end < s.start:
                    problems.append("%s: bad times start=%d end=%d" % (where, s.start, s.end))
                if sd.get("droppedAttributesCount"):
                    problems.append("%s: %s attributes dropped" % (where, sd["droppedAttributesCount"]))
                out.append(s)
    return out


class AgentResult:
    def __init__(self, spans, stdout_bytes, stderr_lines, metrics, agent_metrics, problems, cmd):
        self.spans = spans
        self.stdout = stdout_bytes
        self.stderr_lines = stderr_lines
        self.stderr = "\n".join(stderr_lines)
        self.metrics = metrics
        self.agent_metrics = agent_metrics
        self.problems = problems
        self.cmd = cmd

    def check_well_formed(self):
        check(not self.problems, "malformed agent output: %s", "; ".join(self.problems[:8]))

    def check_metrics(self, allow=()):
        """agent_metrics agree with the spans printed; no losses, errors or drops
        (except the counters named in allow)."""
        am = self.agent_metrics
        nm = am.get("nats", {})
        check(am.get("spans_out") == len(self.spans), "agent_metrics.spans_out %s but %d spans on stdout",
              am.get("spans_out"), len(self.spans))
        bad = {k: nm.get(k) for k in ("parse_errors", "gap_bytes", "bad_json", "nomem", "pending_evicted", "recent_evicted",
                                      "subs_dropped", "no_fingerprint") if nm.get(k) and k not in allow}
        for k in ("write_errors", "attrs_dropped", "attrs_cut", "links_dropped", "events_dropped"):
            if am.get(k) and k not in allow:
                bad[k] = am[k]
            check(k in am, "agent_metrics has no %s counter", k)
        check(not bad, "agent_metrics report problems: %s (all: %s)", bad, json.dumps(am))
        ops = collections.Counter(s.name.split(" ", 1)[0] for s in self.spans)
        for key, names in (("deliver", ("deliver",)), ("process", ("process",)), ("pull", ("receive",)),
                           ("settle", ("ack", "nak", "term", "progress", "next")), ("request", ("send",))):
            got = sum(ops[n] for n in names)
            check(nm.get(key) == got, "agent_metrics.nats.%s is %s but %d %s spans were printed", key, nm.get(key), got, "/".join(names))

    def select(self, name=None, pid=None, kind=None, pred=None):
        out = []
        for s in self.spans:
            if name is not None and s.name != name:
                continue
            if pid is not None and s.pid != pid:
                continue
            if kind is not None and s.kind != kind:
                continue
            if pred is not None and not pred(s):
                continue
            out.append(s)
        return out

    def by_pid(self, pid):
        return [s for s in self.spans if s.pid == pid]

    def names(self, pid):
        return collections.Counter(s.name for s in self.by_pid(pid))

    def by_id(self):
        idx = collections.defaultdict(list)
        for s in self.spans:
            idx[s.id].append(s)
        return idx

    def summary(self, limit=30):
        c = collections.Counter((s.pid, s.exe, s.name) for s in self.spans)
        rows = ["%s(%s) %r x%d" % (pid, exe, n, k) for (pid, exe, n), k in sorted(c.items(), key=lambda x: str(x))]
        more = len(rows) - limit
        return "%d spans: " % len(self.spans) + "; ".join(rows[:limit]) + (" ... %d more" % more if more > 0 else "")


class Agent:
    """A running `wirespan agent --output stdout ARGS`."""

    def __init__(self, env, args=(), wrap=(), binary=None):
        """wrap: a command prefix (e.g. capsh dropping privileges);
        binary: another wirespan binary than build/wirespan."""
        self.env = env
        self.args = ["--output", "stdout"] + [str(a) for a in args]
        self.out_path = env.path("agent.%d.jsonl" % len(env.procs))
        self.stderr_lines = []
        self._ready = threading.Event()
        self._lock = threading.Lock()
        if not WIRESPAN.exists():
            raise TestFailure("%s does not exist (run make)" % WIRESPAN)
        cmd = [str(a) for a in wrap] + [str(binary or WIRESPAN), "agent"] + self.args
        self.cmd = " ".join(cmd)
        log("agent: %s", self.cmd)
        self.proc = env.spawn(cmd, stdout=self.out_path, stderr=subprocess.PIPE, name="wirespan")
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self._pos = 0
        self._partial = b""
        self._nlines = 0
        self.spans = []
        self.problems = []
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None:
                self._reader.join(2)
                raise TestFailure("`%s` exited with %s before printing ready; stderr:\n%s"
                                  % (self.cmd, self.proc.returncode, self.stderr_tail()))
            if time.monotonic() > deadline:
                raise TestFailure("`%s` did not print ready within %.0fs; stderr:\n%s" % (self.cmd, READY_TIMEOUT, self.stderr_tail()))

    def _read_stderr(self):
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.stderr_lines.append(line)
            if re.search(r"\bready\b", line):
                self._ready.set()
        self.proc.stderr.close()

    def stderr_tail(self, n=25):
        with self._lock:
            lines = list(self.stderr_lines)
        return "\n".join("    | " + x[:300] for x in lines[-n:]) or "    | (empty)"

    def poll_spans(self):
        with open(self.out_path, "rb") as f:
            f.seek(self._pos)
            chunk = f.read()
        self._pos += len(chunk)
        parts = (self._partial + chunk).split(b"\n")
        self._partial = parts.pop()
        for raw in parts:
            if raw.strip():
                self._nlines += 1
                self.spans.extend(parse_otlp_line(raw, self._nlines, self.problems))
        return self.spans

    def count(self, name=None, pid=None):
        return sum(1 for s in self.poll_spans() if (name is None or s.name == name) and (pid is None or s.pid == pid))

    def wait_for(self, pred, timeout=15.0, what="condition"):
        """Wait until pred(spans) is true; False on timeout (no raise)."""
        deadline = time.monotonic() + timeout
        while True:
            if pred(self.poll_spans()):
                return True
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log("timeout waiting for %s", what)
                return False
            time.sleep(0.1)

    def wait_counts(self, want, timeout=15.0):
        """want: {(name, pid): n}; waits until at least n of each were printed."""

        def pred(spans):
            c = collections.Counter((s.name, s.pid) for s in spans)
            return all(c[k] >= n for k, n in want.items())

        return self.wait_for(pred, timeout, "spans %s" % want)

    def stop(self, settle=0.3):
        """SIGINT, exit 0 required, the metrics lines required; returns AgentResult."""
        time.sleep(settle)
        if self.proc.poll() is not None:
            raise TestFailure("`%s` exited during the test (exit %s); stderr:\n%s" % (self.cmd, self.proc.returncode, self.stderr_tail()))
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise TestFailure("`%s` did not exit within %.0fs of SIGINT; stderr:\n%s" % (self.cmd, STOP_TIMEOUT, self.stderr_tail()))
        self._reader.join(5)
        check(rc == 0, "`%s` exited with %s after SIGINT (expected 0); stderr:\n%s", self.cmd, rc, self.stderr_tail())
        spans = list(self.poll_spans())
        check(not self._partial.strip(), "agent output ends with an unterminated line: %s", show(self._partial, 200))
        with self._lock:
            err = list(self.stderr_lines)
        metrics = agent_metrics = None
        for line in err:
            s = line.strip()
            if not s.startswith("{"):
                continue
            try:
                d = json.loads(s)
            except ValueError:
                continue
            if d.get("type") == "metrics":
                metrics = d
            elif d.get("type") == "agent_metrics":
                agent_metrics = d
        check(metrics is not None, "no {\"type\":\"metrics\"} line on the agent's stderr after SIGINT; stderr:\n%s", self.stderr_tail())
        check(agent_metrics is not None, "no {\"type\":\"agent_metrics\"} line on the agent's stderr after SIGINT; stderr:\n%s", self.stderr_tail())
        with open(self.out_path, "rb") as f:
            out = f.read()
        log("agent stopped: %d spans; agent_metrics %s", len(spans), json.dumps(agent_metrics)[:600])
        return AgentResult(spans, out, err, metrics, agent_metrics, list(self.problems), self.cmd)


def start_peer(env, args, name, ready=False, timeout=20.0, env_vars=None):
    """Start a peer in the background; with ready=True wait for its {"ready":true} line."""
    outp = env.path("%s.%d.out" % (name, len(env.procs)))
    errp = env.path("%s.%d.err" % (name, len(env.procs)))
    penv = None
    if env_vars:
        penv = dict(os.environ)
        penv.update(env_vars)
    p = env.spawn(args, stdout=outp, stderr=errp, env=penv, name=name)
    p.wirespan_out, p.wirespan_err = outp, errp
    if ready:
        deadline = time.monotonic() + timeout
        while True:
            try:
                text = Path(outp).read_text(errors="replace")
            except OSError:
                text = ""
            if '"ready"' in text:
                break
            if p.poll() is not None:
                raise TestFailure("%s exited with %s before it was ready; stdout: %s stderr: %s" % (name, p.returncode, tail(outp), tail(errp)))
            if time.monotonic() > deadline:
                raise TestFailure("%s not ready within %.0fs; stderr: %s" % (name, timeout, tail(errp)))
            time.sleep(0.02)
    return p


def finish_peer(p, timeout=60.0, expect_ok=True):
    """Wait for a peer started by start_peer; return its JSON result line."""
    name = p.wirespan_name
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        stop_process(p)
        raise TestFailure("%s did not finish within %.0fs; stderr: %s" % (name, timeout, tail(p.wirespan_err)))
    return peer_result(p, p.wirespan_out, p.wirespan_err, name, expect_ok)


def machine_text():
    """The CPU model, core count and kernel, for result tables."""
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return "%s, %d cores, Linux %s" % (cpu, os.cpu_count() or 0, platform.release())


def nobody_copy(prefix):
    """A world-readable temporary directory with a copy of the wirespan
    binary (so that `nobody` can run it) and a state directory owned by
    nobody, as systemd's StateDirectory= (or the Kubernetes state volume)
    gives the agent. Returns (dir, binary, state); the caller removes dir."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    binary = os.path.join(d, "wirespan")
    shutil.copy(WIRESPAN, binary)
    os.chmod(binary, 0o755)
    state = os.path.join(d, "state")
    os.mkdir(state, 0o700)
    os.chown(state, 65534, 65534)
    return d, binary, state
