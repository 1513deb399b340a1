"""The job state machine: transitions, compare-and-swap, fencing, dedup."""

from __future__ import annotations

from raftsched.core import apply as fsm
from raftsched.core.commands import Assign, AssignItem, FinishedItem, JobsFinished, SubmitJobs
from raftsched.core.model import JobState
from tests.unit.fsm_helpers import (
    assign,
    cancel,
    cluster,
    finished,
    node_down,
    rid,
    spec,
    started,
    submit,
)


def test_happy_path_and_history() -> None:
    st = cluster("n1")
    (j,) = submit(st, spec())
    assert st.jobs[j].state is JobState.PENDING and j in st.pending
    res = assign(st, j, "n1")
    assert res.ok and res.value == (1,)
    job = st.jobs[j]
    assert (job.state, job.node_id, job.attempt, job.fencing_token) == (JobState.ASSIGNED, "n1", 1, 1)
    assert started(st, j).ok and st.jobs[j].state is JobState.RUNNING
    assert finished(st, j, 0).ok
    job = st.jobs[j]
    assert job.state is JobState.SUCCEEDED and job.exit_code == 0
    assert [h.state for h in job.history] == [
        JobState.PENDING, JobState.ASSIGNED, JobState.RUNNING, JobState.SUCCEEDED]
    assert st.allocated("n1").cpu_millis == 0 and not st.pending


def test_failure_reasons() -> None:
    st = cluster("n1")
    a, b, c, d = submit(st, spec(), spec(), spec(), spec())
    for j in (a, b, c, d):
        assign(st, j, "n1")
    finished(st, a, 3)
    finished(st, b, None, timed_out=True)
    finished(st, c, None, error="could not start: nope")
    finished(st, d, -9)
    assert [st.jobs[j].reason for j in (a, b, c, d)] == [
        "exit code 3", "timed out", "could not start: nope", "killed by signal 9"]
    assert [st.jobs[j].state for j in (a, b, c, d)] == [
        JobState.FAILED, JobState.TIMED_OUT, JobState.FAILED, JobState.FAILED]


def test_assign_is_compare_and_swap() -> None:
    st = cluster("n1", cpu=250)
    a, b, c = submit(st, spec(cpu=100), spec(cpu=100), spec(cpu=100))
    assert assign(st, a, "n1").value == (1,)
    # second assign of the same job: refused, nothing changes
    again = fsm.apply(st, Assign(rid(), 3.0, (AssignItem(a, "n1", 0),)))
    assert isinstance(again.value[0], str) and "not PENDING" in again.value[0]
    assert st.fencing == 1
    assert assign(st, b, "n1").value == (2,)
    # the node is full (200/250): c does not fit
    res = assign(st, c, "n1")
    assert "does not fit" in res.value[0]
    assert st.jobs[c].state is JobState.PENDING
    # unknown node, down node, stale attempt
    assert "not registered" in fsm.apply(st, Assign(rid(), 3.0, (AssignItem(c, "zz", 0),))).value[0]
    assert "attempt" in fsm.apply(st, Assign(rid(), 3.0, (AssignItem(c, "n1", 5),))).value[0]


def test_assign_refuses_down_node() -> None:
    st = cluster("n1")
    (j,) = submit(st, spec())
    node_down(st, "n1")
    assert "down" in assign(st, j, "n1").value[0]


def test_stale_reports_are_refused() -> None:
    st = cluster("n1", "n2")
    (j,) = submit(st, spec())
    assign(st, j, "n1")
    old = st.jobs[j]
    node_down(st, "n1")
    assert st.jobs[j].state is JobState.PENDING
    assign(st, j, "n2")
    new = st.jobs[j]
    assert new.attempt == 2 and new.fencing_token > old.fencing_token
    # a late report of the first attempt carries the old token
    late = fsm.apply(st, JobsFinished(rid(), 9.0, (FinishedItem(j, old.attempt, old.fencing_token, 0),)))
    assert "stale report" in late.value[0]
    assert st.jobs[j].state is JobState.ASSIGNED and st.jobs[j].node_id == "n2"


