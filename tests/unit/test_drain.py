"""Node drain and scheduling eligibility (core.nodes): placement skips draining and
ineligible nodes (and the Assign CAS refuses them), the drain deadline stops attempts
fenced by attempt, token and generation, their requeue uses no retry budget and never
overlaps the attempt that replaces it, and the new fields survive a snapshot and
change the digest."""

from __future__ import annotations

from dataclasses import replace

import pytest

from raftsched.cli.common import UsageError
from raftsched.core import apply as fsm
from raftsched.core import liveness, nodes, reconcile
from raftsched.core.commands import FinishedItem, JobsFinished, NodeUp
from raftsched.core.explain import explain_job, plan_spec
from raftsched.core.model import JobSpec, JobState, Resources, RetryPolicy
from raftsched.core.nodeops import DrainDeadline, DrainNode, SetEligibility
from raftsched.core.placement import candidates, place
from raftsched.core.state import ClusterState, Code
from tests.unit.fsm_helpers import (
    assign,
    cancel,
    cluster,
    finished,
    node,
    node_down,
    rid,
    spec,
    started,
    submit,
)


def drain(st: ClusterState, nid: str, deadline: float, ts: float = 10.0) -> fsm.Result:
    return fsm.apply(st, DrainNode(rid(), ts, nid, deadline))


def eligible(st: ClusterState, nid: str, on: bool, ts: float = 10.0) -> fsm.Result:
    return fsm.apply(st, SetEligibility(rid(), ts, nid, on))


def deadline_cmd(st: ClusterState, nid: str, ts: float) -> fsm.Result:
    due = nodes.due_drains(st, ts)
    assert len(due) == 1 and due[0][0] == nid, due
    _, gen, attempts = due[0]
    return fsm.apply(st, DrainDeadline(rid(), ts, nid, gen, attempts))


def running_on(st: ClusterState, nid: str, *specs: JobSpec) -> list[str]:
    ids = submit(st, *specs)
    for j in ids:
        assert assign(st, j, nid).ok and started(st, j).ok
        assert st.jobs[j].state is JobState.RUNNING
    return ids


def test_placement_skips_draining_and_ineligible_nodes() -> None:
    st = cluster("n1", "n2", "n3")
    assert drain(st, "n2", 100.0).ok
    assert eligible(st, "n3", False).ok
    ids = submit(st, spec(), spec(), spec(), ts=11.0)
    items = place([st.jobs[j] for j in ids], candidates(st))
    assert {i.node_id for i in items} == {"n1"}
    # the compare-and-swap refuses them too, naming the reason
    assert assign(st, ids[0], "n2").value == ("node n2 is draining",)
    assert assign(st, ids[0], "n3").value == ("node n3 is ineligible",)
    # explain / plan say why
    e = explain_job(st, st.jobs[ids[0]], 12.0)
    checks = {v.node_id: (v.check.value, v.detail) for v in e.verdicts}
    assert checks["n2"] == ("ineligible", "draining: no new jobs")
    assert checks["n3"] == ("ineligible", "ineligible: no new jobs")
    assert e.node_id == "n1"
    assert eligible(st, "n1", False).ok
    p = plan_spec(st, spec(), 12.0)
    assert "n2: draining" in p.summary and "n3: ineligible" in p.summary
    # --enable makes the node take jobs again and ends the drain
    assert eligible(st, "n2", True).ok
    assert st.nodes["n2"].drain_deadline == 0.0 and st.nodes["n2"].eligible
    assert {i.node_id for i in place([st.jobs[j] for j in ids], candidates(st))} == {"n2"}


def test_running_jobs_finish_normally_before_the_deadline() -> None:
    st = cluster("n1", "n2")
    (j,) = running_on(st, "n2", spec())
    assert drain(st, "n2", 100.0).value == ()
    assert nodes.scheduling(st.nodes["n2"], 1) == "draining"
    assert nodes.due_drains(st, 99.0) == []  # before the deadline: nothing to stop
    assert liveness.revoked(st, "n2", [(j, 1, st.jobs[j].fencing_token)]) == []
    assert finished(st, j, 0, ts=20.0).ok
    assert st.jobs[j].state is JobState.SUCCEEDED
    assert not st.allocated("n2").jobs
    assert nodes.scheduling(st.nodes["n2"], 0) == "drained"
    assert nodes.due_drains(st, 200.0) == []


