"""The node's warm pool of Python worker processes (issue 14).

`python_workers` processes start with the node. An assigned Python task waits in
the pool's queue until a worker is idle, then runs there: STARTED is reported once
it has run for STARTED_DELAY (a shorter task goes from ASSIGNED straight to its end),
FINISHED with the return value (JSON) or the exception.
The attempt's states, retries, cancel and fencing are those of any job:

- timeout: the worker is SIGKILLed (a Python call cannot be interrupted safely),
  the attempt ends TIMED_OUT, and a fresh worker replaces it;
- cancel / revoke: the same kill, reported as "killed: <reason>";
- a worker dying mid-task (SIGKILL, segfault, OOM killer): the attempt FAILED
  ("Python worker died ..."), retried by the job's policy with a new attempt and
  fencing token; the pool starts a replacement;
- the lease: every worker is registered with the lease watchdog for its whole life
  (once, not twice per task: two pipe writes per task were ~6% of a node's samples),
  so a busy one is killed in time when the node loses its lease (LOST) and an idle
  one is replaced;
- recycling: after `python_max_tasks` tasks or once its RSS exceeds
  `python_max_rss_mib`, an idle worker is retired and replaced.

Worker processes get the same hygiene as subprocess jobs (docs/security.md): a
minimal environment (never the node's), their own sandbox, and each task runs
with its job's environment in its own scratch directory.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

import raftsched
from raftsched.core.model import JobSpec, ResourceLimits, Resources
from raftsched.node.isolation import Isolation, Sandbox
from raftsched.node.jobenv import BASE_PATH, Scratch, job_env
from raftsched.node.lease import Lease
from raftsched.node.pytasks.proc import PyWorker
from raftsched.node.pytasks.settings import PyPoolConfig
from raftsched.node.reports import Report, ReportKind

log = structlog.get_logger("raftsched.node.pytasks")

STARTED_DELAY = 0.05  # seconds: STARTED is reported only for a task still running then
RESPAWN_DELAY = 1.0  # a worker that died without running a task is restarted after this
TAIL = 4000


@dataclass
class PyTask:
    job_id: str
    attempt: int
    token: int
    spec: JobSpec
    env: dict[str, str]
    cwd: str
    worker: PyWorker | None = None
    queued_mono: float = 0.0
    started_mono: float = 0.0
    timed_out: bool = False
    killed_reason: str = ""
    handles: list[asyncio.TimerHandle] = field(default_factory=list)


class PyPool:
    def __init__(self, node_id: str, cfg: PyPoolConfig, data_dir: Path, loop: asyncio.AbstractEventLoop,
                 on_report: Callable[[Report], None], lease: Lease | None, isolation: Isolation,
                 scratch: Scratch, pids_limit: int = 0) -> None:
        self.node_id = node_id
        self.cfg = cfg
        self.loop = loop
        self.on_report = on_report
        self.lease = lease
        self.isolation = isolation
        self.scratch = scratch
        self.pids_limit = pids_limit
        self.home = data_dir / "pytasks"
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        self.workers: list[PyWorker] = []
        self.queue: deque[PyTask] = deque()
        self.tasks: dict[tuple[str, int], PyTask] = {}
        self.closing = False
        self.broken = ""  # why the last worker could not be started ("" = it could)
        self.spawned = 0
        self.replaced = 0
        self.recycled = 0
        self.finished_total = 0

    # ---- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        for _ in range(self.cfg.workers):
            self._spawn()
        if self.cfg.workers:
            log.info("python worker pool started", workers=self.cfg.workers,
                     python=self.cfg.executable or sys.executable, path=list(self.cfg.path))

    def close(self) -> None:
        self.closing = True
        for w in list(self.workers):
            w.kill()

    def _argv_env(self, name: str, generation: int) -> tuple[list[str], dict[str, str]]:
        src = str(Path(raftsched.__file__).resolve().parent.parent)
        env = {"PATH": BASE_PATH, "HOME": str(self.home), "LANG": "C.UTF-8", "TMPDIR": str(self.home),
               "PYTHONPATH": os.pathsep.join([*self.cfg.path, src]), "PYTHONUNBUFFERED": "1",
               # the fallback isolation finds a worker's orphans by these (isolation/kill.py)
               "RAFTSCHED_NODE_ID": self.node_id, "RAFTSCHED_JOB_ID": name,
               "RAFTSCHED_ATTEMPT": str(generation)}
        python = self.cfg.executable or sys.executable
        return [python, "-m", "raftsched.node.pytasks.child"], env

    def _spawn(self) -> None:
        if self.closing:
            return
        self.spawned += 1
        name = f"_pyworker-{self.spawned}"
        argv, env = self._argv_env(name, self.spawned)
        sandbox: Sandbox | None = None
        try:
            sandbox = self.isolation.sandbox(name, self.spawned, self.isolation.enforced(
                ResourceLimits(0, 0, self.pids_limit)))
            w = PyWorker(name, argv, env, str(self.home), sandbox, self.loop, self._on_reply,
                         self._on_exit)
        except (OSError, ValueError) as e:
            log.error("python worker could not start; retrying", error=str(e), python=argv[0])
            if sandbox is not None:
                self.loop.run_in_executor(None, self._release, sandbox)
            self.broken = f"could not start: no Python worker can start on node {self.node_id}: {e}"
            if not self.workers:  # nothing will ever take the queued tasks: fail them visibly
                while self.queue:
                    self._end(self.queue.popleft(), error=self.broken)
            self.loop.call_later(RESPAWN_DELAY, self._spawn)
            return
        self.broken = ""
        if self.lease is not None:
            self.lease.register(w.sandbox.handle)
        self.workers.append(w)
        self._dispatch()

    # ---- the executor's side ------------------------------------------------------

    def start_task(self, job_id: str, attempt: int, token: int, spec: JobSpec, scratch: Path) -> None:
        if self.cfg.workers == 0:
            self._report_end(job_id, attempt, token, error=(
                f"could not start: node {self.node_id} runs no Python workers (python_workers = 0)"))
            return
        if self.broken and not self.workers:
            self._report_end(job_id, attempt, token, error=self.broken)
            return
        env = job_env(dict(spec.env), job_id, attempt, token, self.node_id, scratch)
        t = PyTask(job_id, attempt, token, spec, env, spec.working_dir or str(scratch),
                   queued_mono=time.monotonic())
        self.tasks[(job_id, attempt)] = t
        self.queue.append(t)
        self._dispatch()

    def kill(self, job_id: str, attempt: int, reason: str) -> bool:
        t = self.tasks.get((job_id, attempt))
        if t is None:
            return False
        if t.worker is None:  # still queued
            self.queue.remove(t)
            self._end(t, error=f"killed: {reason}")
        elif not t.killed_reason:
            t.killed_reason = reason
            t.worker.kill()
        return True

    def running_attempts(self) -> list[tuple[str, int, int]]:
        return [(t.job_id, t.attempt, t.token) for t in list(self.tasks.values())]

    def in_use(self) -> Resources:
        tasks = list(self.tasks.values())  # one C call: safe from the heartbeat thread
        cpu = sum(t.spec.resources.cpu_millis for t in tasks)
        mem = sum(t.spec.resources.memory_mib for t in tasks)
        return Resources(cpu, mem)

    # ---- internals ----------------------------------------------------------------

    def _dispatch(self) -> None:
        idle = [w for w in self.workers if w.task is None and not w.retiring]
        while self.queue and idle:
            t = self.queue.popleft()
            if self._fenced_off(t):
                continue
            w = idle.pop()
            msg = {"job": t.job_id, "attempt": t.attempt, "token": t.token, "node": self.node_id,
                   "target": t.spec.python.target, "args": t.spec.python.args_json,
                   "kwargs": t.spec.python.kwargs_json, "env": t.env, "cwd": t.cwd,
                   "mkcwd": not t.spec.working_dir}  # the scratch dir: made by the worker
            w.task, t.worker, t.started_mono = t, w, time.monotonic()
            if not w.send(msg):  # the worker died meanwhile: its exit handler ends the task
                continue
            if t.spec.timeout_s > 0:
                t.handles.append(self.loop.call_later(t.spec.timeout_s, self._on_timeout, t))
            # A task that ends within STARTED_DELAY is reported FINISHED only (the state
            # machine takes ASSIGNED -> SUCCEEDED/FAILED): one quorum commit less per task.
            t.handles.append(self.loop.call_later(STARTED_DELAY, self._report_started, t, w))

    def _fenced_off(self, t: PyTask) -> bool:
        """A queued task must not start once the node's lease has lapsed since it was
        queued: the leader may have given the job to another node meanwhile (as the
        watchdog kills running attempts, the queued ones are dropped: LOST, requeued)."""
        if self.lease is None or (self.lease.valid()
                                  and not self.lease.lapsed_between(t.queued_mono, time.monotonic())):
            return False
        log.warning("queued python task dropped: the lease lapsed", job=t.job_id, attempt=t.attempt)
        self._end(t, error="lease expired before the task started", lost=True)
        return True

    def _report_started(self, t: PyTask, w: PyWorker) -> None:
        self.on_report(Report(t.job_id, t.attempt, t.token, ReportKind.STARTED, time.time(),
                              isolation=f"python worker {w.name} (pid {w.pid}), "
                                        f"isolation {self.isolation.mode}"))

    def _on_timeout(self, t: PyTask) -> None:
        if t.worker is not None and self.tasks.get((t.job_id, t.attempt)) is t:
            t.timed_out = True
            log.info("python task timed out; worker killed", job=t.job_id, attempt=t.attempt,
                     worker=t.worker.name)
            t.worker.kill()

    def _on_reply(self, w: PyWorker, msg: dict[str, Any]) -> None:
        t = w.task
        if t is None or (msg.get("job"), msg.get("attempt")) != (t.job_id, t.attempt):
            log.warning("python worker reply for no task of its own", worker=w.name)
            return
        if t.timed_out or t.killed_reason:
            return  # being killed: its exit decides the outcome
        self._free(w)
        stderr = (msg.get("stderr", "") + msg.get("traceback", ""))[-TAIL:]
        if msg.get("ok"):
            self._end(t, exit_code=0, result=msg.get("result", ""), stdout=msg.get("stdout", ""),
                      stderr=stderr)
        else:
            self._end(t, exit_code=1, error=msg.get("error", "failed"), stdout=msg.get("stdout", ""),
                      stderr=stderr)
        w.tasks_done += 1
        # the worker's peak resident memory came with its reply: its current one (read
        # from /proc, ~3% of a node's samples per task) is below that, so it is only
        # read when the peak passed the limit
        peak = msg.get("maxrss_kib")
        if not isinstance(peak, int):
            rss = w.rss_mib()
        else:
            rss = w.rss_mib() if self.cfg.max_rss_mib and peak >> 10 > self.cfg.max_rss_mib else peak >> 10
        if ((self.cfg.max_tasks and w.tasks_done >= self.cfg.max_tasks)
                or (self.cfg.max_rss_mib and rss > self.cfg.max_rss_mib)):
            log.info("python worker recycled", worker=w.name, tasks=w.tasks_done, rss_mib=rss)
            self.recycled += 1
            w.retire()
        self._dispatch()

    def _on_exit(self, w: PyWorker, code: int) -> None:
        if w in self.workers:
            self.workers.remove(w)
        if self.lease is not None:
            self.lease.unregister(w.sandbox.handle)
        self.loop.run_in_executor(None, self._release, w.sandbox)
        t = w.task
        if t is not None:
            self._free(w)
            lost = (code == -signal.SIGKILL and not t.killed_reason and not t.timed_out
                    and self.lease is not None
                    and self.lease.lapsed_between(t.started_mono, time.monotonic()))
            if t.timed_out:
                self._end(t, exit_code=code, timed_out=True)
            elif t.killed_reason:
                self._end(t, exit_code=code, error=f"killed: {t.killed_reason}")
            elif lost:
                self._end(t, exit_code=code, error="lease expired; killed by the watchdog", lost=True)
            else:
                how = f"signal {-code}" if code < 0 else f"exit code {code}"
                self._end(t, exit_code=code, error=f"Python worker died ({how}) while running the task")
        if self.closing:
            return
        if not w.retiring:
            self.replaced += 1
            log.info("python worker replaced", worker=w.name, code=code, had_task=t is not None)
        # a worker that dies without ever finishing a task may be a broken setup: not in a loop
        delay = RESPAWN_DELAY if (t is None and w.tasks_done == 0 and not w.retiring) else 0.0
        self.loop.call_later(delay, self._spawn)

    def _free(self, w: PyWorker) -> None:
        if w.task is not None:
            w.task.worker = None
        w.task = None

    def _release(self, sandbox: Sandbox) -> None:
        if not sandbox.release():
            self.loop.call_soon_threadsafe(self.isolation.release_later, sandbox)

    def _end(self, t: PyTask, exit_code: int | None = None, error: str = "", result: str = "",
             stdout: str = "", stderr: str = "", timed_out: bool = False, lost: bool = False) -> None:
        self.tasks.pop((t.job_id, t.attempt), None)
        for h in t.handles:
            h.cancel()
        self._report_end(t.job_id, t.attempt, t.token, exit_code, error, result, stdout, stderr,
                         timed_out, lost)

    def _report_end(self, job_id: str, attempt: int, token: int, exit_code: int | None = None,
                    error: str = "", result: str = "", stdout: str = "", stderr: str = "",
                    timed_out: bool = False, lost: bool = False) -> None:
        self.finished_total += 1
        self.on_report(Report(job_id, attempt, token, ReportKind.FINISHED, time.time(),
                              exit_code=exit_code, timed_out=timed_out, error=error,
                              stdout_tail=stdout, stderr_tail=stderr, lost=lost, result=result))
