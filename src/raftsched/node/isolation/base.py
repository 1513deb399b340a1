"""What every isolation mode offers the executor."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import raftsched.node.isolation.kill as kill
from raftsched.core.model import ResourceLimits as Limits

# Joins the cgroups named by its first $1 arguments, then becomes the job: the job
# is in its groups before it runs a single instruction, without a preexec_fn.
JOIN_SCRIPT = ('n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 125; shift; '
               'n=$((n-1)); done; exec "$@"')


@dataclass(frozen=True, slots=True)
class Usage:
    memory_bytes: int = 0
    cpu_ns: int = 0  # cumulative CPU time


class Sandbox:
    """One attempt's processes. The default is a bare process group."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits
        self.pgid = 0

    @property
    def handle(self) -> str:
        """How the lease watchdog names this attempt (see kill.py)."""
        return f"pg {self.pgid}"

    def wrap(self, argv: list[str]) -> list[str]:
        return argv

    def started(self, pid: int) -> None:
        self.pgid = pid  # started with process_group=0

    def exited(self) -> None:
        """The attempt's main process has been waited for."""

    def signal(self, sig: int) -> None:
        """Signal every process of the attempt (SIGKILL: kill them all)."""
        kill.kill_handle(self.handle, sig)

    def oom_killed(self) -> bool:
        return False

    def usage(self) -> Usage:
        return Usage()

    def release(self) -> bool:
        """Remove what the attempt left behind; False: still busy, try again later."""
        return True


class Isolation:
    mode: ClassVar[str] = "none"

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._busy: list[Sandbox] = []

    @classmethod
    def unusable(cls) -> str:
        """Why this mode cannot be used here ("" if it can)."""
        return ""

    def describe(self) -> str:
        return self.mode

    def sandbox(self, job_id: str, attempt: int, limits: Limits) -> Sandbox:
        return Sandbox(f"{job_id}.{attempt}", limits)

    def enforced(self, limits: Limits) -> Limits:
        """The part of `limits` this mode enforces (none: a bare process group)."""
        return Limits()

    def usage(self) -> Usage:
        """Actual use of all this node's jobs."""
        return Usage()

    def release_later(self, sb: Sandbox) -> None:
        """An attempt's group was still busy when it ended: retried by sweep()."""
        self._busy.append(sb)

    def sweep(self) -> None:
        """Periodic housekeeping: retry releasing busy groups."""
        self._busy = [sb for sb in self._busy if not sb.release()]

    def close(self) -> None:
        """The node stops: remove what is left."""
        self.sweep()


def join_argv(procs_files: list[Path], argv: list[str]) -> list[str]:
    return ["/bin/sh", "-c", JOIN_SCRIPT, "raftsched-join", str(len(procs_files)),
            *map(str, procs_files), *argv]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

