"""The executor's own guard against starting an attempt twice: real processes, no cluster.

A start delivered twice (a re-send, a new leader re-sending) must not run twice, and
a late start of an older attempt of a job whose later attempt already started here
must not run at all (attempts of a job only grow)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from raftsched.core.model import JobSpec, Resources
from raftsched.node.executor import Executor, Report, ReportKind

pytestmark = pytest.mark.timeout(60)


def spec(marker: Path) -> JobSpec:
    return JobSpec(use_shell=True, shell=f'echo "$RAFTSCHED_ATTEMPT $RAFTSCHED_FENCING_TOKEN" >> {marker}',
                   resources=Resources(100, 16))


async def finished(reports: list[Report], n: int) -> None:
    while sum(r.kind is ReportKind.FINISHED for r in reports) < n:
        await asyncio.sleep(0.01)


def test_repeated_and_late_starts_do_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    reports: list[Report] = []

    async def go() -> list[bool]:
        ex = Executor("n1", tmp_path / "node", asyncio.get_running_loop(), reports.append)
        try:
            got = [ex.start("j1", 1, 10, spec(marker)), ex.start("j1", 1, 10, spec(marker))]
            await asyncio.wait_for(finished(reports, 1), 30)
            got.append(ex.start("j1", 1, 10, spec(marker)))  # after it ended: still once
            got.append(ex.start("j1", 3, 30, spec(marker)))
            got.append(ex.start("j1", 2, 20, spec(marker)))  # late: attempt 3 started here
            got.append(ex.start("j2", 2, 21, spec(marker)))  # other jobs are not affected
            await asyncio.wait_for(finished(reports, 3), 30)
            return got
        finally:
            ex.close()

    got = asyncio.run(go())
    assert got == [True, False, False, True, False, True]
    assert sorted(marker.read_text().split("\n")[:-1]) == ["1 10", "2 21", "3 30"]
    started = [(r.job_id, r.attempt, r.token) for r in reports if r.kind is ReportKind.STARTED]
    assert sorted(started) == [("j1", 1, 10), ("j1", 3, 30), ("j2", 2, 21)]
