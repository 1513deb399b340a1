"""Killing every process of a job, whatever mode isolates it. Stdlib only: the
lease watchdog imports this too, and must keep working while the node is frozen.

A job is named by a *handle*, one line of text the node hands the watchdog:
  pg <pgid>                          process group only (no isolation)
  v1 <freezer dir>                   cgroup v1: freeze, SIGKILL every member, thaw
  v2 <cgroup dir>                    cgroup v2: cgroup.kill (or freeze, kill, thaw)
  env <pgid> <node> <attempt> <job>  fallback: the group, plus every process whose
                                     environment carries this node, job and attempt
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

FREEZE_WAIT = 1.0  # seconds to wait for a v1 freezer to report FROZEN
SCAN_ROUNDS = 20  # fallback: kill, rescan, until no marked process is left


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError:
        return False


def _pids(procs_file: Path) -> list[int]:
    return [int(x) for x in _read(procs_file).split()]


def _kill_pids(pids: list[int], sig: int) -> int:
    n = 0
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
            n += 1
    return n


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_v1(freezer: Path, sig: int = signal.SIGKILL) -> int:
    """Freeze the job's freezer cgroup, signal every member, thaw. A frozen
    member cannot fork or escape meanwhile; the SIGKILL lands at thaw."""
    procs = freezer / "cgroup.procs"
    first = _pids(procs)
    if not first:
        return 0
    state = freezer / "freezer.state"
    frozen = _write(state, "FROZEN")
    deadline = time.monotonic() + FREEZE_WAIT
    while frozen and _read(state).strip() != "FROZEN" and time.monotonic() < deadline:
        time.sleep(0.001)
    n = _kill_pids(_pids(procs), sig)
    if frozen:
        _write(state, "THAWED")
    return n


def kill_v2(group: Path, sig: int = signal.SIGKILL) -> int:
    """cgroup.kill where the kernel has it (5.14+), else freeze, signal, thaw."""
    procs = group / "cgroup.procs"
    pids = _pids(procs)
    if sig == signal.SIGKILL and _write(group / "cgroup.kill", "1"):  # the whole subtree
        return len(pids)
    if not pids:
        return 0
    frozen = _write(group / "cgroup.freeze", "1")
    deadline = time.monotonic() + FREEZE_WAIT
    while frozen and "frozen 1" not in _read(group / "cgroup.events") and time.monotonic() < deadline:
        time.sleep(0.001)
    n = _kill_pids(_pids(procs), sig)
    if frozen:
        _write(group / "cgroup.freeze", "0")
    return n


def env_marker(node_id: str, job_id: str, attempt: int) -> tuple[bytes, ...]:
    """The environment entries every process of an attempt inherits."""
    return (f"RAFTSCHED_NODE_ID={node_id}".encode(), f"RAFTSCHED_JOB_ID={job_id}".encode(),
            f"RAFTSCHED_ATTEMPT={attempt}".encode())


def has_marker(pid: int, marker: tuple[bytes, ...]) -> bool:
    try:
        entries = set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
    except OSError:
        return False
    return all(m in entries for m in marker)


def children(pid: int) -> list[int]:
    """Direct children of a process (all its threads), from /proc/PID/task/*/children."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for t in tasks:
        out += [int(c) for c in _read(t / "children").split()]
    return out


def tree(roots: list[int]) -> list[int]:
    """The roots and all their descendants."""
    seen: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.append(pid)
            todo += children(pid)
    return seen


def kill_tree(pgid: int, roots: list[int], sig: int) -> list[int]:
    """The subreaper's kill: the job's process group and the given roots (its
    live main process, its orphans) with their descendants; stopped first
    (SIGKILL) so none forks meanwhile, repeated until nothing is left. Returns
    the pids hit."""
    hit: list[int] = []
    _killpg(pgid, sig)
    for _ in range(SCAN_ROUNDS if sig == signal.SIGKILL else 1):
        pids = [p for p in tree(roots) if _alive(p) and p not in hit]
        if not pids:
            break
        if sig == signal.SIGKILL:
            _kill_pids(pids, signal.SIGSTOP)
        _kill_pids(pids, sig)
        hit += pids
    return hit


def marked_pids(marker: tuple[bytes, ...], proc: Path = Path("/proc")) -> list[int]:
    """Processes whose environment (as exec'd) holds every entry of `marker`."""
    me = os.getpid()
    out = []
    for d in proc.iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        if has_marker(int(d.name), marker):
            out.append(int(d.name))
    return out


def kill_marked(pgid: int, marker: tuple[bytes, ...], sig: int = signal.SIGKILL) -> int:
    """Fallback: the job's process group, then every marked process, repeated
    until none is left (a process forking while we scan is caught next round)."""
    _killpg(pgid, sig)
    total = 0
    for _ in range(SCAN_ROUNDS if sig == signal.SIGKILL else 1):
        pids = [p for p in marked_pids(marker) if _alive(p)]
        if not pids:
            break
        for p in pids:  # stop first, so a forking parent cannot add children while we go
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGSTOP if sig == signal.SIGKILL else sig)
        total += _kill_pids(pids, sig)
    return total


def _alive(pid: int) -> bool:
    """Not yet dead: zombies keep their environ readable but need no kill."""
    stat = _read(Path(f"/proc/{pid}/stat"))
    return bool(stat) and stat.rpartition(")")[2].split()[:1] != ["Z"]


def kill_handle(handle: str, sig: int = signal.SIGKILL) -> int:
    """Signal every process of the job named by `handle` (see the module doc)."""
    kind, _, rest = handle.partition(" ")
    if kind == "pg" or kind.isdigit():  # a bare number: the protocol before isolation
        _killpg(int(rest or kind), sig)
        return 1
    if kind == "v1":
        return kill_v1(Path(rest), sig)
    if kind == "v2":
        return kill_v2(Path(rest), sig)
    if kind == "env":
        pgid, node, attempt, job = rest.split(" ", 3)
        return kill_marked(int(pgid), env_marker(node, job, int(attempt)), sig)
    raise ValueError(f"unknown job handle {handle!r}")
