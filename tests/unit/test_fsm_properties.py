"""Hypothesis properties of the pure state machine.

Random command sequences (including stale, repeated and illegal ones) are fed
to a replica; after every step the invariants must hold, and a second replica
fed the same commands, or restored from a snapshot mid-way, must end equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

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
from raftsched.core.model import ACTIVE_STATES, TERMINAL_STATES, JobState
from tests.unit.fsm_helpers import node, spec

NODES = ["n1", "n2", "n3"]


@dataclass
class Op:
    kind: str
    a: int
    b: int
    c: int


ops = st.lists(
    st.builds(
        Op,
        st.sampled_from(["submit", "assign", "assign", "started", "finished", "finished",
                         "cancel", "down", "up", "replay", "stale"]),
        st.integers(0, 30), st.integers(0, 5), st.integers(-2, 3),
    ),
    max_size=80,
)


def build(ops_: list[Op]) -> list:
    """Turn abstract ops into concrete commands, using a driver replica to pick ids."""
    drv = fsm.ClusterState()
    cmds: list = [NodeUp(f"up-{n}", 0.0, node(n, cpu=500)) for n in NODES]
    for c in cmds:
        fsm.apply(drv, c)
    ts = 1.0
    for i, op in enumerate(ops_):
        ts += 1.0
        rid = f"r{i}"
        ids = list(drv.jobs)
        jid = ids[op.a % len(ids)] if ids else "none"
        job = drv.jobs.get(jid)
        nid = NODES[op.b % 3]
        cmd: object
        if op.kind == "submit" or job is None:
            n = 1 + op.b % 3
            cmd = SubmitJobs(rid, ts, tuple((f"j{i}-{k}", spec(cpu=100 * (1 + (op.a + k) % 4),
                                                               prio=op.c)) for k in range(n)))
        elif op.kind == "assign":
            cmd = Assign(rid, ts, (AssignItem(jid, nid, job.attempt + (op.c if op.c < 0 else 0)),))
        elif op.kind == "started":
            cmd = JobsStarted(rid, ts, (StartedItem(jid, job.attempt, job.fencing_token),))
        elif op.kind == "finished":
            code = None if op.c == -2 else op.c
            cmd = JobsFinished(rid, ts, (FinishedItem(jid, job.attempt, job.fencing_token, code,
                                                      timed_out=op.c == -1),))
        elif op.kind == "stale":
            cmd = JobsFinished(rid, ts, (FinishedItem(jid, job.attempt - 1, job.fencing_token - 1, 0),))
        elif op.kind == "cancel":
            cmd = CancelJob(rid, ts, jid)
        elif op.kind == "down":
            cmd = NodeDown(rid, ts, nid, "test")
        elif op.kind == "up":
            cmd = NodeUp(rid, ts, node(nid, cpu=500))
        else:  # replay an earlier command with its request id
            cmd = cmds[op.a % len(cmds)]
        cmds.append(cmd)
        fsm.apply(drv, cmd)
    return cmds


def check_invariants(s: fsm.ClusterState) -> None:
    # derived indexes equal a rebuild from the jobs
    fresh = fsm.ClusterState.from_dict(s.to_dict())
    assert fresh.pending == s.pending
    assert {k: (u.cpu_millis, u.memory_mib, u.jobs) for k, u in fresh.usage.items() if u.jobs} == {
        k: (u.cpu_millis, u.memory_mib, u.jobs) for k, u in s.usage.items() if u.jobs}
    assert +fresh.counts == +s.counts
    placed: dict[str, str] = {}
    for j in s.jobs.values():
        if j.state in ACTIVE_STATES:
            assert j.id not in placed, "job in two places"
            placed[j.id] = j.node_id
            assert j.id in s.usage[j.node_id].jobs
            assert 0 < j.fencing_token <= s.fencing
    for nid, u in s.usage.items():
        cap = s.nodes[nid].capacity
        assert u.cpu_millis <= cap.cpu_millis and u.memory_mib <= cap.memory_mib, "over-committed"
        for jid in u.jobs:
            assert placed.get(jid) == nid


@settings(max_examples=150, deadline=None)
@given(ops)
def test_invariants_hold_after_every_step(ops_: list[Op]) -> None:
    cmds = build(ops_)
    s = fsm.ClusterState()
    seen: dict[str, tuple[int, int]] = {}
    terminal: dict[str, object] = {}
    tokens: set[int] = set()
    for c in cmds:
        before_fencing = s.fencing
        fsm.apply(s, c)
        assert s.fencing >= before_fencing
        check_invariants(s)
        for j in s.jobs.values():
            att, tok = seen.get(j.id, (0, 0))
            assert j.attempt >= att and j.fencing_token >= tok, "attempt/token went backwards"
            if j.fencing_token != tok and j.fencing_token:
                assert j.fencing_token not in tokens, "token reused"
                tokens.add(j.fencing_token)
            seen[j.id] = (j.attempt, j.fencing_token)
            if j.id in terminal:
                assert terminal[j.id] == j, "terminal job changed"
            elif j.state in TERMINAL_STATES:
                terminal[j.id] = j


@settings(max_examples=100, deadline=None)
@given(ops, st.integers(0, 80))
def test_replicas_and_snapshots_agree(ops_: list[Op], cut: int) -> None:
    cmds = build(ops_)
    a, b = fsm.ClusterState(), fsm.ClusterState()
    ra = [fsm.apply(a, c) for c in cmds]
    cut = min(cut, len(cmds))
    for c in cmds[:cut]:
        fsm.apply(b, c)
    b = fsm.ClusterState.from_dict(b.to_dict())  # snapshot -> restore mid-way
    rb = [fsm.apply(b, c) for c in cmds[cut:]]
    assert a.digest() == b.digest()
    assert ra[cut:] == rb
    assert fsm.ClusterState.from_dict(a.to_dict()).digest() == a.digest()


@settings(max_examples=100, deadline=None)
@given(ops)
def test_illegal_transitions_are_refused(ops_: list[Op]) -> None:
    cmds = build(ops_)
    s = fsm.ClusterState()
    for c in cmds:
        before = {j.id: j.state for j in s.jobs.values()}
        fsm.apply(s, c)
        for j in s.jobs.values():
            old = before.get(j.id)
            if old is not None and old is not j.state:
                ends = {JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.DEAD}
                assert j.state in {
                    JobState.PENDING: {JobState.ASSIGNED, JobState.CANCELLED},
                    JobState.ASSIGNED: ends | {JobState.RUNNING, JobState.PENDING, JobState.CANCELLING},
                    JobState.RUNNING: ends | {JobState.PENDING, JobState.CANCELLING},
                    JobState.CANCELLING: {JobState.CANCELLED, JobState.SUCCEEDED},
                }.get(old, set()), f"{old} -> {j.state}"
