"""Runs job attempts as subprocesses on this node.

Each attempt runs in its own process group with RAFTSCHED_JOB_ID,
RAFTSCHED_ATTEMPT and RAFTSCHED_FENCING_TOKEN in its environment; stdout and
stderr go to files under the node's data directory, and a bounded tail of each
is reported. Exit is noticed through a pidfd registered with the event loop (no
thread per child). A timeout sends SIGTERM to the group, then SIGKILL after the
grace period. Starting the same (job, attempt) twice is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import structlog

from raftsched.core.model import JobSpec, Resources
from raftsched.node.lease import Lease

log = structlog.get_logger("raftsched.node.executor")

TAIL_BYTES = 4096
SEEN_CAPACITY = 200_000
KEEP_OUTPUT_FILES = 2000


class ReportKind(StrEnum):
    STARTED = "STARTED"
    FINISHED = "FINISHED"


@dataclass(frozen=True, slots=True)
class Report:
    job_id: str
    attempt: int
    token: int
    kind: ReportKind
    at: float
    exit_code: int | None = None
    timed_out: bool = False
    error: str = ""
    stdout_tail: str = ""
    stderr_tail: str = ""
    lost: bool = False


@dataclass
class Attempt:
    job_id: str
    attempt: int
    token: int
    spec: JobSpec
    proc: subprocess.Popen[bytes]
    pidfd: int
    out_path: Path
    err_path: Path
    started: float
    started_mono: float = 0.0
    timed_out: bool = False
    killed_reason: str = ""
    handles: list[asyncio.TimerHandle] = field(default_factory=list)


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class Executor:
    def __init__(
        self,
        node_id: str,
        work_dir: Path,
        loop: asyncio.AbstractEventLoop,
        on_report: Callable[[Report], None],
        kill_grace: float = 3.0,
        lease: Lease | None = None,
    ) -> None:
        self.node_id = node_id
        self.out_dir = work_dir / "output"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.loop = loop
        self.on_report = on_report
        self.kill_grace = kill_grace
        self.lease = lease
        self.running: dict[tuple[str, int], Attempt] = {}
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._outputs: deque[tuple[Path, Path]] = deque()
        self.started_total = 0
        self.finished_total = 0

    # ---- public -------------------------------------------------------------------

    def start(self, job_id: str, attempt: int, token: int, spec: JobSpec) -> bool:
        """Start an attempt. False if this (job, attempt) was already started here."""
        key = (job_id, attempt)
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > SEEN_CAPACITY:
            self._seen.popitem(last=False)
        out_path = self.out_dir / f"{job_id}.{attempt}.out"
        err_path = self.out_dir / f"{job_id}.{attempt}.err"
        env = dict(os.environ)
        env.update(spec.env)
        env["RAFTSCHED_JOB_ID"] = job_id
        env["RAFTSCHED_ATTEMPT"] = str(attempt)
        env["RAFTSCHED_FENCING_TOKEN"] = str(token)
        env["RAFTSCHED_NODE_ID"] = self.node_id
        try:
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                proc = subprocess.Popen(
                    spec.argv(),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=env,
                    cwd=spec.working_dir or None,
                    process_group=0,
                    close_fds=True,
                )
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            log.warning("job could not start", job=job_id, attempt=attempt, error=str(e))
            self.on_report(
                Report(job_id, attempt, token, ReportKind.FINISHED, time.time(),
                       error=f"could not start: {e}")
            )
            return True
        if self.lease is not None:
            self.lease.register(proc.pid)  # process_group=0: the pgid is the pid
        pidfd = os.pidfd_open(proc.pid)
        a = Attempt(job_id, attempt, token, spec, proc, pidfd, out_path, err_path, time.time(),
                    time.monotonic())
        self.running[key] = a
        self.started_total += 1
        self.loop.add_reader(pidfd, self._on_exit, key)
        if spec.timeout_s > 0:
            a.handles.append(self.loop.call_later(spec.timeout_s, self._on_timeout, key))
        self.on_report(Report(job_id, attempt, token, ReportKind.STARTED, a.started))
        log.debug("job started", job=job_id, attempt=attempt, token=token, pid=proc.pid)
        return True

    def kill(self, job_id: str, attempt: int, reason: str) -> bool:
        """Stop an attempt: SIGTERM to its group, SIGKILL after the grace period."""
        a = self.running.get((job_id, attempt))
        if a is None:
            return False
        if not a.killed_reason:
            a.killed_reason = reason
            self._signal(a, signal.SIGTERM)
            a.handles.append(
                self.loop.call_later(self.kill_grace, self._signal, a, signal.SIGKILL)
            )
        return True

    def kill_all_now(self) -> None:
        for a in list(self.running.values()):
            a.killed_reason = a.killed_reason or "node shutting down"
            self._signal(a, signal.SIGKILL)

    def in_use(self) -> Resources:
        """Requests of the attempts running here now."""
        cpu = sum(a.spec.resources.cpu_millis for a in self.running.values())
        mem = sum(a.spec.resources.memory_mib for a in self.running.values())
        return Resources(cpu, mem)

    def running_attempts(self) -> list[tuple[str, int, int]]:
        return [(a.job_id, a.attempt, a.token) for a in self.running.values()]

    # ---- internals ----------------------------------------------------------------

    def _signal(self, a: Attempt, sig: int) -> None:
        try:
            os.killpg(a.proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as e:
            log.warning("cannot signal job", job=a.job_id, error=str(e))

    def _on_timeout(self, key: tuple[str, int]) -> None:
        a = self.running.get(key)
        if a is None:
            return
        a.timed_out = True
        log.info("job timed out", job=a.job_id, attempt=a.attempt, timeout=a.spec.timeout_s)
        self.kill(a.job_id, a.attempt, f"timed out after {a.spec.timeout_s:g}s")

    def _on_exit(self, key: tuple[str, int]) -> None:
        a = self.running.pop(key, None)
        if a is None:
            return
        self.loop.remove_reader(a.pidfd)
        os.close(a.pidfd)
        for h in a.handles:
            h.cancel()
        code = a.proc.wait()
        lost = False
        if self.lease is not None:
            self.lease.unregister(a.proc.pid)
            # SIGKILLed, not by us, while our lease was out: the watchdog fenced it off.
            lost = (code == -signal.SIGKILL and not a.killed_reason
                    and self.lease.lapsed_between(a.started_mono, time.monotonic()))
        # Anything the job left behind in its process group goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(a.proc.pid, signal.SIGKILL)
        self.finished_total += 1
        error = ""
        if lost:
            error = "lease expired; killed by the watchdog"
        elif a.killed_reason and not a.timed_out:
            error = f"killed: {a.killed_reason}"
        self.on_report(
            Report(
                a.job_id,
                a.attempt,
                a.token,
                ReportKind.FINISHED,
                time.time(),
                exit_code=code,
                timed_out=a.timed_out,
                error=error,
                stdout_tail=_tail(a.out_path),
                stderr_tail=_tail(a.err_path),
                lost=lost,
            )
        )
        self._outputs.append((a.out_path, a.err_path))
        while len(self._outputs) > KEEP_OUTPUT_FILES:
            for p in self._outputs.popleft():
                p.unlink(missing_ok=True)
