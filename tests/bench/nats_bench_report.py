#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Markdown report of tests/bench/nats_bench.sh from its raw directory.

Usage: nats_bench_report.py RAW_DIR  (prints markdown on stdout).
Every figure is the median over the repetitions; with more than one, the
min-max range follows in parentheses. Exit 1 when a run failed (nats_lat
lost messages or the agent exited non-zero), so `make bench` notices.
"""
import json
import os
import statistics
import sys

GOAL_TPUT = 0.90  # with / without at saturation
GOAL_P99 = 1.05  # with / without at half of saturation
GOAL_US_SPAN = 2.0  # agent CPU, kernel BPF time + userspace
GOAL_RSS_MIB = 32.0  # VmRSS at steady state
LATE_MAX = 0.01  # sends > 1 ms late without the agent: rate not sustained


def load(path, default=None):
    try:
        with open(path) as f:
            text = f.read().strip()
        return json.loads(text) if text else default
    except (OSError, ValueError):
        return default


def read_runs(raw):
    runs = []
    for name in sorted(os.listdir(raw)):
        d = os.path.join(raw, name)
        run = load(os.path.join(d, "run.json"))
        if not os.path.isdir(d) or run is None:
            continue
        run["lat"] = load(os.path.join(d, "lat.json"), {})
        run["kind"] = name.split("-")[0]
        if run["agent"]:
            run["p0"] = load(os.path.join(d, "probe0.json"), {})
            run["p1"] = load(os.path.join(d, "probe1.json"), {})
            run["pl"] = load(os.path.join(d, "probe_load.json"), {})
            run["m"] = load(os.path.join(d, "metrics.json"), {})
            run["a"] = load(os.path.join(d, "agent_metrics.json"), {})
            try:
                with open(os.path.join(d, "rss_kb")) as f:
                    run["rss"] = [int(x) for x in f.read().split()]
            except (OSError, ValueError):
                run["rss"] = []
        runs.append(run)
    return runs


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def cell(values, fmt="{:.0f}"):
    """Median, and (min-max) when there are several values."""
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    text = fmt.format(statistics.median(values))
    if len(values) > 1:
        text += " (" + fmt.format(min(values)) + "–" + fmt.format(max(values)) + ")"
    return text


def verdict(ok):
    return "met" if ok else "**missed**"


def frame_bytes(size):
    """Mean wire bytes of one message's PUB and MSG frames (subject bench, sid 1)."""
    pub = len("PUB bench %d\r\n" % size) + size + 2
    msg = len("MSG bench 1 %d\r\n" % size) + size + 2
    return (pub + msg) / 2


