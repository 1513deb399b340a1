"""rpc/writes.py: a write forwarded to the leader is acknowledged by the forwarding node
only once this node applied it (issue 20: an acknowledgement means committed by the
leader in its term *and* applied on the answering node)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from raftsched.rpc import writes as writes_mod
from raftsched.rpc.writes import APPLIED_INDEX, Writes
from raftsched.v1 import scheduler_pb2

pytestmark = pytest.mark.timeout(30)


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class Context:
    def invocation_metadata(self) -> tuple[()]:
        return ()

    def time_remaining(self) -> float:
        return 10.0

    def set_trailing_metadata(self, md: Any) -> None:
        self.trailing = md

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


class LeaderCall:
    """What the leader answers a forwarded SubmitJobs: OK, committed at `index`."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __await__(self):
        async def done() -> scheduler_pb2.SubmitJobsResponse:
            return scheduler_pb2.SubmitJobsResponse(job_ids=["a", "b"])
        return done().__await__()

    async def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((APPLIED_INDEX, str(self.index)),)


def follower_writes(applied: int, leader_index: int) -> tuple[Writes, SimpleNamespace]:
    state = SimpleNamespace(applied_index=applied, fingerprints={})
    replica = SimpleNamespace(state=state)
    leader = SimpleNamespace(id="n1", grpc="leader:1")
    raft = SimpleNamespace(is_leader=lambda: False, leader_config=lambda: leader)
    peers = SimpleNamespace(channel=lambda addr: object())
    w = Writes("n2", replica, raft, proposer=None, peers=peers)  # type: ignore[arg-type]
    stub = SimpleNamespace(SubmitJobs=lambda req, metadata, timeout: LeaderCall(leader_index))
    return w, SimpleNamespace(stub=lambda ch: stub, state=state)


async def never_local(rid: str) -> Any:
    raise AssertionError("this node does not lead")


def test_forwarded_write_is_acknowledged_once_applied_here() -> None:
    w, f = follower_writes(applied=5, leader_index=7)

    async def run() -> Any:
        async def apply_soon() -> None:
            await asyncio.sleep(0.05)
            f.state.applied_index = 7
        task = asyncio.ensure_future(apply_soon())
        resp = await w.write(Context(), scheduler_pb2.SubmitJobsRequest(request_id="r1"),
                             f.stub, "SubmitJobs", never_local)
        await task
        return resp

    assert list(asyncio.run(run()).job_ids) == ["a", "b"]


def test_forwarded_write_not_applied_here_is_unavailable_not_ok(monkeypatch) -> None:
    w, f = follower_writes(applied=5, leader_index=7)
    real = Writes.wait_applied
    monkeypatch.setattr(Writes, "wait_applied",
                        lambda self, call, timeout=0.2: real(self, call, timeout))
    with pytest.raises(Aborted) as e:
        asyncio.run(w.write(Context(), scheduler_pb2.SubmitJobsRequest(request_id="r1"),
                            f.stub, "SubmitJobs", never_local))
    assert e.value.code == grpc.StatusCode.UNAVAILABLE
    assert "request_id=r1" in e.value.details and "index 7" in e.value.details
    assert {grpc.StatusCode.UNAVAILABLE} <= writes_mod.RETRYABLE  # clients retry it, same id
