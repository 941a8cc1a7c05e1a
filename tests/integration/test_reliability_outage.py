# SPDX-License-Identifier: Apache-2.0
"""Short version of the reliability suite's item 2 (docs/RELIABILITY.md): a
blackholed telemetry server. The long versions (kill 5 s and 60 s, blackhole
30 s, slow consumer) run with `make reliability`."""

import reliability_outage
from harness import log


def test_reliability_blackhole():
    """Telemetry server in a network namespace, every packet dropped for 5 s
    (blackhole qdisc), PING every 500 ms, 1 s write deadline: both agents
    (core, JetStream) drop the stale connection within 3 s (before the fix
    neither did: a blocking write held nats.c's lock), reconnect when the
    path is back, and
    account for every span (core: received + counted drops; JetStream:
    stored exactly once)."""
    r = reliability_outage.blackhole(blackhole_s=5.0, before_s=1.0, after_s=1.0, ping_ms=500, write_deadline_ms=1000)
    log("report: %s", r)
