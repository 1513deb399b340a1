"""rpc/freshness.py: the freshness metadata of every read and the consistent-read
barrier (ReadIndex), over fake Raft positions and a fake gRPC context."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from raftsched.core.freshness import stale_warning
from raftsched.rpc import freshness as fr
from raftsched.rpc.freshness import Freshness, FreshnessInterceptor, Unavailable
from raftsched.v1 import cluster_pb2, node_pb2, scheduler_pb2

pytestmark = pytest.mark.timeout(30)
TIMEOUT = 0.6


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class Context:
    def __init__(self, remaining: float | None = 10.0) -> None:
        self.remaining = remaining
        self.initial: Any = None

    def time_remaining(self) -> float | None:
        return self.remaining

    async def send_initial_metadata(self, md: Any) -> None:
        self.initial = md

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


class Raft:
    """A Raft position: leader or follower, contact age, a read index that a majority
    confirms `confirm_after` seconds after it was asked for."""

    def __init__(self, leader: bool = False, leader_id: str | None = "n1", age: float | None = 0.1,
                 commit: int | None = 7, confirm_after: float | None = 0.02) -> None:
        self.leader, self.leader_id, self.age = leader, leader_id, age
        self.commit, self.confirm_after = commit, confirm_after

    def is_leader(self) -> bool:
        return self.leader

    def leader_config(self) -> Any:
        return None if self.leader_id is None else SimpleNamespace(id=self.leader_id, grpc="l:1")

    def contact_age(self) -> float | None:
        return self.age

    def read_index_begin(self) -> tuple[int, int, float] | None:
        return None if self.commit is None else (4, self.commit, time.monotonic())

    def read_index_confirmed(self, term: int, arrival: float) -> bool:
        return (term == 4 and self.confirm_after is not None
                and time.monotonic() >= arrival + self.confirm_after)


def make(raft: Raft, applied: int = 7, me: str = "n3") -> Freshness:
    cfg = SimpleNamespace(election_timeout_max=TIMEOUT)
    replica = SimpleNamespace(state=SimpleNamespace(applied_index=applied))
    peers = SimpleNamespace(channel=lambda addr: addr)
    return Freshness(cfg, me, replica, raft, peers)  # type: ignore[arg-type]


def test_stale_means_no_contact_within_the_election_timeout():
    assert not fr.judge("n3", 5, "n1", 0.0, TIMEOUT).stale
    assert not fr.judge("n3", 5, "n1", TIMEOUT - 0.01, TIMEOUT).stale
    assert fr.judge("n3", 5, "n1", TIMEOUT, TIMEOUT).stale
    assert fr.judge("n3", 5, "", None, TIMEOUT).stale  # never heard from a leader


def test_metadata_round_trips_through_the_client_parser():
    md = fr.judge("n3", 42, "n1", 2.5, TIMEOUT).metadata()
    assert dict(md) == {fr.NODE: "n3", fr.APPLIED_INDEX: "42", fr.LEADER: "n1", fr.STALE: "1",
                        fr.CONTACT_AGE: "2.500"}
    assert fr.parse(md) == {"node": "n3", "applied_index": 42, "leader": "n1", "stale": True,
                            "contact_age": 2.5}
    assert fr.parse((("other", "x"),)) is None  # an older server: no freshness at all
    assert fr.parse(fr.judge("n3", 1, "", None, TIMEOUT).metadata())["contact_age"] is None


def test_stale_warning_names_the_node_and_how_long():
    f = fr.parse(fr.judge("n3", 42, "n1", 2.5, TIMEOUT).metadata())
    assert stale_warning(f) == ("warning: n3 has not heard from a leader for 2.5 s; this answer "
                                "may be stale (use --consistent)")
    assert "n1 has not heard from a majority" in stale_warning(
        fr.parse(fr.judge("n1", 42, "n1", 1.0, TIMEOUT).metadata()))
    assert "since it started" in stale_warning(fr.parse(fr.judge("n3", 0, "", None, TIMEOUT).metadata()))
    assert stale_warning(fr.parse(fr.judge("n3", 42, "n1", 0.1, TIMEOUT).metadata())) is None


def test_every_public_read_and_no_write_gets_freshness():
    for m in ("Scheduler/GetJob", "Scheduler/ListJobs", "Cluster/ListNodes", "Cluster/ClusterStatus",
              "Workflows/GetWorkflow", "Events/WatchJobs"):
        assert f"/raftsched.v1.{m}" in fr.READ_METHODS
    for m in ("Scheduler/SubmitJob", "Scheduler/CancelJob", "Acl/CreateToken"):
        assert f"/raftsched.v1.{m}" not in fr.READ_METHODS


def test_node_view_follower_and_leader():
    assert make(Raft(age=0.1)).now() == fr.Fresh("n3", 7, "n1", False, 0.1)
    assert make(Raft(age=3.0)).now().stale
    cut = make(Raft(leader_id=None, age=float("inf"))).now()
    assert cut.stale and cut.leader == "" and cut.contact_age is None
    assert make(Raft(leader=True, leader_id="n3", age=TIMEOUT + 0.1)).now().stale


def test_leader_read_index_waits_for_a_confirmed_round():
    f = make(Raft(leader=True, leader_id="n3"))
    t0 = time.monotonic()
    assert asyncio.run(f.leader_read_index(t0 + 2)) == (7, 4)
    assert time.monotonic() - t0 >= 0.02  # not before a majority answered
    with pytest.raises(Unavailable, match="could not confirm"):
        asyncio.run(make(Raft(leader=True, confirm_after=None)).leader_read_index(time.monotonic() + 0.1))
    with pytest.raises(Unavailable, match="not a leader"):
        asyncio.run(make(Raft(leader=True, commit=None)).leader_read_index(time.monotonic() + 0.1))


def test_consistent_read_without_a_leader_is_unavailable():
    f = make(Raft(leader_id=None, age=None))
    with pytest.raises(Aborted) as e:
        asyncio.run(f.barrier(Context()))
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert "no leader reachable from n3" in e.value.details
    assert "read without --consistent (stale)" in e.value.details


class Stub:
    answer: Any = 10

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    async def ReadIndex(self, request: node_pb2.ReadIndexRequest, timeout: float) -> Any:
        assert request.node_id == "n3" and 0 < timeout <= fr.CONSISTENT_DEADLINE
        if isinstance(self.answer, Exception):
            raise self.answer
        return node_pb2.ReadIndexResponse(read_index=self.answer, term=4)


def test_follower_waits_until_it_applied_the_leaders_read_index(monkeypatch):
    monkeypatch.setattr(fr.node_pb2_grpc, "NodeAgentStub", Stub)
    f = make(Raft(), applied=8)

    async def run() -> None:
        async def apply_later() -> None:
            await asyncio.sleep(0.05)
            f.replica.state.applied_index = 10  # type: ignore[attr-defined]
        task = asyncio.ensure_future(apply_later())
        await f.barrier(Context())
        assert f.replica.state.applied_index >= 10  # type: ignore[attr-defined]
        await task

    asyncio.run(run())

    lagging = make(Raft(), applied=8)
    with pytest.raises(Aborted, match="has not applied index 10"):
        asyncio.run(lagging.barrier(Context(remaining=0.1)))


def test_follower_that_cannot_reach_the_leader_is_unavailable(monkeypatch):
    class Down(Stub):
        answer = grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(),
                                      grpc.aio.Metadata(), details="Deadline Exceeded")

    monkeypatch.setattr(fr.node_pb2_grpc, "NodeAgentStub", Down)
    with pytest.raises(Aborted) as e:
        asyncio.run(make(Raft()).barrier(Context()))
    assert e.value.code == grpc.StatusCode.UNAVAILABLE and "leader n1" in e.value.details


def test_interceptor_step_sends_metadata_and_honours_consistent(monkeypatch):
    f = make(Raft(age=5.0))
    icpt = FreshnessInterceptor(f)
    ctx = Context()
    asyncio.run(icpt._before(scheduler_pb2.GetJobRequest(job_id="j"), ctx))
    assert dict(ctx.initial)[fr.STALE] == "1"
    called: list[bool] = []

    async def barrier(context: Any) -> None:
        called.append(True)

    monkeypatch.setattr(f, "barrier", barrier)
    for req in (scheduler_pb2.ListJobsRequest(consistent=True), cluster_pb2.ListNodesRequest(consistent=True),
                cluster_pb2.ClusterStatusRequest(consistent=True)):
        asyncio.run(icpt._before(req, Context()))
    asyncio.run(icpt._before(scheduler_pb2.ListJobsRequest(), Context()))
    assert called == [True, True, True]


def test_refusal_comes_before_the_callers_deadline():
    f = make(Raft(leader_id=None, age=None))
    t0 = time.monotonic()
    with pytest.raises(Aborted) as e:
        asyncio.run(f.barrier(Context(remaining=0.8)))
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - t0 <= 0.8 - fr.ANSWER_MARGIN + 0.1


def test_consistent_read_retries_while_a_leader_gets_ready(monkeypatch):
    """A leader elected a moment ago has no read index until its no-op commits: the
    follower asks again within the deadline instead of failing at once."""
    class Later(Stub):
        calls = 0

        async def ReadIndex(self, request: node_pb2.ReadIndexRequest, timeout: float) -> Any:
            Later.calls += 1
            if Later.calls < 3:
                raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                           grpc.aio.Metadata(), details="not ready")
            return node_pb2.ReadIndexResponse(read_index=5, term=4)

    monkeypatch.setattr(fr.node_pb2_grpc, "NodeAgentStub", Later)
    asyncio.run(make(Raft(), applied=5).barrier(Context()))
    assert Later.calls == 3


def test_client_sets_consistent_and_reports_stale_answers():
    """client.Client: `consistent` is set on every read that has the field, and the
    freshness of each answer is kept (and reported when stale)."""
    from raftsched.client.client import Client

    seen: list[Any] = []

    class Call:
        def initial_metadata(self) -> Any:
            return fr.judge("n3", 9, "n1", 2.0, TIMEOUT).metadata()

    class Method:
        def with_call(self, request: Any, timeout: float) -> Any:
            seen.append(request)
            return "answer", Call()

    class FakeStub:
        def __init__(self, channel: Any) -> None:
            self.GetJob = self.ClusterStatus = Method()

    c = Client(["127.0.0.1:1"], tls=None)
    try:
        stale: list[dict] = []
        c.on_stale = stale.append
        assert c._invoke(FakeStub, "GetJob", scheduler_pb2.GetJobRequest(job_id="j")) == "answer"
        assert seen[-1].consistent is False
        c.consistent = True
        c._invoke(FakeStub, "GetJob", scheduler_pb2.GetJobRequest(job_id="j"))
        assert seen[-1].consistent is True and seen[-1].job_id == "j"
        c._invoke(FakeStub, "ClusterStatus", cluster_pb2.ClusterStatusRequest(include_replicas=True))
        assert seen[-1].consistent is True and seen[-1].include_replicas is True
        assert c.last_freshness == {"node": "n3", "applied_index": 9, "leader": "n1", "stale": True,
                                    "contact_age": 2.0}
        assert len(stale) == 3
    finally:
        c.close()