def test_node_down_returns_active_jobs_without_counting_a_failure() -> None:
    st = cluster("n1", "n2")
    a, b, c = submit(st, spec(), spec(), spec())
    assign(st, a, "n1")
    assign(st, b, "n1")
    started(st, b)
    assign(st, c, "n2")
    res = node_down(st, "n1")
    assert sorted(res.value) == sorted([a, b])
    assert st.jobs[a].state is JobState.PENDING and st.jobs[b].state is JobState.PENDING
    assert st.jobs[c].state is JobState.ASSIGNED
    assert st.allocated("n1").cpu_millis == 0 and not st.nodes["n1"].alive


def test_terminal_states_are_absorbing() -> None:
    st = cluster("n1")
    (j,) = submit(st, spec())
    assign(st, j, "n1")
    finished(st, j, 0)
    snapshot = st.jobs[j]
    assert not cancel(st, j).ok
    assert "stale" in finished(st, j, 1).value[0] or "SUCCEEDED" in finished(st, j, 1).value[0]
    assert "PENDING" in assign(st, j, "n1").value[0]
    node_down(st, "n1")
    assert st.jobs[j] == snapshot


def test_cancel() -> None:
    st = cluster("n1")
    a, b = submit(st, spec(), spec())
    res = cancel(st, a)
    assert res.ok and st.jobs[a].state is JobState.CANCELLED and a not in st.pending
    assert cancel(st, "nope").code is fsm.Code.NOT_FOUND
    again = cancel(st, a)
    assert again.code is fsm.Code.PRECONDITION and "already finished" in again.message
    assign(st, b, "n1")
    # an assigned job is being stopped: CANCELLING holds its capacity until the node reports
    assert cancel(st, b).ok and st.jobs[b].state is JobState.CANCELLING
    assert st.allocated("n1").cpu_millis == 100


def test_request_ids_apply_at_most_once() -> None:
    st = cluster("n1")
    cmd = SubmitJobs("same", 1.0, (("x1", spec()),))
    first = fsm.apply(st, cmd)
    # a retry of the same request (maybe with new ids made by a new leader)
    second = fsm.apply(st, SubmitJobs("same", 2.0, (("x2", spec()),)))
    assert first == second and first.value == ("x1",)
    assert "x2" not in st.jobs and len(st.jobs) == 1


def test_submit_rejects_duplicate_ids_atomically() -> None:
    st = cluster("n1")
    submit(st, spec())
    existing = next(iter(st.jobs))
    res = fsm.apply(st, SubmitJobs(rid(), 1.0, (("new1", spec()), (existing, spec()))))
    assert res.code is fsm.Code.INVALID and "new1" not in st.jobs


def test_snapshot_roundtrip() -> None:
    st = cluster("n1", "n2")
    a, b, _c = submit(st, spec(), spec(cpu=300), spec())
    assign(st, a, "n1")
    assign(st, b, "n2")
    started(st, b)
    finished(st, a, 2)
    restored = fsm.ClusterState.from_dict(st.to_dict())
    assert restored == st and restored.digest() == st.digest()
    assert restored.pending == st.pending
    assert restored.allocated("n2").cpu_millis == 300
    assert restored.counts == st.counts


def test_gc_forgets_old_terminal_jobs_deterministically() -> None:
    from raftsched.core.commands import GcJobs

    st = cluster("n1")
    a, b, c = submit(st, spec(), spec(), spec())
    assign(st, a, "n1", ts=3.0)
    finished(st, a, 0, ts=10.0)
    cancel(st, b, ts=20.0)
    res = fsm.apply(st, GcJobs(rid(), 30.0, 15.0))
    assert res.value == 1 and a not in st.jobs and b in st.jobs and c in st.jobs
    # a replica restored from a snapshot removes exactly the same jobs
    other = fsm.ClusterState.from_dict(st.to_dict())
    cmd = GcJobs(rid(), 40.0, 25.0)
    fsm.apply(st, cmd)
    fsm.apply(other, cmd)
    assert b not in st.jobs and st.digest() == other.digest()
    assert st.counts[JobState.CANCELLED] == 0 and c in st.jobs
