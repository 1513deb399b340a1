"""Lease watchdog: one small process per node that kills the node's jobs when
the node's lease runs out, even if the node process itself is frozen (SIGSTOP)
or dead (SIGKILL).

The node writes lines to the watchdog's stdin (each well under PIPE_BUF, so
writes are atomic):
  L <deadline>   the lease is valid until this CLOCK_MONOTONIC time (system-wide)
  A <pgid>       a job's process group started
  D <pgid>       a job's process group ended
When the deadline passes, every registered process group gets SIGKILL. When
stdin closes (the node died), every registered group gets SIGKILL and the
watchdog exits. The leader declares a node down only after its heartbeat TTL,
which is longer than the lease plus a margin, so a job is always dead before it
can be assigned elsewhere.

Run as `python -m raftsched.watchdog` by the node; not meant to be run by hand.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time

POLL = 0.01


def _kill_all(groups: set[int], why: str) -> None:
    for pg in sorted(groups):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pg, signal.SIGKILL)
    if groups:
        sys.stderr.write(f"raftsched watchdog: killed {len(groups)} job group(s): {why}\n")
        sys.stderr.flush()
    groups.clear()


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the node, which closes our stdin
    fd = sys.stdin.fileno()
    groups: set[int] = set()
    deadline = float("inf")
    buf = b""
    while True:
        timeout = POLL if groups else 1.0
        ready, _, _ = select.select([fd], [], [], timeout)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                _kill_all(groups, "node process gone")
                return 0
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                kind, _, arg = line.decode().partition(" ")
                if kind == "L":
                    deadline = float(arg)
                elif kind == "A":
                    groups.add(int(arg))
                elif kind == "D":
                    groups.discard(int(arg))
        if groups and time.monotonic() > deadline:
            _kill_all(groups, "lease expired")


if __name__ == "__main__":
    raise SystemExit(main())
