"""Runs job attempts as subprocesses on this node.

Each attempt runs in its own sandbox (node/isolation: a cgroup where the machine
allows, else a process group plus an environment scan) with RAFTSCHED_JOB_ID,
RAFTSCHED_ATTEMPT and RAFTSCHED_FENCING_TOKEN in its environment and the
memory/CPU/pids limits of its spec; stdout and stderr go through pipes into
capped files under the node's data directory (node/output.py), and a bounded
tail of each is reported. Exit is noticed through a pidfd registered with the
event loop (no thread per child). A timeout or cancel sends SIGTERM to every
process of the attempt, then SIGKILL after the grace period; when the job's
main process ends, whatever it left behind is killed. Starting the same (job,
attempt) twice is a no-op, and so is starting an attempt of a job older than one
already started here (attempts only grow: the older one is a late start).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from raftsched.config import IsolationConfig
from raftsched.core.model import JobSpec, ResourceLimits, Resources
from raftsched.node.isolation import Isolation, Sandbox
from raftsched.node.jobenv import Scratch, job_env
from raftsched.node.lease import Lease
from raftsched.node.output import OutputSink, Retention
from raftsched.node.reports import Report, ReportKind
from raftsched.node.runas import Identity, RunAs

if TYPE_CHECKING:
    from raftsched.node.pytasks.pool import PyPool

log = structlog.get_logger("raftsched.node.executor")

SEEN_CAPACITY = 200_000
KEEP_OUTPUT_FILES = 2000
SWEEP_INTERVAL = 2.0  # seconds between isolation housekeeping rounds (reaping, cgroup removal)


@dataclass
class Attempt:
    job_id: str
    attempt: int
    token: int
    spec: JobSpec
    proc: subprocess.Popen[bytes]
    pidfd: int
    sandbox: Sandbox
    out: OutputSink
    err: OutputSink
    started: float
    started_mono: float = 0.0
    timed_out: bool = False
    killed_reason: str = ""
    handles: list[asyncio.TimerHandle] = field(default_factory=list)


def _missing_program(argv: list[str], env: dict[str, str], cwd: str) -> str:
    """A sandbox starts the job through a joining shell, whose exec failure would
    look like exit code 127: find a missing program first, as Popen would."""
    prog = argv[0] if argv else ""
    if "/" in prog:
        path = os.path.join(cwd or os.getcwd(), prog)
        found = os.path.isfile(path) and os.access(path, os.X_OK)
    else:
        found = bool(prog) and shutil.which(prog, path=env.get("PATH", os.defpath)) is not None
    return "" if found else f"[Errno 2] No such file or directory: {prog!r}"


class Executor:
    def __init__(
        self,
        node_id: str,
        work_dir: Path,
        loop: asyncio.AbstractEventLoop,
        on_report: Callable[[Report], None],
        kill_grace: float = 3.0,
        lease: Lease | None = None,
        isolation: Isolation | None = None,
        settings: IsolationConfig | None = None,
        scratch: Scratch | None = None,
        allowed_run_as: tuple[str, ...] = (),
        pytasks: PyPool | None = None,
    ) -> None:
        self.node_id = node_id
        self.scratch = scratch or Scratch(work_dir, 3600.0)
        self.run_as = RunAs(node_id, allowed_run_as, self.scratch.retention, work_dir)
        self.out_dir = work_dir / "output"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.loop = loop
        self.on_report = on_report
        self.kill_grace = kill_grace
        self.lease = lease
        self.isolation = isolation or Isolation(node_id)
        self.settings = settings or IsolationConfig()
        self.running: dict[tuple[str, int], Attempt] = {}
        self._seen: OrderedDict[str, int] = OrderedDict()  # job -> highest attempt started here
        self.pytasks = pytasks  # Python tasks (issue 14) run in this node's worker pool
        self._retention = Retention(self.settings.output_retention_bytes, KEEP_OUTPUT_FILES)
        self._sweeping: asyncio.TimerHandle | None = None
        self.started_total = 0
        self.finished_total = 0
        self.oom_killed_total = 0
        self._cpu_sample = (0.0, 0, 0)  # (monotonic, cumulative cpu ns, last rate in millicores)

    # ---- public -------------------------------------------------------------------

    def limits(self, spec: JobSpec) -> ResourceLimits:
        """What this attempt may use: its limits, defaulting to its request."""
        lim, req = spec.limits, spec.resources
        return self.isolation.enforced(ResourceLimits(
            lim.memory_mib or req.memory_mib, lim.cpu_millis or req.cpu_millis,
            lim.pids or self.settings.pids_limit))

    def start(self, job_id: str, attempt: int, token: int, spec: JobSpec) -> bool:
        """Start an attempt. False if this attempt, or a later one of the job, was
        already started here."""
        key = (job_id, attempt)
        latest = self._seen.get(job_id)
        if latest is not None and attempt <= latest:
            if attempt < latest:
                log.warning("late start refused: a later attempt of the job was started here",
                            job=job_id, attempt=attempt, token=token, started_attempt=latest)
            else:
                log.debug("repeated start ignored", job=job_id, attempt=attempt, token=token)
            return False
        self._seen[job_id] = attempt
        self._seen.move_to_end(job_id)
        if len(self._seen) > SEEN_CAPACITY:
            self._seen.popitem(last=False)
        started: tuple[subprocess.Popen[bytes], Sandbox, OutputSink, OutputSink] | str
        who = self.run_as.identity(spec.run_as) if spec.run_as else None
        try:
            if isinstance(who, str):
                raise ValueError(who)  # not allowed here, or no such user
            # checks the job id is a safe file name
            if who:
                scratch = self.run_as.scratch().make(job_id, attempt, (who.uid, who.gid))
            elif spec.python.target and self.pytasks is not None:
                scratch = self.scratch.path(job_id, attempt)  # made by the worker process
            else:
                scratch = self.scratch.make(job_id, attempt)
        except (OSError, ValueError) as e:
            started = str(e)
        else:
            if spec.python.target and self.pytasks is not None:  # a Python task (issue 14)
                self.pytasks.start_task(job_id, attempt, token, spec, scratch)
                return True
            env = job_env(spec.env, job_id, attempt, token, self.node_id, scratch,
                          who.env() if who else None)
            started = ("this node has no Python worker pool" if spec.python.target
                       else self._spawn(job_id, attempt, spec, env, spec.working_dir or str(scratch),
                                        who))
        if isinstance(started, str):
            log.warning("job could not start", job=job_id, attempt=attempt, error=started)
            self.on_report(Report(job_id, attempt, token, ReportKind.FINISHED, time.time(),
                                  error=f"could not start: {started}"))
            return True
        proc, sandbox, out, err = started
        if self.lease is not None:
            self.lease.register(sandbox.handle)
        pidfd = os.pidfd_open(proc.pid)
        a = Attempt(job_id, attempt, token, spec, proc, pidfd, sandbox, out, err, time.time(),
                    time.monotonic())
        self.running[key] = a
        self.started_total += 1
        self.loop.add_reader(pidfd, self._on_exit, key)
        if spec.timeout_s > 0:
            a.handles.append(self.loop.call_later(spec.timeout_s, self._on_timeout, key))
        if self._sweeping is None:
            self._sweeping = self.loop.call_later(SWEEP_INTERVAL, self._sweep)
        note = f"isolation {self.isolation.mode}: {sandbox.limits.describe()}"
        self.on_report(Report(job_id, attempt, token, ReportKind.STARTED, a.started, isolation=note))
        log.debug("job started", job=job_id, attempt=attempt, token=token, pid=proc.pid)
        return True

    def keeps_output(self, job_id: str, attempt: int) -> bool:
        """True if the attempt runs here, or ran here and printed nothing (no files: they
        are created at the first byte) and is still within the output retention."""
        if (job_id, attempt) in self.running:
            return True
        return self._out_paths(job_id, attempt) in self._retention.empty

    def _out_paths(self, job_id: str, attempt: int) -> tuple[Path, Path]:
        return self.out_dir / f"{job_id}.{attempt}.out", self.out_dir / f"{job_id}.{attempt}.err"

    def kill(self, job_id: str, attempt: int, reason: str) -> bool:
        """Stop an attempt: SIGTERM to all its processes, SIGKILL after the grace period."""
        a = self.running.get((job_id, attempt))
        if a is None:
            return self.pytasks is not None and self.pytasks.kill(job_id, attempt, reason)
        if not a.killed_reason:
            a.killed_reason = reason
            a.sandbox.signal(signal.SIGTERM)
            a.handles.append(
                self.loop.call_later(self.kill_grace, a.sandbox.signal, signal.SIGKILL)
            )
        return True

    def kill_all_now(self) -> None:
        if self.pytasks is not None:
            self.pytasks.close()
        for a in list(self.running.values()):
            a.killed_reason = a.killed_reason or "node shutting down"
            a.sandbox.signal(signal.SIGKILL)

    def close(self) -> None:
        """The node stops: kill what runs and remove the isolation groups."""
        self.kill_all_now()
        if self._sweeping is not None:
            self._sweeping.cancel()
        self.isolation.close()

    def in_use(self) -> Resources:
        """Requests of the attempts running here now."""
        attempts = list(self.running.values())  # one C call: safe from the heartbeat thread
        cpu = sum(a.spec.resources.cpu_millis for a in attempts)
        mem = sum(a.spec.resources.memory_mib for a in attempts)
        py = self.pytasks.in_use() if self.pytasks is not None else Resources()
        return Resources(cpu, mem) + py

    def actual_use(self) -> tuple[int, int, str]:
        """(CPU millicores averaged since the previous call at least 1 s ago, memory
        MiB) used by this node's jobs, read from their cgroups, and the isolation
        mode; -1 when the mode cannot measure (fallback)."""
        mode = self.isolation.mode
        if mode not in ("cgroup-v1", "cgroup-v2"):
            return -1, -1, mode
        u, now = self.isolation.usage(), time.monotonic()
        t0, ns0, rate = self._cpu_sample
        if now - t0 >= 1.0:
            rate = int((u.cpu_ns - ns0) / (now - t0) / 1e6) if t0 else 0
            self._cpu_sample = (now, u.cpu_ns, rate)
        return max(0, rate), u.memory_bytes >> 20, mode

    def running_attempts(self) -> list[tuple[str, int, int]]:
        py = self.pytasks.running_attempts() if self.pytasks is not None else []
        return [(a.job_id, a.attempt, a.token) for a in list(self.running.values())] + py

    # ---- internals ----------------------------------------------------------------

    def _spawn(self, job_id: str, attempt: int, spec: JobSpec, env: dict[str, str], cwd: str,
               who: Identity | None = None
               ) -> tuple[subprocess.Popen[bytes], Sandbox, OutputSink, OutputSink] | str:
        """The started process with its sandbox and output, or why it could not start.
        `who`: the run_as user (node/runas.py), else the node's own."""
        argv = spec.argv()
        cap = self.settings.output_cap_bytes
        try:
            sandbox = self.isolation.sandbox(job_id, attempt, self.limits(spec))
        except OSError as e:
            return f"isolation ({self.isolation.mode}): {e}"
        sinks: list[OutputSink] = []
        try:
            wrapped = sandbox.wrap(argv)
            as_user = self.run_as.popen_kwargs(who) if who and wrapped is argv else {}
            if wrapped is not argv:
                missing = _missing_program(argv, env, cwd)
                if missing:
                    raise FileNotFoundError(missing)
                if who:  # the joining shell needs the node's rights: drop them after it
                    wrapped = sandbox.wrap(self.run_as.drop_argv(who) + argv)
            for path in self._out_paths(job_id, attempt):
                sinks.append(OutputSink(self.loop, path, cap))
            out, err = sinks
            proc = subprocess.Popen(
                wrapped,
                stdin=subprocess.DEVNULL,
                stdout=out.child_fd,
                stderr=err.child_fd,
                env=env,
                cwd=cwd,
                process_group=0,
                close_fds=True,
                **as_user,
            )
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            for sink in sinks:
                sink.close()
            sandbox.release()
            return str(e)
        sandbox.started(proc.pid)
        out.child_started()
        err.child_started()
        return proc, sandbox, out, err

    def _release(self, sandbox: Sandbox) -> None:
        """Worker thread: remove the attempt's groups; busy ones are retried by the sweep."""
        if not sandbox.release():
            self.loop.call_soon_threadsafe(self.isolation.release_later, sandbox)

    def _sweep(self) -> None:
        self.isolation.sweep()
        self._sweeping = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

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
        a.sandbox.exited()
        # Anything the job left behind (daemons, setsid or double-forked children) goes with it.
        a.sandbox.signal(signal.SIGKILL)
        lost = False
        if self.lease is not None:
            self.lease.unregister(a.sandbox.handle)
            # SIGKILLed, not by us, while our lease was out: the watchdog fenced it off.
            lost = (code == -signal.SIGKILL and not a.killed_reason
                    and self.lease.lapsed_between(a.started_mono, time.monotonic()))
        oom = not lost and a.sandbox.oom_killed()
        self.oom_killed_total += oom
        self.finished_total += 1
        error = ""
        if lost:
            error = "lease expired; killed by the watchdog"
        elif a.killed_reason and not a.timed_out:
            error = f"killed: {a.killed_reason}"
        stdout_tail, stderr_tail = a.out.close(), a.err.close()
        # Removing cgroups takes ~2 ms of syscalls: off the event loop (they release the GIL).
        self.loop.run_in_executor(None, self._release, a.sandbox)
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
                stdout_tail=stdout_tail,
                stderr_tail=stderr_tail,
                lost=lost,
                oom_killed=oom,
            )
        )
        self._retention.add((a.out.path, a.err.path), a.out.size() + a.err.size())
