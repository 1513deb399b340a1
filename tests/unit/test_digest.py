"""The incremental state digest (core.digest): equal to a digest computed from scratch
after any sequence of changes, the same on replicas fed the same commands, restored
unchanged from a snapshot, and sensitive to every kind of replicated change."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from raftsched.core import apply as fsm
from raftsched.core.commands import GcJobs, SubmitJobs
from raftsched.core.state import ClusterState
from tests.unit import fsm_helpers as helpers
from tests.unit.fsm_helpers import assign, cluster, finished, rid, spec, started, submit

OPS = st.lists(st.sampled_from(["submit", "keyed", "assign", "start", "finish", "gc", "digest"]),
               max_size=40)


def _fresh(s: ClusterState) -> str:
    """Digest of the same state rebuilt from its snapshot: hashes everything anew."""
    return ClusterState.from_dict(s.to_dict()).digest()


def _run(s: ClusterState, ops: list[str], digests: list[str]) -> None:
    ts = 10.0
    for i, op in enumerate(ops):
        ts += 1
        pending = sorted(s.pending)
        active = sorted(j for u in s.usage.values() for j in u.jobs)
        if op == "submit":
            submit(s, spec(cpu=100 + i), ts=ts)
        elif op == "keyed":  # idempotency keys: the second use of a key returns the first job
            fsm.apply(s, SubmitJobs(rid(), ts, ((f"k{i}", spec()),), keys=(f"key{i % 3}",)))
        elif op == "assign" and pending:
            assign(s, pending[0], "n1", ts=ts)
        elif op == "start" and active:
            started(s, active[0], ts=ts)
        elif op == "finish" and active:
            finished(s, active[-1], 0, ts=ts)
        elif op == "gc":
            fsm.apply(s, GcJobs(rid(), ts, ts - 3))
        elif op == "digest":
            digests.append(s.digest())


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_incremental_digest_equals_full_recompute(ops: list[str]) -> None:
    s = cluster("n1", cpu=100_000)
    digests: list[str] = []
    _run(s, ops, digests)
    assert s.digest() == _fresh(s)
    # a digest taken between changes is the digest of the state at that point
    assert s.digest() == s.digest()


@settings(max_examples=30, deadline=None)
@given(OPS, OPS)
def test_a_replica_restored_from_a_snapshot_agrees(first: list[str], then: list[str]) -> None:
    a = cluster("n1", cpu=100_000)
    _run(a, first, [])
    b = ClusterState.from_dict(a.to_dict())  # a replica that installed a's snapshot
    b.digest()
    start = next(helpers._rid)
    for s in (a, b):  # the same commands, with the same request ids, on both
        helpers._rid = itertools.count(start)
        _run(s, then, [])
    assert a.digest() == b.digest()


def test_every_kind_of_change_changes_the_digest() -> None:
    s = cluster("n1")
    seen = {s.digest()}
    (jid,) = submit(s, spec())
    seen.add(s.digest())
    assign(s, jid, "n1")
    seen.add(s.digest())
    started(s, jid)
    seen.add(s.digest())
    finished(s, jid, 0)
    seen.add(s.digest())
    fsm.apply(s, GcJobs(rid(), 10**6, 10**6))
    assert jid not in s.jobs
    seen.add(s.digest())
    assert len(seen) == 6
    assert s.digest() == _fresh(s)


def test_digest_work_is_computed_off_the_state() -> None:
    """take() captures a point in time: changes applied while computing do not leak in."""
    s = cluster("n1")
    submit(s, spec())
    work = s.digest_work()
    at_take = ClusterState.from_dict(s.to_dict()).digest()
    submit(s, spec(cpu=7))  # applied while the digest is being computed elsewhere
    sums, hexd = work.compute()
    s.dig.settle(sums)
    assert hexd == at_take
    assert s.digest() == _fresh(s)
