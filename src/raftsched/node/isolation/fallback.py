"""No usable cgroups: the node makes itself a child subreaper, so a job's
orphaned (setsid, double-forked, nohup) descendants are re-parented to the node
instead of init, and a kill takes the job's process group plus every process
whose environment carries the attempt's RAFTSCHED_NODE_ID, RAFTSCHED_JOB_ID and
RAFTSCHED_ATTEMPT (found by scanning /proc). A process that rewrites its whole
environment (e.g. `env -i`) escapes this scan; cgroups have no such gap.
Limits other than the timeout are not enforced in this mode."""

from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path

from raftsched.node.isolation import kill
from raftsched.node.isolation.base import Isolation, Limits, Sandbox

PR_SET_CHILD_SUBREAPER = 36


def set_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class MarkedSandbox(Sandbox):
    def __init__(self, name: str, limits: Limits, node_id: str, job_id: str, attempt: int,
                 owner: Fallback) -> None:
        super().__init__(name, limits)
        self.node_id, self.job_id, self.attempt = node_id, job_id, attempt
        self.owner = owner

    @property
    def handle(self) -> str:
        return f"env {self.pgid} {self.node_id} {self.attempt} {self.job_id}"

    def started(self, pid: int) -> None:
        super().started(pid)
        self.owner.mains.add(pid)

    def signal(self, sig: int) -> None:
        self.owner.orphans.update(kill.marked_pids(kill.env_marker(self.node_id, self.job_id,
                                                                   self.attempt)))
        super().signal(sig)
        self.owner.reap()

    def release(self) -> bool:
        self.owner.mains.discard(self.pgid)
        return True


class Fallback(Isolation):
    mode = "fallback"

    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self.subreaper = set_subreaper()
        # Marked processes seen while killing: once re-parented to us and dead,
        # they are ours to reap (we never reap a child we did not see marked, so
        # the Popen objects of jobs and pysyncobj's dump child keep their status).
        self.orphans: set[int] = set()
        self.mains: set[int] = set()  # the jobs' own processes: subprocess waits for those

    def describe(self) -> str:
        return f"subreaper={'on' if self.subreaper else 'unavailable'}, kill by environment scan"

    def sandbox(self, job_id: str, attempt: int, limits: Limits) -> Sandbox:
        return MarkedSandbox(f"{job_id}.{attempt}", Limits(), self.node_id, job_id, attempt, self)

    def reap(self) -> None:
        me = os.getpid()
        for pid in list(self.orphans - self.mains):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                self.orphans.discard(pid)  # gone (reaped by its own parent)
                continue
            fields = stat.rpartition(")")[2].split()
            if int(fields[1]) != me:
                continue  # still someone else's child
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    self.orphans.discard(pid)

    def sweep(self) -> None:
        """Note this node's marked processes (an orphan that exits by itself is
        then reaped too), and reap the dead ones re-parented to us."""
        super().sweep()
        if self.mains or self.orphans:
            self.orphans.update(kill.marked_pids((f"RAFTSCHED_NODE_ID={self.node_id}".encode(),)))
        self.reap()
