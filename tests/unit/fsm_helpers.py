"""Small builders for pure fsm tests."""

from __future__ import annotations

import itertools

from raftsched.core import apply as fsm
from raftsched.core.commands import (
    Assign,
    AssignItem,
    CancelJob,
    FinishedItem,
    JobsFinished,
    JobsStarted,
    NodeDown,
    NodeUp,
    StartedItem,
    SubmitJobs,
)
from raftsched.core.model import JobSpec, Node, Resources

_rid = itertools.count(1)


def rid() -> str:
    return f"r{next(_rid)}"


def node(nid: str, cpu: int = 1000, mem: int = 1024) -> Node:
    return Node(nid, f"127.0.0.1:1{nid[-1]}", f"127.0.0.1:2{nid[-1]}", Resources(cpu, mem))


def spec(cpu: int = 100, mem: int = 64, prio: int = 0) -> JobSpec:
    return JobSpec(command=("true",), resources=Resources(cpu, mem), priority=prio)


def cluster(*nids: str, cpu: int = 1000) -> fsm.ClusterState:
    st = fsm.ClusterState()
    for n in nids:
        assert fsm.apply(st, NodeUp(rid(), 1.0, node(n, cpu))).ok
    return st


def submit(st: fsm.ClusterState, *specs: JobSpec, ts: float = 2.0) -> list[str]:
    ids = [f"j{st.next_seq + i}" for i in range(len(specs))]
    res = fsm.apply(st, SubmitJobs(rid(), ts, tuple(zip(ids, specs, strict=True))))
    assert res.ok, res
    return ids


def assign(st: fsm.ClusterState, job_id: str, node_id: str, ts: float = 3.0) -> fsm.Result:
    job = st.jobs[job_id]
    return fsm.apply(st, Assign(rid(), ts, (AssignItem(job_id, node_id, job.attempt),)))


def started(st: fsm.ClusterState, job_id: str, ts: float = 4.0) -> fsm.Result:
    j = st.jobs[job_id]
    return fsm.apply(st, JobsStarted(rid(), ts, (StartedItem(j.id, j.attempt, j.fencing_token),)))


def finished(st: fsm.ClusterState, job_id: str, code: int | None = 0, ts: float = 5.0,
             **kw) -> fsm.Result:
    j = st.jobs[job_id]
    item = FinishedItem(j.id, j.attempt, j.fencing_token, code, **kw)
    return fsm.apply(st, JobsFinished(rid(), ts, (item,)))


def cancel(st: fsm.ClusterState, job_id: str, ts: float = 6.0) -> fsm.Result:
    return fsm.apply(st, CancelJob(rid(), ts, job_id))


def node_down(st: fsm.ClusterState, node_id: str, ts: float = 7.0) -> fsm.Result:
    return fsm.apply(st, NodeDown(rid(), ts, node_id, "test"))
