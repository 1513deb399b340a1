"""The Python worker pool in this process (real worker processes, a bare process-group
sandbox, no cluster): results, exceptions, timeouts with replacement, and a pool whose
interpreter cannot start."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from raftsched.core.model import JobSpec, PythonCall
from raftsched.node.isolation import Isolation
from raftsched.node.jobenv import Scratch
from raftsched.node.pytasks.pool import PyPool
from raftsched.node.pytasks.settings import PyPoolConfig
from raftsched.node.reports import Report, ReportKind

pytestmark = pytest.mark.timeout(60)
ROOT = str(Path(__file__).resolve().parents[2])
F = "tests.support.pytasks_funcs"


async def run_pool(tmp: Path, cfg: PyPoolConfig, tasks: list[tuple[str, JobSpec]],
                   settle: float = 0.0, lease: object = None) -> tuple[PyPool, list[Report], list[int]]:
    loop = asyncio.get_running_loop()
    reports: list[Report] = []
    done = asyncio.Event()

    def on_report(r: Report) -> None:
        reports.append(r)
        if sum(x.kind is ReportKind.FINISHED for x in reports) == len(tasks):
            done.set()

    scratch = Scratch(tmp, 3600)
    pool = PyPool("n1", cfg, tmp, loop, on_report, lease, Isolation("n1"), scratch)  # type: ignore[arg-type]
    pool.start()
    try:
        for jid, spec in tasks:
            pool.start_task(jid, 1, 7, spec, scratch.make(jid, 1))
        await asyncio.wait_for(done.wait(), 30)
        await asyncio.sleep(settle)
        pids = [w.pid for w in pool.workers]
    finally:
        pool.close()
        await asyncio.sleep(0.2)  # let the exits be reaped
    return pool, reports, pids


def finished(reports: list[Report]) -> dict[str, Report]:
    return {r.job_id: r for r in reports if r.kind is ReportKind.FINISHED}


def test_results_exceptions_and_a_timeout_that_replaces_the_worker(tmp_path: Path) -> None:
    cfg = PyPoolConfig(workers=2, path=(ROOT,))
    tasks = [("ok", JobSpec(python=PythonCall(f"{F}:add", "[2,3]"))),
             ("bad", JobSpec(python=PythonCall(f"{F}:fail_until", json.dumps([5, str(tmp_path / "l")])))),
             ("slow", JobSpec(python=PythonCall(f"{F}:sleep_then", "[30]"), timeout_s=0.5))]
    pool, reports, pids = asyncio.run(run_pool(tmp_path, cfg, tasks, settle=0.5))
    end = finished(reports)
    assert (end["ok"].exit_code, end["ok"].result, end["ok"].error) == (0, "5", "")
    assert end["bad"].error == "raised ValueError: boom on attempt 1" and end["bad"].result == ""
    assert "ValueError: boom" in end["bad"].stderr_tail
    assert end["slow"].timed_out and end["slow"].exit_code == -9
    assert pool.replaced == 1 and len(pids) == 2  # the killed worker was replaced
    started = {r.job_id for r in reports if r.kind is ReportKind.STARTED}
    assert "slow" in started  # reported once it had run 50 ms (a quick task may skip STARTED)


def test_a_pool_whose_interpreter_cannot_start_fails_its_tasks(tmp_path: Path) -> None:
    cfg = PyPoolConfig(workers=1, executable=str(tmp_path / "no-such-python"))
    _, reports, pids = asyncio.run(run_pool(tmp_path, cfg, [("t", JobSpec(python=PythonCall(f"{F}:noop")))]))
    r = finished(reports)["t"]
    assert r.error.startswith("could not start: no Python worker can start on node n1") and pids == []


class RecordingLease:
    """What the pool tells the lease watchdog (a lease that never lapses)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def register(self, handle: str) -> None:
        self.calls.append(("A", handle))

    def unregister(self, handle: str) -> None:
        self.calls.append(("D", handle))

    def valid(self) -> bool:
        return True

    def lapsed_between(self, a: float, b: float) -> bool:
        return False


def test_every_worker_is_fenced_by_the_lease_for_its_whole_life(tmp_path: Path) -> None:
    """Registered once when it starts and unregistered when it exits, whatever it ran
    (a killed worker's handle goes, its replacement's comes): not two pipe writes per task."""
    lease = RecordingLease()
    cfg = PyPoolConfig(workers=2, path=(ROOT,))
    tasks = [(f"ok{i}", JobSpec(python=PythonCall(f"{F}:add", "[1,1]"))) for i in range(8)]
    tasks.append(("slow", JobSpec(python=PythonCall(f"{F}:sleep_then", "[30]"), timeout_s=0.5)))
    pool, reports, _ = asyncio.run(run_pool(tmp_path, cfg, tasks, settle=0.5, lease=lease))
    assert all(r.exit_code == 0 for j, r in finished(reports).items() if j != "slow")
    added = [h for k, h in lease.calls if k == "A"]
    removed = [h for k, h in lease.calls if k == "D"]
    assert pool.spawned == 3 and len(added) == 3 == len(set(added))  # 2 + the replacement
    assert sorted(removed) == sorted(added)  # every worker exited (the pool closed)


def test_a_tasks_environment_is_exactly_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """set_environ leaves nothing of the previous environment behind (a task's variables
    must not leak into the next task run by the same worker)."""
    from raftsched.node.pytasks.child import set_environ

    monkeypatch.setattr(os, "environ", os.environ.copy())  # a plain copy: this process keeps its own
    first = {"PATH": "/bin", "SECRET": "task-1", "RAFTSCHED_JOB_ID": "a"}
    set_environ(first)
    assert dict(os.environ) == first
    second = {"PATH": "/bin", "RAFTSCHED_JOB_ID": "b"}
    set_environ(second)
    assert dict(os.environ) == second and "SECRET" not in os.environ