def agent_facts(run, hz):
    """What one run with the agent says about its cost and completeness."""
    lat, a, m = run["lat"], run["a"], run["m"]
    p0, p1, pl = run["p0"], run["p1"], run["pl"]
    n = a.get("nats", {})
    e = a.get("export", {})
    sent, recv = lat.get("sent", 0), lat.get("received", 0)
    expected = sent + 2 * recv  # publish, process, deliver
    emitted = n.get("publish", 0) + n.get("process", 0) + n.get("deliver", 0)
    cpu_s = (p1.get("ticks", 0) - p0.get("ticks", 0)) / hz
    # BPF: over the load only (nats_bench.sh takes probe_load at its end)
    bpf_s = (pl.get("bpf", {}).get("ns", 0) - p0.get("bpf", {}).get("ns", 0)) / 1e9
    bpf_runs = pl.get("bpf", {}).get("runs", 0) - p0.get("bpf", {}).get("runs", 0)
    spans = a.get("spans_out", 0)
    gaps = m.get("user", {}).get("gap_bytes", {})
    gap_total = sum(gaps.values())
    gap_frames = gap_total / frame_bytes(run["size"])
    missing = expected - emitted
    export_lost = (
        e.get("spans_in", 0)
        - e.get("sent_spans", 0)
        - e.get("dropped_spans", 0)
        - e.get("exit_dropped_spans", 0)
    )
    rss = run["rss"]
    steady = rss[len(rss) // 2 :] if rss else []
    return {
        "sent": sent,
        "recv": recv,
        "expected": expected,
        "emitted": emitted,
        "other": spans - emitted,
        "sent_spans": e.get("sent_spans", 0),
        "export_dropped": e.get("dropped_spans", 0) + e.get("exit_dropped_spans", 0),
        "export_lost": export_lost,
        "cpu_s": cpu_s,
        "sched_s": (p1.get("sched_ns", 0) - p0.get("sched_ns", 0)) / 1e9,
        "bpf_s": bpf_s,
        "bpf_runs_per_msg": bpf_runs / sent if sent else None,
        "us_user": cpu_s / spans * 1e6 if spans else None,
        "us_bpf": bpf_s / spans * 1e6 if spans else None,
        "us_total": (cpu_s + bpf_s) / spans * 1e6 if spans else None,
        "rss_mib": statistics.median(steady) / 1024 if steady else None,
        "hwm_mib": p1.get("VmHWM", 0) / 1024,
        "anon_mib": p1.get("RssAnon", 0) / 1024,
        "file_mib": p1.get("RssFile", 0) / 1024,
        "rb_full": m.get("kernel", {}).get("rb_full_events", 0),
        "rb_full_bytes": m.get("kernel", {}).get("rb_full_bytes", 0),
        "gaps": {k: v for k, v in gaps.items() if v},
        # bytes the kernel lost that no stream's gap holds (a stream's tail
        # after its last record, when its close record was lost too)
        "lost_unattributed": m.get("kernel", {}).get("rb_full_bytes", 0) - gaps.get("lost", 0),
        "close_lost": m.get("kernel", {}).get("close_lost", 0),
        "gap_frames": gap_frames,
        "evicted": n.get("pending_evicted", 0) + n.get("recent_evicted", 0),
        "parse_errors": n.get("parse_errors", 0),
        "missing": missing,
        # missing spans that no counter can explain: at most one span per
        # frame lost in a gap
        "unaccounted": max(0, missing - int(gap_frames)) + max(0, export_lost),
    }


def main():
    raw = sys.argv[1]
    meta = load(os.path.join(raw, "meta.json"), {})
    hz = meta.get("hz", 100)
    runs = read_runs(raw)
    sizes = sorted({r["size"] for r in runs})

    def pick(kind, size, agent):
        return [r for r in runs if r["kind"] == kind and r["size"] == size and r["agent"] == agent]

    loads = [r["load"] for r in runs]
    foreign = [r.get("foreign_progs") for r in runs if r.get("foreign_progs") is not None]
    out = []
    w = out.append
    w("## NATS pub/sub through nats-server, without and with the agent")
    w("")
    w("- command: `sudo %sbash tests/bench/nats_bench.sh` (= `sudo %smake bench-nats`)"
      % (meta.get("env", ""), meta.get("env", "")))
    w("- date: %s, run time %s s; wirespan %s" % (meta.get("start"), meta.get("run_s"), meta.get("commit")))
    w("- machine: %s cores, kernel %s, %s" % (meta.get("nproc"), meta.get("kernel"), meta.get("cpu")))
    w("- 1-min load average at the start of the runs (min, median, max; our own load included): %s, %.2f, %s"
      % (min(loads), med(loads), max(loads)) if loads else "- no runs")
    if foreign:
        w("- BPF programs of other wirespan processes (tp_*, before our agent starts) at the start of the runs "
          "(min, max): %d, %d%s" % (min(foreign), max(foreign),
                                    " (they run on the benchmark's syscalls too)" if max(foreign) else ""))
    w("- %s s per run after a %s ms warm-up, %s repetition(s) (median, and min–max when more than one); "
      "agent: `wirespan agent --nats-url TELEMETRY --port APP --node bench%s` (OTLP protobuf over NATS "
      "to a second nats-server); BPF run-time stats on in every run"
      % (meta.get("seconds"), meta.get("warmup_ms"), meta.get("reps"),
         " " + meta["agent_args"] if meta.get("agent_args") else ""))
    w("- publisher, subscriber (tests/bench/nats_lat.c), both nats-servers and the agent share the "
      "%s cores: the agent competes with the workload for them" % meta.get("nproc"))
    w("")

    def table(title, text, columns):
        """A section: heading, explanation, table head (":" = right-aligned)."""
        w("### " + title)
        w("")
        w(text)
        w("")
        w("| " + " | ".join(c.lstrip(":") for c in columns) + " |")
        w("|" + "|".join("---:" if c.startswith(":") else "---" for c in columns) + "|")

    table("Saturation throughput (goal: with ≥ %d %% of without)" % (GOAL_TPUT * 100),
          "Messages received per second after the warm-up, at most 8 MiB (and 65 536 messages) in flight.",
          [":size", ":without: msg/s", ":MB/s", ":with the agent: msg/s", ":MB/s", ":with / without", "goal"])
    t_ratios = {}
    for s in sizes:
        off, on = pick("sat", s, 0), pick("sat", s, 1)
        toff = [r["lat"].get("throughput") for r in off]
        ton = [r["lat"].get("throughput") for r in on]
        ratio = med(ton) / med(toff) if med(toff) and med(ton) is not None else None
        t_ratios[s] = ratio
        w("| %d B | %s | %s | %s | %s | %s | %s |" % (
            s, cell(toff), cell([r["lat"].get("throughput_mbs") for r in off], "{:.1f}"),
            cell(ton), cell([r["lat"].get("throughput_mbs") for r in on], "{:.1f}"),
            "%.3f" % ratio if ratio is not None else "–",
            verdict(ratio is not None and ratio >= GOAL_TPUT)))
    w("")

    fixed = meta.get("fixed_rate")
    lat_label = "fixed %d msg/s" % fixed if fixed else "half of saturation"
    table("Latency at %s (goal: p99 with ≤ %d %% of without at half of saturation)" % (lat_label, GOAL_P99 * 100),
          "Fixed rate = half the median saturation throughput without the agent (or NB_FIXED_RATE), "
          "the same rate for both runs. Latency from each message's intended send time to its arrival "
          "in the subscriber's callback (CLOCK_MONOTONIC, one process), so a publisher that falls "
          "behind shows in it. µs; \"late\" = messages sent more than 1 ms after their time (more "
          "than %d %% late without the agent: the rate is above what the machine sustains, no "
          "verdict)." % (LATE_MAX * 100),
          [":size", ":rate msg/s", ":p50 without", ":p50 with", ":p50 ratio", ":p99 without", ":p99 with",
           ":p99 ratio", "goal", "p99.9 without / with", "late without / with"])
    l_ratios = {}
    for s in sizes:
        off, on = pick("lat", s, 0), pick("lat", s, 1)
        if not off and not on:
            continue
        rate = (off or on)[0]["rate"]

        def q(rs, k):
            return [r["lat"].get(k) for r in rs]

        p50r = med(q(on, "p50_us")) / med(q(off, "p50_us")) if med(q(off, "p50_us")) and on else None
        p99r = med(q(on, "p99_us")) / med(q(off, "p99_us")) if med(q(off, "p99_us")) and on else None
        # The pacer must keep up without the agent, or the rate was above
        # what this machine sustains and the latencies are queueing.
        late = med([r["lat"].get("late_1ms", 0) / max(1, r["lat"].get("sent", 1)) for r in off]) or 0
        ok = p99r is not None and p99r <= GOAL_P99
        goal = verdict(ok)
        if late > LATE_MAX:
            goal = "**not measured**: %.1f %% of sends late without the agent" % (late * 100)
            ok = None
        l_ratios[s] = (p99r, ok)
        w("| %d B | %d | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s |" % (
            s, rate, cell(q(off, "p50_us"), "{:.1f}"), cell(q(on, "p50_us"), "{:.1f}"),
            "%.2f" % p50r if p50r is not None else "–",
            cell(q(off, "p99_us"), "{:.1f}"), cell(q(on, "p99_us"), "{:.1f}"),
            "%.2f" % p99r if p99r is not None else "–", goal,
            cell(q(off, "p999_us"), "{:.0f}"), cell(q(on, "p999_us"), "{:.0f}"),
            cell(q(off, "late_1ms")), cell(q(on, "late_1ms"))))
    w("")

    facts = []
    for kind, label in (("lat", lat_label), ("sat", "saturation")):
        for s in sizes:
            rs = pick(kind, s, 1)
            if rs:
                facts.append((s, label, [agent_facts(r, hz) for r in rs], rs))

    table("Agent cost per span (goal ≤ %.0f µs, kernel BPF time + userspace) and memory (goal ≤ %d MiB)"
          % (GOAL_US_SPAN, GOAL_RSS_MIB),
          "Userspace = the agent's utime+stime (/proc/PID/stat) from \"ready\" until it is idle again "
          "after the load; BPF = run_time_ns of its programs from \"ready\" to the end of the load "
          "(they run inside the traced syscalls of every process, on a shared machine not only "
          "the benchmark's); per span emitted (spans_out). VmRSS = median of the samples taken every "
          "0.5 s during the second half of the load; VmHWM = peak; RssAnon / RssFile at the end "
          "(RssFile holds the mapped ring buffer and BPF maps).",
          [":size", "rate", ":spans out", ":userspace s", ":BPF s (runs per message)", ":µs/span userspace",
           ":µs/span BPF", ":µs/span total", "goal", ":VmRSS MiB", ":VmHWM MiB", "RssAnon / RssFile MiB",
           "goal (VmRSS)"])
    for s, label, fs, rs in facts:
        tot = med([f["us_total"] for f in fs])
        rss = med([f["rss_mib"] for f in fs])
        w("| %d B | %s | %s | %s | %s (%s) | %s | %s | %s | %s | %s | %s | %s / %s | %s |" % (
            s, label, cell([r["a"].get("spans_out") for r in rs]),
            cell([f["cpu_s"] for f in fs], "{:.2f}"), cell([f["bpf_s"] for f in fs], "{:.3f}"),
            cell([f["bpf_runs_per_msg"] for f in fs], "{:.1f}"),
            cell([f["us_user"] for f in fs], "{:.2f}"), cell([f["us_bpf"] for f in fs], "{:.2f}"),
            cell([f["us_total"] for f in fs], "{:.2f}"),
            verdict(tot is not None and tot <= GOAL_US_SPAN),
            cell([f["rss_mib"] for f in fs], "{:.1f}"), cell([f["hwm_mib"] for f in fs], "{:.1f}"),
            cell([f["anon_mib"] for f in fs], "{:.1f}"), cell([f["file_mib"] for f in fs], "{:.1f}"),
            verdict(rss is not None and rss <= GOAL_RSS_MIB)))
    w("")

    table("Completeness (goal: 100 %, 0 unaccounted)",
          "Expected spans = 3 per message: publish (messages sent), process and deliver (messages "
          "received). Emitted = the agent's publish + process + deliver counters; exported = "
          "`export.sent_spans` (published to the telemetry nats-server). Counted: ring-buffer "
          "losses, gap bytes by reason (≈ frames: divided by the mean PUB/MSG frame size), evicted "
          "pending/recent entries, export drops. Unaccounted = missing spans beyond one per frame "
          "lost in a gap, plus spans the exporter neither sent nor counted as dropped. \"Lost bytes "
          "in no stream\" = the kernel's rb_full_bytes minus the `lost` gap bytes: the tail of a "
          "stream whose close record was lost too (close_lost), counted by the kernel only.",
          [":size", "rate", "messages sent / received", ":expected spans", "emitted", "exported",
           "ring buffer full (events, bytes)", "gap bytes (≈ frames)", "lost bytes in no stream (close_lost)",
           "evicted, parse errors, export dropped", ":missing", ":unaccounted"])
    bad_runs = []
    for s, label, fs, rs in facts:
        for f, r in zip(fs, rs):
            pct = lambda x: "%d (%.3f %%)" % (x, 100.0 * x / f["expected"]) if f["expected"] else str(x)
            gaps = ", ".join("%s %d" % kv for kv in sorted(f["gaps"].items())) or "0"
            w("| %d B | %s | %d / %d | %d | %s | %s | %d, %d | %s (%.0f) | %d (%d) | %d, %d, %d | %d | %s |" % (
                s, label, f["sent"], f["recv"], f["expected"], pct(f["emitted"]), pct(f["sent_spans"]),
                f["rb_full"], f["rb_full_bytes"], gaps, f["gap_frames"], f["lost_unattributed"],
                f["close_lost"], f["evicted"],
                f["parse_errors"], f["export_dropped"], f["missing"],
                str(f["unaccounted"]) if f["unaccounted"] == 0 else "**%d**" % f["unaccounted"]))
    w("")

    for r in runs:
        if r["rc"] != 0 or (r["agent"] and r.get("agent_rc") != 0):
            bad_runs.append("%s (nats_lat exit %s%s)" % (
                os.path.basename(r["name"]), r["rc"],
                ", agent exit %s" % r.get("agent_rc") if r["agent"] else ""))
    w("Verdicts:")
    w("")
    worst_t = min((v for v in t_ratios.values() if v is not None), default=None)
    measured = [v for v, ok in l_ratios.values() if ok is not None]
    worst_l = max(measured, default=None)
    unmeasured = [str(k) for k, (v, ok) in l_ratios.items() if ok is None]
    us = [med([f["us_total"] for f in fs]) for _, _, fs, _ in facts]
    rss = [med([f["rss_mib"] for f in fs]) for _, _, fs, _ in facts]
    unacc = sum(f["unaccounted"] for _, _, fs, _ in facts for f in fs)
    w("- throughput with the agent ≥ %d %% of without at saturation: %s (lowest ratio %s)"
      % (GOAL_TPUT * 100, verdict(worst_t is not None and worst_t >= GOAL_TPUT),
         "%.3f" % worst_t if worst_t is not None else "–"))
    w("- p99 latency increase ≤ %d %% at %s: %s (highest ratio %s%s)"
      % ((GOAL_P99 - 1) * 100, lat_label,
         "not measured" if worst_l is None else verdict(worst_l <= GOAL_P99),
         "%.2f" % worst_l if worst_l is not None else "–",
         "; not measured at %s B: the publisher could not hold the rate even without the agent"
         % ", ".join(unmeasured) if unmeasured else ""))
    w("- agent CPU ≤ %.0f µs per span, BPF + userspace: %s (highest %s µs)"
      % (GOAL_US_SPAN, verdict(bool(us) and None not in us and max(us) <= GOAL_US_SPAN),
         "%.2f" % max(u for u in us if u is not None) if any(u is not None for u in us) else "–"))
    w("- VmRSS ≤ %d MiB at steady state: %s (highest %s MiB)"
      % (GOAL_RSS_MIB, verdict(bool(rss) and None not in rss and max(rss) <= GOAL_RSS_MIB),
         "%.1f" % max(x for x in rss if x is not None) if any(x is not None for x in rss) else "–"))
    w("- zero unaccounted spans: %s (%d in all runs)" % (verdict(unacc == 0), unacc))
    if bad_runs:
        w("- **failed runs**: " + ", ".join(bad_runs))
    print("\n".join(out))
    return 1 if bad_runs else 0


if __name__ == "__main__":
    sys.exit(main())
