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
