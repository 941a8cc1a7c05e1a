# SPDX-License-Identifier: Apache-2.0
"""Short versions of the reliability suite (docs/RELIABILITY.md): items 1
(ring-buffer saturation), 3 (adversarial traffic) and 6 (least privilege).
The long versions run with `make reliability` (tests/reliability/run.py)."""

import reliability
from harness import log


def test_reliability_saturation():
    """Two 64 KiB-send floods, capture SIGSTOPped 2 s with a 256 KiB ring:
    every byte captured or counted, unaccounted 0, recovery after SIGCONT."""
    r = reliability.saturation(stop_seconds=2.0, before=0.5, after=1.0)
    log("report: %s", r)


def test_reliability_adversarial():
    """64 KiB header, 10k headers, lying lengths, 5 KB NATS control line, bad
    HPUB, random bytes, one byte per write: agent exits 0, parse errors
    counted, every well-formed probe after them becomes a span, VmHWM bound."""
    r = reliability.adversarial(rounds=1, random_kib=64)
    log("report: %s", r)


def test_reliability_least_privilege():
    """From exactly deploy/'s capabilities as nobody, each capability `doctor
    --caps` lists as required, removed in turn: agent exit 4 naming it, doctor
    FAIL for it; the full set runs (control)."""
    r = reliability.least_privilege()
    log("report: %s", r)
