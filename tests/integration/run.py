#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Run the wirespan capture integration tests.

usage: run.py [-v] [--list] [--timeout SECS] [TEST ...]

TEST is a test function name from test_capture.py, with or without the
`test_` prefix; without any, every test runs in file order. Prints one
PASS/FAIL line per test (with the reason) and ends with the line
`N passed, N failed`. Exit status 1 if any test failed. Needs root (BPF):
as another user every test is skipped, loudly.

Environment: WIRESPAN (binary, default build/wirespan), WIRESPAN_PEERS
(built peers, default build/peers), WIRESPAN_KEEP_TMP=1 keeps a failed
test's temp dir (=all keeps every test's), WIRESPAN_TEST_VERBOSE=1 (or -v)
prints progress details.
"""

import argparse
import inspect
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


class TestTimeout(Exception):
    pass


def on_alarm(signum, frame):
    raise TestTimeout("test took longer than its time limit")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tests", nargs="*")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--timeout", type=int, default=150, help="seconds per test (default 150)")
    a = ap.parse_args()
    if a.verbose:
        os.environ["WIRESPAN_TEST_VERBOSE"] = "1"

    import glob
    import importlib

    import harness

    harness.VERBOSE = a.verbose or harness.VERBOSE
    tests = []
    here = os.path.dirname(os.path.abspath(__file__))
    # every tests/integration/test_*.py module, in file order, then line order
    for path in sorted(glob.glob(os.path.join(here, "test_*.py"))):
        mod = importlib.import_module(os.path.splitext(os.path.basename(path))[0])
        found = [
            (name, fn)
            for name, fn in inspect.getmembers(mod, inspect.isfunction)
            if name.startswith("test_") and fn.__module__ == mod.__name__
        ]
        found.sort(key=lambda t: t[1].__code__.co_firstlineno)
        tests.extend(found)
    if a.list:
        for name, fn in tests:
            print("%-36s %s" % (name, (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""))
        return 0
    if a.tests:
        want = ["test_" + t if not t.startswith("test_") else t for t in a.tests]
        known = {n for n, _ in tests}
        unknown = [w for w in want if w not in known]
        if unknown:
            print("unknown test(s): %s (see --list)" % ", ".join(unknown), file=sys.stderr)
            return 2
        tests = [t for t in tests if t[0] in want]

    if os.geteuid() != 0:
        bar = "!" * 72
        print(bar)
        print("!!! SKIPPING %d wirespan integration tests: they load BPF programs and need root." % len(tests))
        print("!!! Run as root:  sudo bash tests/run-integration.sh")
        print(bar)
        print("0 passed, 0 failed, %d skipped" % len(tests))
        return 0

    missing = [str(p) for p in (harness.WIRESPAN, harness.GO_PEER, harness.C_PEER) if not p.exists()]
    if not os.path.isdir(os.path.join(harness.REPO, "tests", "node_modules", "nats")):
        missing.append("tests/node_modules/nats (npm ci --prefix tests)")
    if missing:
        print("warning: missing %s; build with tests/run-integration.sh" % ", ".join(missing), file=sys.stderr)

    signal.signal(signal.SIGALRM, on_alarm)
    passed = failed = 0
    t_all = time.monotonic()
    for name, fn in tests:
        t0 = time.monotonic()
        signal.alarm(a.timeout)
        try:
            fn()
            err = None
        except harness.TestFailure as e:
            err = str(e)
        except TestTimeout as e:
            err = "%s (%ds)\n%s" % (e, a.timeout, "".join(traceback.format_exc().splitlines(True)[-4:]))
        except Exception as e:  # noqa: BLE001 - a crash of the test itself
            err = "%s: %s\n%s" % (type(e).__name__, e, "".join(traceback.format_exc().splitlines(True)[-6:]))
        finally:
            signal.alarm(0)
        dt = time.monotonic() - t0
        if err is None:
            passed += 1
            print("PASS %s (%.1fs)" % (name, dt), flush=True)
        else:
            failed += 1
            lines = err.strip().splitlines() or ["(no reason)"]
            print("FAIL %s (%.1fs): %s" % (name, dt, lines[0]), flush=True)
            for line in lines[1:60]:
                print("     " + line, flush=True)
    print("total %.1fs" % (time.monotonic() - t_all), flush=True)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
