"""Event-loop lag: how late the loop wakes from a short sleep. Everything that keeps
this node alive in time (heartbeats, lease renewal, gRPC) runs on that loop."""

from __future__ import annotations

import asyncio
import time

from raftsched.core.lagstats import LagStats

INTERVAL = 0.05


async def monitor_loop(stats: LagStats, interval: float = INTERVAL) -> None:
    while True:
        t = time.monotonic()
        await asyncio.sleep(interval)
        stats.observe(time.monotonic() - t - interval)