def test_deadline_stops_attempts_and_requeues_without_retry_budget() -> None:
    st = cluster("n1", "n2")
    (j,) = running_on(st, "n2", JobSpec(command=("sleep", "99"), retry=RetryPolicy(max_attempts=2)))
    tok = st.jobs[j].fencing_token
    assert drain(st, "n2", 100.0).ok
    assert deadline_cmd(st, "n2", 101.0).value == ("",)
    job = st.jobs[j]
    # still RUNNING on n2 holding its capacity: nothing can overlap it yet
    assert job.state is JobState.RUNNING and job.evict_requested_at == 101.0
    assert j in st.allocated("n2").jobs and j not in st.pending
    assert liveness.revoked(st, "n2", [(j, 1, tok)]) == [(j, 1, tok)]  # the node kills it
    assert nodes.due_drains(st, 102.0) == []  # proposed once
    assert reconcile.stale_start(st, "n2", j, 1, tok)  # a late start is refused by the node
    # the node's report of the killed attempt: requeued, budget untouched
    assert finished(st, j, -15, ts=103.0, error="killed: revoked by leader").ok
    job = st.jobs[j]
    assert job.state is JobState.PENDING and job.failures == 0 and job.not_before == 0.0
    assert job.attempts[-1].outcome == "LOST" and "drain deadline" in job.attempts[-1].reason
    assert job.evict_requested_at == 0.0
    assert nodes.scheduling(st.nodes["n2"], 0) == "drained"
    assert assign(st, j, "n1", ts=104.0).ok and st.jobs[j].attempt == 2
    # a late report of the stopped attempt is fenced off; attempt 2 runs on alone
    late = fsm.apply(st, JobsFinished(rid(), 105.0, (FinishedItem(j, 1, tok, 0),)))
    assert late.value[0].startswith("stale report") and st.jobs[j].state is JobState.ASSIGNED
    assert started(st, j, ts=106.0).ok and finished(st, j, 0, ts=107.0).ok
    assert st.jobs[j].state is JobState.SUCCEEDED and st.jobs[j].failures == 0


def test_an_attempt_that_succeeds_before_the_kill_keeps_its_success() -> None:
    st = cluster("n1", "n2")
    (j,) = running_on(st, "n2", spec())
    assert drain(st, "n2", 100.0).ok and deadline_cmd(st, "n2", 100.0).ok
    assert finished(st, j, 0, ts=101.0).ok
    assert st.jobs[j].state is JobState.SUCCEEDED and st.jobs[j].evict_requested_at == 0.0


def test_force_stops_now_and_a_cancel_still_wins() -> None:
    st = cluster("n1", "n2")
    a, b = running_on(st, "n2", spec(), spec())
    assert cancel(st, b, ts=9.0).ok
    assert drain(st, "n2", 10.0, ts=10.0).value == (a,)  # deadline == ts: --force
    assert st.jobs[a].evict_requested_at == 10.0 and st.jobs[b].state is JobState.CANCELLING
    assert finished(st, b, -15, ts=11.0, error="killed").ok
    assert st.jobs[b].state is JobState.CANCELLED


def test_deadline_is_fenced_by_token_and_generation() -> None:
    st = cluster("n1", "n2")
    (j,) = running_on(st, "n2", spec())
    assert drain(st, "n2", 100.0).ok
    _, gen, attempts = nodes.due_drains(st, 101.0)[0]
    stale = ((j, 1, attempts[0][2] + 7),)
    assert fsm.apply(st, DrainDeadline(rid(), 101.0, "n2", gen, stale)).value[0].startswith("stale")
    assert st.jobs[j].evict_requested_at == 0.0
    # before the deadline (a leader with a fast clock, or the drain was extended): refused
    assert fsm.apply(st, DrainDeadline(rid(), 99.0, "n2", gen, attempts)).code is Code.PRECONDITION
    # the node went down since: its attempts were requeued already, the command is refused
    assert node_down(st, "n2", ts=100.5).ok
    assert st.jobs[j].state is JobState.PENDING
    assert fsm.apply(st, DrainDeadline(rid(), 101.0, "n2", gen, attempts)).code is Code.PRECONDITION
    assert nodes.due_drains(st, 101.0) == []


