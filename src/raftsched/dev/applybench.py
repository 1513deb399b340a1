"""Apply cost on one replica, in process (`scripts/bench --scenario apply`): the state
machine alone applies SubmitJobs, Assign and JobsFinished for batches of 500 no-op
jobs, as every replica does for every job. CPU microseconds per job (best of `rounds`):
steadier than the cluster figures on a shared machine, since no other process or
network is involved."""

from __future__ import annotations

import time

from raftsched.core import apply as fsm
from raftsched.core.commands import Assign, AssignItem, FinishedItem, JobsFinished, NodeUp, SubmitJobs
from raftsched.core.model import JobSpec, JobState, Node, Resources

BATCH = 500


def run(jobs: int = 20_000, rounds: int = 3) -> dict[str, float]:
    return {"jobs": jobs, "us_per_job": min(_once(jobs) for _ in range(rounds))}


def _once(n: int) -> float:
    st = fsm.ClusterState()
    fsm.apply(st, NodeUp("r0", 1.0, Node("n1", "h:1", "h:2", Resources(10**9, 10**9))))
    spec = JobSpec(command=("true",), resources=Resources(10, 1))
    t0 = time.process_time()
    for b in range(0, n, BATCH):
        ids = [f"j{i}" for i in range(b, min(n, b + BATCH))]
        fsm.apply(st, SubmitJobs(f"s{b}", 2.0, tuple((i, spec) for i in ids)))
        fsm.apply(st, Assign(f"a{b}", 3.0, tuple(AssignItem(i, "n1", 0) for i in ids)))
        fsm.apply(st, JobsFinished(f"f{b}", 4.0, tuple(
            FinishedItem(i, st.jobs[i].attempt, st.jobs[i].fencing_token, 0) for i in ids)))
    used = time.process_time() - t0
    if any(st.jobs[f"j{i}"].state is not JobState.SUCCEEDED for i in range(n)):
        raise AssertionError("apply bench: not every job SUCCEEDED")
    return used / n * 1e6


def report(r: dict[str, float]) -> str:
    return (f"apply on one replica  {r['us_per_job']:.1f} us of CPU per job (SubmitJobs + Assign + "
            f"JobsFinished, batches of {BATCH}, {int(r['jobs'])} jobs, best of 3)")
