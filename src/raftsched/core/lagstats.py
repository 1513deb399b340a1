"""Lag statistics: a cumulative histogram and a window of recent samples. Pure data:
the caller measures (event-loop oversleep, Raft tick overrun) and hands in seconds."""

from __future__ import annotations

import bisect
from collections import deque

BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LagStats:
    def __init__(self, window: int = 2000) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # per bucket; the last is +Inf
        self.total = 0.0
        self.n = 0
        self.max = 0.0  # since start
        self.recent: deque[float] = deque(maxlen=window)

    def observe(self, lag: float) -> None:
        lag = max(0.0, lag)
        self.counts[bisect.bisect_left(BUCKETS, lag)] += 1
        self.total += lag
        self.n += 1
        if lag > self.max:
            self.max = lag
        self.recent.append(lag)

    def recent_p99_max(self) -> tuple[float, float]:
        """p99 and max over the recent window (0, 0 without samples)."""
        xs = sorted(list(self.recent))
        if not xs:
            return 0.0, 0.0
        return xs[min(len(xs) - 1, int(0.99 * len(xs)))], xs[-1]

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus-style buckets: (upper bound, cumulative count), ending with +Inf."""
        out, acc = [], 0
        for bound, c in zip((*[repr(b) for b in BUCKETS], "+Inf"), self.counts, strict=True):
            acc += c
            out.append((bound, acc))
        return out