def test_never_started_attempt_is_requeued_as_lost_after_a_heartbeat() -> None:
    st = cluster("n1", "n2")
    (j,) = submit(st, spec())
    assert assign(st, j, "n2").ok  # ASSIGNED: the start never arrived
    assert drain(st, "n2", 10.0, ts=10.0).value == (j,)
    assert reconcile.unconfirmed_starts(st, {}, 50.0, 1.0) == []  # no start re-sent
    assert nodes.evicted_gone(st, {"n2": set()}, {"n2": 10.5}, 1.0) == []  # too early
    # a new leader has not heard from n2 yet (its `reported` is empty): no decision
    assert nodes.evicted_gone(st, {}, {"n2": 12.0}, 1.0) == []
    # a heartbeat that lists the attempt: it still runs there
    assert nodes.evicted_gone(st, {"n2": {(j, 1)}}, {"n2": 12.0}, 1.0) == []
    items = nodes.evicted_gone(st, {"n2": set()}, {"n2": 12.0}, 1.0)
    assert [i.job_id for i in items] == [j] and items[0].lost
    assert fsm.apply(st, JobsFinished(rid(), 12.0, tuple(items))).ok
    assert st.jobs[j].state is JobState.PENDING and st.jobs[j].failures == 0


def test_unknown_node_and_restart_keep_the_operators_setting() -> None:
    st = cluster("n1", "n2")
    assert drain(st, "n9", 100.0).code is Code.NOT_FOUND
    assert "n9" in eligible(st, "n9", False).message
    assert drain(st, "n2", 100.0).ok
    # the node restarts (new incarnation) and registers again: still draining
    assert fsm.apply(st, NodeUp(rid(), 20.0, replace(node("n2"), incarnation="new"))).ok
    assert st.nodes["n2"].drain_deadline == 100.0 and not st.nodes["n2"].eligible


def test_snapshot_round_trip_and_digest_cover_drain_fields() -> None:
    st = cluster("n1", "n2", "n3")
    running_on(st, "n2", spec(cpu=200), spec(cpu=300))
    before = st.digest()
    assert eligible(st, "n3", False).ok
    after_ineligible = st.digest()
    assert after_ineligible != before
    assert drain(st, "n2", 100.0).ok
    after_drain = st.digest()
    assert after_drain != after_ineligible
    assert deadline_cmd(st, "n2", 101.0).ok
    after_deadline = st.digest()
    assert after_deadline != after_drain  # the jobs' evict_requested_at
    restored = ClusterState.from_dict(st.to_dict())
    assert restored.nodes == st.nodes and restored.jobs == st.jobs
    assert restored.digest() == after_deadline
    assert restored.nodes["n2"].drain_deadline == 100.0 and not restored.nodes["n3"].eligible
    # incremental digest == full recompute after the changes
    assert ClusterState.from_dict(st.to_dict()).digest() == st.digest()
    # a replica fed the same commands agrees (the fields are applied deterministically)
    assert restored == st


def test_cpu_capacity_of_a_stopping_attempt_is_held() -> None:
    st = cluster("n1", "n2", cpu=1000)
    (j,) = running_on(st, "n2", spec(cpu=900))
    assert drain(st, "n2", 10.0, ts=10.0).ok
    assert eligible(st, "n2", True).ok  # ends the drain; the stop goes on
    assert st.allocated("n2").as_resources() == Resources(900, 64)
    (k,) = submit(st, spec(cpu=900), ts=11.0)
    assert [i.node_id for i in place([st.jobs[k]], candidates(st))] == ["n1"]
    assert j in st.allocated("n2").jobs


def test_top_and_nodes_show_the_scheduling_state() -> None:
    from raftsched.cli.nodeops import parse_duration, scheduling_text
    from raftsched.cli.observe import render_top
    from raftsched.v1 import cluster_pb2

    node = {"id": "n2", "alive": True, "raft": "follower", "cpu_used": 0, "cpu_capacity": 1000,
            "mem_used": 0, "mem_capacity": 1000, "active_jobs": 1}
    d = {"answered_by": "n1", "leader": "n1", "term": 2, "commit_index": 9, "jobs_by_state": {},
         "nodes": [dict(node, scheduling="draining"), dict(node, id="n3", scheduling="eligible")],
         "running": [], "running_total": 0, "recent_failures": []}
    rows = {ln.split()[0]: ln for ln in render_top(d, color=False).splitlines() if ln.startswith("n")}
    assert "up draining" in rows["n2"] and "eligible" not in rows["n3"]
    n = cluster_pb2.NodeInfo(id="n2", scheduling="draining", running_jobs=3, drain_deadline=1e9)
    assert scheduling_text(n).startswith("draining (3 running, deadline ")
    assert scheduling_text(cluster_pb2.NodeInfo(scheduling="drained")) == "drained"
    assert parse_duration("1h30m") == 5400 and parse_duration("90") == 90 and parse_duration("10m") == 600
    for bad in ("", "soon", "10 m", "5x", "-3s"):
        with pytest.raises(UsageError, match="--deadline"):
            parse_duration(bad)
