"""CPU time of benchmark processes from /proc (user + system seconds): less sensitive
than rates to other load on a shared machine, and the bound a rate cannot beat on
it (cores / CPU per job)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by one process itself (not its children); 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def children(pid: int) -> list[int]:
    """Live child processes of `pid` (every thread's children)."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


def tree_seconds(pid: int) -> tuple[float, float]:
    """(the process's own CPU seconds, its live descendants' together). Short-lived
    children that already exited are not counted (their time is in cutime once reaped)."""
    own, rest = cpu_seconds(pid), 0.0
    todo = children(pid)
    while todo:
        p = todo.pop()
        rest += cpu_seconds(p)
        todo += children(p)
    return own, rest


def node_seconds(procs: dict[str, Any]) -> dict[str, float]:
    """CPU seconds each node process (by id; objects with a `pid`) has used so far,
    its jobs and workers excluded."""
    return {nid: cpu_seconds(p.pid) for nid, p in procs.items()}
