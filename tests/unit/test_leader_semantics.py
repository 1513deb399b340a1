"""The leader's part of job semantics, on a fake runtime: retry stamping with jitter,
resolving CANCELLING attempts whose node no longer runs them."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

from raftsched.core import apply as fsm
from raftsched.core.commands import Assign, AssignItem, CancelJob, FinishedItem, NodeUp, SubmitJobs
from raftsched.core.model import JobSpec, JobState, Node, Resources, RetryPolicy
from raftsched.node.leader import Leader


class FakeProposer:
    def __init__(self, state: fsm.ClusterState) -> None:
        self.state = state
        self.cmds: list[object] = []

    async def propose(self, cmd, timeout: float = 5.0) -> fsm.Result:
        self.cmds.append(cmd)
        return fsm.apply(self.state, cmd)


def runtime(policy: RetryPolicy) -> tuple[SimpleNamespace, fsm.ClusterState]:
    st = fsm.ClusterState()
    fsm.apply(st, NodeUp("u", 1.0, Node("n1", "g", "r", Resources(1000, 1000))))
    fsm.apply(st, SubmitJobs("s", 2.0, (("j", JobSpec(command=("x",), retry=policy)),)))
    fsm.apply(st, Assign("a", 3.0, (AssignItem("j", "n1", 0),)))
    sm = SimpleNamespace(state=st, lock=threading.RLock())
    cfg = SimpleNamespace(heartbeat_interval=0.2, heartbeat_ttl=1.5)
    rt = SimpleNamespace(sm=sm, cfg=cfg, proposer=FakeProposer(st))
    return rt, st


def test_stamp_retries_uses_backoff_with_jitter_bounds() -> None:
    rt, st = runtime(RetryPolicy(max_attempts=3, initial_delay_s=2.0, jitter=0.5))
    leader = Leader.__new__(Leader)
    leader.rt = rt  # type: ignore[assignment]
    import random

    leader.rng = random.Random(7)
    j = st.jobs["j"]
    seen = set()
    for _ in range(50):
        item = FinishedItem("j", j.attempt, j.fencing_token, 1)
        (out,) = leader.stamp_retries([item], 100.0)
        assert 101.0 <= out.retry_at <= 103.0
        seen.add(round(out.retry_at, 3))
    assert len(seen) > 10  # jitter varies
    ok = FinishedItem("j", j.attempt, j.fencing_token, 0)
    assert leader.stamp_retries([ok], 100.0)[0].retry_at == 0.0  # success: no retry
    stale = FinishedItem("j", j.attempt + 1, j.fencing_token, 1)
    assert leader.stamp_retries([stale], 100.0)[0].retry_at == 0.0


def test_cancelling_attempt_not_reported_by_its_node_is_ended() -> None:
    rt, st = runtime(RetryPolicy())
    leader = Leader.__new__(Leader)
    leader.rt = rt  # type: ignore[assignment]
    now = time.time()
    fsm.apply(st, CancelJob("c", now - 1.0, "j"))
    assert st.jobs["j"].state is JobState.CANCELLING
    # the node still reports the attempt: nothing happens
    leader.hb_wall = {"n1": now}
    leader.reported = {"n1": {("j", 1)}}
    asyncio.run(leader._resolve_cancelling())
    assert st.jobs["j"].state is JobState.CANCELLING
    # a heartbeat from before the cancel (+ slack) proves nothing
    leader.reported = {"n1": set()}
    leader.hb_wall = {"n1": now - 0.9}
    asyncio.run(leader._resolve_cancelling())
    assert st.jobs["j"].state is JobState.CANCELLING
    # a later heartbeat without it: the attempt is gone, capacity released
    leader.hb_wall = {"n1": now}
    asyncio.run(leader._resolve_cancelling())
    assert st.jobs["j"].state is JobState.CANCELLED
    assert st.allocated("n1").cpu_millis == 0
