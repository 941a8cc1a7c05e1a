# SPDX-License-Identifier: Apache-2.0
"""Short version of the reliability suite's item 4, connection and process
churn (docs/RELIABILITY.md); the long versions (10k concurrent, 5k new/s and
1k exec/s for 60 s) run with `make reliability` (tests/reliability/run.py)."""

import reliability_churn
from harness import log


def test_reliability_churn():
    """200 held connections, 200 new/s and 100 exec'd clients/s for 1 s under
    one agent: every exchange's spans out (unaccounted 0), every connection
    end classified and closed, and the agent's tables (connections, process
    identity, peer endpoints and lookups) back at their baseline after."""
    r = reliability_churn.mixed()
    log("report: %s", r)
