"""Large submissions staged in bounded parts (core.batches): all or nothing under
one request id, never half visible, finished or dropped by a leader when the
client goes away, identical after a snapshot, bounded entries in the proposer."""

from __future__ import annotations

from raftsched.core import apply as fsm
from raftsched.core import batches
from raftsched.core.commands import (
    AbortJobs,
    CommitJobs,
    PublishJobs,
    StageJobs,
    SubmitJobs,
)
from raftsched.core.model import JobState
from raftsched.core.state import ClusterState, Code
from raftsched.replica.proposer import MAX_ENTRY_WEIGHT
from tests.unit.fsm_helpers import cluster, spec

N = 3 * batches.PART + 5  # four parts


def _jobs(prefix: str = "b", n: int = N) -> tuple[tuple[str, object], ...]:
    return tuple((f"{prefix}{i:05d}", spec()) for i in range(n))


def _stage_all(s: ClusterState, rid: str, jobs, keys=(), skip: int | None = None) -> int:
    parts = batches.split(jobs, keys)
    for i, sub in enumerate(parts):
        if i != skip:
            assert fsm.apply(s, StageJobs(f"{rid}/s{i}", 10.0, rid, i, len(parts), sub)).ok
    return len(parts)


def _publish_all(s: ClusterState, rid: str, n: int) -> None:
    for i in range(n):
        assert fsm.apply(s, PublishJobs(f"{rid}/p{i}", 11.0, rid, i)).ok


def test_staged_parts_are_invisible_until_published_then_all_appear_in_order() -> None:
    s = cluster("n1")
    jobs = _jobs()
    n = _stage_all(s, "B1", jobs)
    assert n == 4 and not s.jobs and not s.pending
    res = fsm.apply(s, CommitJobs("B1", 10.5, "B1", n))
    assert res.ok and list(res.value) == [jid for jid, _ in jobs]
    assert not s.jobs  # decided, not yet created
    _publish_all(s, "B1", n)
    assert [j.id for j in s.jobs.values()] == [jid for jid, _ in jobs]
    assert [j.seq for j in s.jobs.values()] == list(range(1, N + 1))
    assert all(j.state is JobState.PENDING for j in s.jobs.values())
    assert not s.ext["batches"]  # nothing left staged
    # the same request again (a retry after a lost reply): the first answer, no new jobs
    assert fsm.apply(s, CommitJobs("B1", 12.0, "B1", n)).value == res.value
    assert len(s.jobs) == N


def test_a_refused_batch_leaves_nothing_behind() -> None:
    s = cluster("n1")
    (taken, _), = _jobs("x", 1)
    assert fsm.apply(s, SubmitJobs("B0", 5.0, ((taken, spec()),))).ok
    before = s.digest()
    jobs = _jobs()[:-1] + ((taken, spec()),)  # the last id exists already: refuse all
    n = _stage_all(s, "B1", jobs)
    res = fsm.apply(s, CommitJobs("B1", 10.5, "B1", n))
    assert res.code is Code.INVALID and taken in res.message
    assert list(s.jobs) == [taken] and not s.ext["batches"]
    for i in range(n):  # publishing a refused batch creates nothing
        fsm.apply(s, PublishJobs(f"B1/p{i}", 11.0, "B1", i))
    assert list(s.jobs) == [taken]
    s.dedup.pop("B1")
    for i in range(n):
        s.dedup.pop(f"B1/s{i}")
        s.dedup.pop(f"B1/p{i}")
    assert ClusterState.from_dict(s.to_dict()).digest() == before


def test_commit_of_an_incomplete_batch_is_refused_and_a_retry_completes_it() -> None:
    s = cluster("n1")
    jobs = _jobs()
    n = _stage_all(s, "B1", jobs, skip=2)  # the leader died before staging part 2
    res = fsm.apply(s, CommitJobs("B1", 10.5, "B1", n))
    assert res.code is Code.PRECONDITION and "[2]" in res.message and not s.jobs
    # the client retries with the same request id on the new leader: parts 0, 1, 3 are
    # deduplicated, part 2 is staged now, the commit goes through
    s.dedup.pop("B1")  # a refused commit is not remembered by the retry's path: rid reused
    _stage_all(s, "B1", jobs)
    assert fsm.apply(s, CommitJobs("B1", 10.6, "B1", n)).ok
    _publish_all(s, "B1", n)
    assert len(s.jobs) == N


def test_leader_finishes_committed_batches_and_aborts_abandoned_ones() -> None:
    s = cluster("n1")
    n = _stage_all(s, "done", _jobs("d"))
    assert fsm.apply(s, CommitJobs("done", 10.0, "done", n)).ok
    assert fsm.apply(s, PublishJobs("done/p0", 10.1, "done", 0)).ok  # then the leader died
    _stage_all(s, "left", _jobs("l"), skip=1)  # staged at 10.0, never committed
    assert batches.leader_work(s, 10.0 + 1, "x") == []
    work = batches.leader_work(s, 10.0 + batches.ABANDON_AFTER + 1, "x")
    kinds = sorted(type(c).__name__ for c in work)
    assert kinds == ["AbortJobs"] + ["PublishJobs"] * (n - 1)
    for c in work:
        assert fsm.apply(s, c).ok
    assert len(s.jobs) == N and not s.ext["batches"]
    assert fsm.apply(s, AbortJobs("late", 500.0, "done")).value is False


def test_staged_batches_survive_a_snapshot_and_digest_alike() -> None:
    a = cluster("n1")
    jobs = tuple((jid, spec(cpu=100 + i % 3)) for i, (jid, _) in enumerate(_jobs()))
    keys = tuple(f"k{i}" for i in range(N))
    n = _stage_all(a, "B1", jobs, keys)
    b = ClusterState.from_dict(a.to_dict())
    assert a.digest() == b.digest()
    for s in (a, b):
        assert fsm.apply(s, CommitJobs("B1", 10.5, "B1", n)).ok
        _publish_all(s, "B1", n)
    assert a.digest() == b.digest() == ClusterState.from_dict(a.to_dict()).digest()
    assert a.idem["k7"][0] == jobs[7][0]
    # the same keys again: the existing jobs are returned, nothing is created
    n2 = _stage_all(a, "B2", tuple((f"z{i}", sp) for i, (_, sp) in enumerate(jobs)), keys)
    res = fsm.apply(a, CommitJobs("B2", 20.0, "B2", n2))
    _publish_all(a, "B2", n2)
    assert list(res.value) == [jid for jid, _ in jobs] and len(a.jobs) == N


def test_job_table_order_is_submission_order() -> None:
    """ListJobs pages by bisecting the job table on seq: its order must be seq order."""
    s = cluster("n1")
    fsm.apply(s, SubmitJobs("a", 1.0, _jobs("a", 3)))
    n = _stage_all(s, "B1", _jobs("b", 300))
    fsm.apply(s, CommitJobs("B1", 10.5, "B1", n))
    fsm.apply(s, SubmitJobs("c", 1.0, _jobs("c", 3)))  # between two publications
    _publish_all(s, "B1", n)
    for st in (s, ClusterState.from_dict(s.to_dict())):
        seqs = [j.seq for j in st.jobs.values()]
        assert seqs == sorted(seqs)


def test_parts_and_proposer_entries_are_bounded() -> None:
    assert all(len(p.jobs) <= batches.PART for p in batches.split(_jobs(), ()))
    assert batches.weight(SubmitJobs("r", 0.0, _jobs(n=7))) == 7
    assert batches.PART <= MAX_ENTRY_WEIGHT
