#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""`make reliability`: the long versions of the reliability suite (issue 9,
docs/RELIABILITY.md) through the integration harness (tests/integration/).

  run.py [--quick] [--only NAME] [--out FILE]

Runs ring-buffer saturation with several stop lengths, adversarial traffic
repeated with more volume, least privilege, and the NATS outages
(tests/integration/reliability_outage.py: nats-server killed 5 s and 60 s,
blackholed 30 s, a slow consumer); --only NAME runs the runs whose name
contains NAME. Prints one line per run
(operations, out, drops by reason, unaccounted = seen - out - counted) and
markdown tables for docs/RELIABILITY.md, writes every report as JSON to FILE
(default build/reliability/results.json), and ends with `N passed, N failed`.
Needs root (BPF). --quick: the short parameters of `make test`.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
import reliability  # noqa: E402
import reliability_churn  # noqa: E402
import reliability_outage as outage  # noqa: E402

LONG = [
    ("saturation stop 1 s", reliability.saturation, dict(stop_seconds=1.0, before=0.5, after=2.0)),
    ("saturation stop 2 s", reliability.saturation, dict(stop_seconds=2.0, before=0.5, after=2.0)),
    ("saturation stop 5 s", reliability.saturation, dict(stop_seconds=5.0, before=0.5, after=2.0)),
    ("saturation stop 10 s", reliability.saturation, dict(stop_seconds=10.0, before=0.5, after=2.0)),
    ("saturation stop 2 s, 1 MiB ring", reliability.saturation, dict(stop_seconds=2.0, before=0.5, after=2.0, ringbuf=1 << 20)),
    ("saturation stop 2 s, 8 MiB ring (default)", reliability.saturation, dict(stop_seconds=2.0, before=0.5, after=2.0, ringbuf=1 << 23)),
    ("saturation stop 2 s, 16 MiB ring", reliability.saturation, dict(stop_seconds=2.0, before=0.5, after=2.0, ringbuf=1 << 24)),
    ("adversarial x20, 1 MiB random", reliability.adversarial, dict(rounds=20, random_kib=1024)),
    ("least privilege", reliability.least_privilege, {}),
    ("churn: 10k concurrent", reliability_churn.concurrent, dict(conns=10000)),
    ("churn: 5k new/s for 60 s", reliability_churn.new_conns, dict(rate=5000, seconds=60)),
    ("churn: 1k exec/s for 60 s", reliability_churn.exec_churn, dict(rate=1000, seconds=60)),
    ("churn: capture, 5k new/s for 60 s", reliability_churn.capture_rate, dict(rate=5000, seconds=60)),
    ("NATS killed 5 s", outage.kill_outage, dict(outage_s=5.0)),
    ("NATS killed 60 s", outage.kill_outage, dict(outage_s=60.0)),
    ("NATS blackholed 30 s", outage.blackhole, dict(blackhole_s=30.0)),
    ("slow consumer", outage.slow_consumer, {}),
]
QUICK = [
    ("saturation stop 2 s", reliability.saturation, dict(stop_seconds=2.0, before=0.5, after=1.0)),
    ("adversarial x1", reliability.adversarial, dict(rounds=1, random_kib=64)),
    ("least privilege", reliability.least_privilege, {}),
    ("churn: mixed, short", reliability_churn.mixed, {}),
    ("NATS blackholed 5 s, PING 500 ms", outage.blackhole,
     dict(blackhole_s=5.0, before_s=1.0, after_s=1.0, ping_ms=500, write_deadline_ms=1000)),
]




def fmt_drops(d):
    return ", ".join("%s %s" % (k, v) for k, v in sorted(d.items())) or "none"


