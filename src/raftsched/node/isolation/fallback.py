"""No usable cgroups: the node makes itself a child subreaper, so a job's
orphaned (setsid, double-forked, nohup) descendants are re-parented to the node
instead of init and stay in its process tree. A kill takes the job's process
group, the descendants of its main process, and every orphan among the node's
children whose environment carries the attempt's RAFTSCHED_NODE_ID,
RAFTSCHED_JOB_ID and RAFTSCHED_ATTEMPT, with their descendants. The lease
watchdog, which must work when the node is frozen or dead (then orphans go to
init), scans all of /proc for that environment instead (kill.py, `env` handle).

Gaps, documented in docs/isolation.md: an orphan that rewrote its environment
(`env -i`) is not attributed to its job; limits other than the timeout are not
enforced in this mode."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import raftsched.node.isolation.kill as kill
from raftsched.node.isolation.base import Isolation, Limits, Sandbox
from raftsched.node.subreaper import set_subreaper


class MarkedSandbox(Sandbox):
    def __init__(self, name: str, limits: Limits, node_id: str, job_id: str, attempt: int,
                 owner: Fallback) -> None:
        super().__init__(name, limits)
        self.node_id, self.job_id, self.attempt = node_id, job_id, attempt
        self.marker = kill.env_marker(node_id, job_id, attempt)
        self.owner = owner

    @property
    def handle(self) -> str:
        return f"env {self.pgid} {self.node_id} {self.attempt} {self.job_id}"

    def started(self, pid: int) -> None:
        super().started(pid)
        self.owner.mains.add(pid)

    def signal(self, sig: int) -> None:
        orphans = [c for c in kill.children(os.getpid())
                   if c not in self.owner.mains and kill.has_marker(c, self.marker)]
        roots = [self.pgid] if self.pgid in self.owner.mains else []
        kill.kill_tree(self.pgid, roots + orphans, sig)

    def exited(self) -> None:
        self.owner.mains.discard(self.pgid)  # reaped: its pid may be reused, never a root again

    def release(self) -> bool:
        self.owner.reap()
        return True


class Fallback(Isolation):
    mode = "fallback"

    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        self.subreaper = set_subreaper()
        self.mains: set[int] = set()  # the jobs' own processes: subprocess waits for those
        self._pgrp = os.getpgrp()

    def describe(self) -> str:
        return f"subreaper={'on' if self.subreaper else 'unavailable'}, kill by process tree and environment"

    def sandbox(self, job_id: str, attempt: int, limits: Limits) -> Sandbox:
        return MarkedSandbox(f"{job_id}.{attempt}", Limits(), self.node_id, job_id, attempt, self)

    def reap(self) -> None:
        """Reap dead orphans re-parented to us. Never a job's main process (its
        Popen waits for it) nor a child forked by the node itself (same process
        group as the node: e.g. pysyncobj's snapshot writer, which waits for it)."""
        for pid in kill.children(os.getpid()):
            if pid in self.mains:
                continue
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[2]) != self._pgrp:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)

    def sweep(self) -> None:
        super().sweep()
        self.reap()
