"""Lease watchdog: one small process per node that kills the node's jobs when
the node's lease runs out, even if the node process itself is frozen (SIGSTOP)
or dead (SIGKILL).

The node writes lines to the watchdog's stdin (each well under PIPE_BUF, so
writes are atomic):
  L <deadline>   the lease is valid until this CLOCK_MONOTONIC time (system-wide)
  A <handle>     a job started; the handle names all its processes: its cgroup,
                 or its process group plus environment marker (isolation/kill.py);
                 a bare number is a process group
  D <handle>     that job ended
When the deadline passes, every process of every registered job gets SIGKILL
(a cgroup is frozen, killed and thawed, so setsid or double-forked children die
too). When stdin closes (the node died), the same happens and the watchdog
exits. The leader declares a node down only after its heartbeat TTL,
which is longer than the lease plus a margin, so a job is always dead before it
can be assigned elsewhere.

Run as `python -m raftsched.node.watchdog` by the node; not meant to be run by hand.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

from raftsched.node.isolation.kill import kill_handle

POLL = 0.01


def _kill_all(groups: set[str], why: str) -> None:
    for handle in sorted(groups):
        try:
            kill_handle(handle)
        except (OSError, ValueError) as e:
            sys.stderr.write(f"raftsched watchdog: cannot kill {handle!r}: {e}\n")
    if groups:
        sys.stderr.write(f"raftsched watchdog: killed {len(groups)} job group(s): {why}\n")
        sys.stderr.flush()
    groups.clear()


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the node, which closes our stdin
    fd = sys.stdin.fileno()
    groups: set[str] = set()
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
                    groups.add(arg)
                elif kind == "D":
                    groups.discard(arg)
        if groups and time.monotonic() > deadline:
            _kill_all(groups, "lease expired")


if __name__ == "__main__":
    raise SystemExit(main())
