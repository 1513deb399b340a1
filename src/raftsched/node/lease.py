"""The node's side of its lease with the leader, enforced by the watchdog process.

A heartbeat sent at monotonic time S and answered by the leader extends the
lease to S + lease_seconds. The leader declares the node down only after
heartbeat_ttl without hearing from it (measured from when it received the
heartbeat, which is after S), and lease_seconds < heartbeat_ttl - margin: so
the watchdog has killed the node's jobs before the leader can reassign them.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections import deque

import structlog

log = structlog.get_logger("raftsched.node.lease")


class Lease:
    def __init__(self, duration: float) -> None:
        self.duration = duration
        self.deadline = 0.0
        self.generation = -1  # the node's generation as of the last lease grant
        self.lapses: deque[tuple[float, float]] = deque(maxlen=64)  # (from, to), monotonic
        self.expirations = 0
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "raftsched.node.watchdog"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # not in the node's process group: survives its signals
        )

    def _send(self, line: str) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(line.encode() + b"\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            log.error("lease watchdog is gone; jobs are no longer fenced in time")

    def renew(self, sent_at: float, seconds: float, generation: int) -> None:
        """The leader granted `seconds` of lease for a heartbeat sent at `sent_at`."""
        if seconds <= 0:
            return
        self.generation = generation
        now = time.monotonic()
        if 0 < self.deadline < now:
            self.lapses.append((self.deadline, now))
            self.expirations += 1
        deadline = sent_at + min(seconds, self.duration)
        if deadline > self.deadline:
            self.deadline = deadline
            self._send(f"L {deadline:.6f}")

    def valid(self) -> bool:
        return time.monotonic() < self.deadline

    def lapsed_between(self, start: float, end: float) -> bool:
        """Was the lease out at any moment in [start, end] (monotonic)? Then the
        watchdog may have killed jobs running in that span."""
        if 0 < self.deadline < end:
            return True  # out since `deadline`, still out at `end`
        return any(a <= end and b >= start for a, b in self.lapses)

    def register(self, handle: int | str) -> None:
        """A job started: a process group id, or an isolation handle (isolation/kill.py)."""
        self._send(f"A {handle}")

    def unregister(self, handle: int | str) -> None:
        self._send(f"D {handle}")

    def close(self) -> None:
        """Closing the pipe makes the watchdog kill what is left and exit."""
        with contextlib.suppress(Exception):
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        with contextlib.suppress(Exception):
            self._proc.wait(5)