def tables(results):
    out = []
    sat = [r for r in results if r["report"] and r["report"]["test"] == "saturation"]
    if sat:
        out += ["| run | frames sent | bytes seen | bytes captured | counted gaps (bytes, by reason) | unaccounted | rb_full events (during stop) | recovery after SIGCONT |",
                "|---|---|---|---|---|---|---|---|"]
        for r in sat:
            p = r["report"]
            out.append("| %s | %d | %d | %d | %s | %d | %d (%d) | %.1f ms |" % (
                r["name"], p["operations"], p["seen"], p["out"], fmt_drops(p["drops"]), p["unaccounted"],
                p["rb_full_events"], p["rb_full_events_during_stop"], p["recovery_ms"]))
        out.append("")
    adv = [r for r in results if r["report"] and r["report"]["test"] == "adversarial"]
    if adv:
        out += ["| run | bytes sent | well-formed ops | their spans + counted | spans out (all) | drops counted (by reason) | unaccounted | VmHWM start -> end | agent CPU per MB |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in adv:
            p = r["report"]
            out.append("| %s | %d | %d | %d + %d | %s | %s | %d | %d -> %d KiB | %.1f ms |" % (
                r["name"], p["bytes_sent"], p["operations"], p["out"], p["counted_ops"],
                p["spans_out"], fmt_drops(p["drops"]), p["unaccounted"], p["vmhwm_start_kib"], p["vmhwm_kib"], p["cpu_ms_per_mb"]))
        out.append("")
    lp = [r for r in results if r["report"] and r["report"]["test"] == "least_privilege"]
    if lp:
        out += ["| capability removed (from %s) | agent exit | names it | ready printed | doctor FAIL |" % " ".join(lp[0]["report"]["declared"]),
                "|---|---|---|---|---|"]
        for row in lp[0]["report"]["removals"]:
            out.append("| %s | %d | %s | %s | %s |" % (row["removed"], row["exit"], row["named"], row["ready"], row["doctor_fail"]))
        out.append("")
    out += reliability_churn.tables_md([r for r in results if r["report"] and r["report"]["test"] == "churn"])
    out += reliability_churn.capture_table_md([r for r in results if r["report"] and r["report"]["test"] == "churn_capture"])
    out.append(outage.tables(results))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(harness.BUILD, "reliability", "results.json"))
    ap.add_argument("--only", action="append", default=[], help="run only the runs whose name contains this (repeatable)")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    harness.VERBOSE = a.verbose or harness.VERBOSE
    runs = [r for r in (QUICK if a.quick else LONG) if not a.only or any(o in r[0] for o in a.only)]
    if os.geteuid() != 0:
        print("the reliability suite loads BPF programs: run it as root")
        print("0 passed, 0 failed, %d skipped" % len(runs))
        return 0
    rev = subprocess.run(["git", "-C", str(harness.REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": harness.machine_text(), "commit": rev,
            "command": "make reliability" + (" RELIABILITY_ARGS=--quick" if a.quick else "")}
    # the NATS peers (build/peers/) are built by the integration runner
    subprocess.run(["bash", str(harness.REPO / "tests" / "run-integration.sh"), "--list"], stdout=subprocess.DEVNULL, check=True)
    results, passed, failed = [], 0, 0
    for name, fn, kw in runs:
        t0 = time.monotonic()
        try:
            rep, err = fn(**kw), None
        except harness.TestFailure as e:
            rep, err = None, str(e)
        except Exception:  # noqa: BLE001 - a crash of the scenario is a failure with its traceback
            rep, err = None, traceback.format_exc()
        dt = time.monotonic() - t0
        results.append({"name": name, "params": kw, "seconds": round(dt, 1), "report": rep, "error": err})
        if err is None:
            passed += 1
            print("PASS %s (%.1fs): operations %s, out %s, drops %s, unaccounted %s"
                  % (name, dt, rep["operations"], rep["out"], fmt_drops(rep["drops"]), rep["unaccounted"]), flush=True)
        else:
            failed += 1
            print("FAIL %s (%.1fs): %s" % (name, dt, err), flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    print()
    print("%s on %s, commit %s, `%s`" % (meta["date"], meta["machine"], meta["commit"], meta["command"]))
    print()
    print(tables(results))
    print("results: %s" % a.out)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
