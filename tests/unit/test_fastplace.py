"""Placement in the submission's own entry (node/fastplace.py), on simulated replicas:
the leader's decisions with apply as the judge, no network."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from raftsched.core import apply as fsm
from raftsched.core.commands import Assign, AssignItem, NodeUp, SubmitJobs
from raftsched.core.model import JobSpec, JobState, Resources
from tests.unit.test_dispatch import SPEC, Harness, node, submit

pytestmark = pytest.mark.timeout(30)

BIG = JobSpec(command=("true",), resources=Resources(600, 16))  # one per 1000-millicpu node


def harness(tmp_path: Path, nodes: int = 1) -> Harness:
    h = Harness(tmp_path)
    for i in range(1, nodes + 1):
        h.replica.commit(NodeUp, node(f"n{i}", f"inc{i}"))
    h.leader.armed_term = 3  # the loop took office in this term (test_dispatch.Raft.term)
    return h


def commit_together(h: Harness, jobs: tuple[tuple[str, JobSpec], ...], assign: Assign | None
                    ) -> fsm.Result | None:
    """What one Raft entry with the submission (and its Assign) does on a replica."""
    with h.replica.lock:
        res = fsm.apply(h.replica.state, SubmitJobs("s-" + jobs[0][0], 1000.5, jobs))
        assert res.ok, res.message
        return fsm.apply(h.replica.state, assign) if assign else None


def test_idle_queue_jobs_are_assigned_in_their_submission_entry(tmp_path: Path) -> None:
    h = harness(tmp_path, nodes=2)
    placer = h.leader.submit_placer
    jobs = (("a", SPEC), ("b", SPEC))
    assign = placer.plan(jobs, 1000.5)
    assert assign is not None and {i.job_id for i in assign.items} == {"a", "b"}
    assert assign.ts == 1000.5  # the submission's time: assigned_at == submitted_at

    async def go() -> None:
        placer.done(assign, jobs, commit_together(h, jobs, assign))
        await h.settle()

    asyncio.run(go())
    st = h.replica.state
    assert all(st.jobs[j].state is JobState.ASSIGNED for j in ("a", "b"))
    assert st.jobs["a"].assigned_at == st.jobs["a"].submitted_at
    assert placer.reserved == {} and placer.placed == 2
    sent = sorted(sj.job_id for req in h.peers.sent for sj in req.jobs)
    assert sent == ["a", "b"]  # started right after the commit
    h.check_sent()


def test_stands_aside_when_jobs_wait_or_order_matters(tmp_path: Path) -> None:
    h = harness(tmp_path)
    placer = h.leader.submit_placer
    seq = replace(SPEC, sequence_key="k")
    assert placer.plan((("s", seq),), 1000.5) is None  # sequences: the loop keeps their order
    submit(h, "waiting")  # a job already PENDING goes first
    assert placer.plan((("x", SPEC),), 1000.5) is None
    h.leader.armed_term = None  # a new leader before its loop re-armed liveness
    assert placer.plan((("y", SPEC),), 1000.5) is None


def test_in_flight_reservations_keep_concurrent_submissions_apart(tmp_path: Path) -> None:
    """Two submissions planned before either commits cannot both take the one slot."""
    h = harness(tmp_path)
    placer = h.leader.submit_placer
    first = placer.plan((("a", BIG),), 1000.5)
    assert first is not None and placer.reserved["n1"] == BIG.resources
    assert placer.plan((("b", BIG),), 1000.5) is None  # no room left once reserved
    placer.done(first, (("a", BIG),), None)  # the entry failed: the room is free again
    assert placer.reserved == {}
    assert placer.plan((("b", BIG),), 1000.5) is not None


def test_apply_refuses_what_no_longer_fits_and_the_job_stays_pending(tmp_path: Path) -> None:
    """Room taken between the plan and the commit (say an Assign proposed elsewhere):
    apply refuses the item; the job stays PENDING for the loop, nothing is dispatched."""
    h = harness(tmp_path)
    placer = h.leader.submit_placer
    jobs = (("a", BIG),)
    assign = placer.plan(jobs, 1000.5)
    assert assign is not None
    h.replica.commit(SubmitJobs, (("other", BIG),))
    h.replica.commit(Assign, (AssignItem("other", "n1", 0),))

    async def go() -> None:
        res = commit_together(h, jobs, assign)
        assert res is not None and isinstance(res.value[0], str)  # refused: no room
        placer.done(assign, jobs, res)
        await h.settle()

    asyncio.run(go())
    assert h.replica.state.jobs["a"].state is JobState.PENDING
    assert not any(sj.job_id == "a" for req in h.peers.sent for sj in req.jobs)
    assert placer.reserved == {} and placer.placed == 0
