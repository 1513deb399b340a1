"""The leader's part of job semantics as pure decisions (core/reconcile): retry
stamping with jitter, resolving CANCELLING attempts whose node no longer runs them."""

from __future__ import annotations

import random
import time

from raftsched.core import apply as fsm
from raftsched.core import reconcile
from raftsched.core.commands import (
    Assign,
    AssignItem,
    CancelJob,
    FinishedItem,
    JobsFinished,
    NodeUp,
    SubmitJobs,
)
from raftsched.core.model import JobSpec, JobState, Node, Resources, RetryPolicy

SLACK = 0.4  # 2 x heartbeat interval


def cluster(policy: RetryPolicy) -> fsm.ClusterState:
    st = fsm.ClusterState()
    fsm.apply(st, NodeUp("u", 1.0, Node("n1", "g", "r", Resources(1000, 1000))))
    fsm.apply(st, SubmitJobs("s", 2.0, (("j", JobSpec(command=("x",), retry=policy)),)))
    fsm.apply(st, Assign("a", 3.0, (AssignItem("j", "n1", 0),)))
    return st


def test_stamp_retries_uses_backoff_with_jitter_bounds() -> None:
    st = cluster(RetryPolicy(max_attempts=3, initial_delay_s=2.0, jitter=0.5))
    rng = random.Random(7)
    j = st.jobs["j"]
    seen = set()
    for _ in range(50):
        item = FinishedItem("j", j.attempt, j.fencing_token, 1)
        (out,) = reconcile.stamp_retries(st, [item], 100.0, rng.random)
        assert 101.0 <= out.retry_at <= 103.0
        seen.add(round(out.retry_at, 3))
    assert len(seen) > 10  # jitter varies
    ok = FinishedItem("j", j.attempt, j.fencing_token, 0)
    assert reconcile.stamp_retries(st, [ok], 100.0, rng.random)[0].retry_at == 0.0  # no retry
    stale = FinishedItem("j", j.attempt + 1, j.fencing_token, 1)
    assert reconcile.stamp_retries(st, [stale], 100.0, rng.random)[0].retry_at == 0.0


def _resolve(st: fsm.ClusterState, reported: dict, heard: dict) -> None:
    items = reconcile.cancelled_gone(st, reported, heard, SLACK)
    if items:
        assert fsm.apply(st, JobsFinished(f"f{time.time()}", time.time(), tuple(items))).ok


def test_cancelling_attempt_not_reported_by_its_node_is_ended() -> None:
    st = cluster(RetryPolicy())
    now = time.time()
    fsm.apply(st, CancelJob("c", now - 1.0, "j"))
    assert st.jobs["j"].state is JobState.CANCELLING
    # the node still reports the attempt: nothing happens
    _resolve(st, {"n1": {("j", 1)}}, {"n1": now})
    assert st.jobs["j"].state is JobState.CANCELLING
    # a heartbeat from before the cancel (+ slack) proves nothing
    _resolve(st, {"n1": set()}, {"n1": now - 0.9})
    assert st.jobs["j"].state is JobState.CANCELLING
    # a later heartbeat without it: the attempt is gone, capacity released
    _resolve(st, {"n1": set()}, {"n1": now})
    assert st.jobs["j"].state is JobState.CANCELLED
    assert st.allocated("n1").cpu_millis == 0
