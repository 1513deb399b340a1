"""rpc/members.py over replica/membership.RaftMembership on a fake leader: a second change
while one is in flight is FAILED_PRECONDITION (before pysyncobj sees it, and when pysyncobj
denies it), bad input INVALID_ARGUMENT / NOT_FOUND naming the field, nothing proposed."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from pysyncobj import FAIL_REASON

from raftsched.core.members import Member
from raftsched.core.state import ClusterState
from raftsched.replica.membership import RaftMembership
from raftsched.rpc.members import MembersOps
from raftsched.rpc.writes import Writes
from raftsched.v1 import cluster_pb2
from tests.unit.test_writes import Aborted, Context

pytestmark = pytest.mark.timeout(30)

SEED = [Member("n1", "127.0.0.1:1", "127.0.0.1:2"), Member("n2", "127.0.0.1:3", "127.0.0.1:4"),
        Member("n3", "127.0.0.1:5", "127.0.0.1:6")]


class FakeSyncObj:
    """The leader's pysyncobj as RaftMembership uses it; callbacks are answered by the test."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def _isLeader(self) -> bool:
        return True

    def rs_ready_for_change(self) -> bool:
        return True

    def rs_change_in_flight(self) -> int | None:
        return None

    def _applyCommand(self, command: bytes, callback: Any, kind: int) -> None:
        self.calls.append(callback)


def ops() -> tuple[MembersOps, FakeSyncObj]:
    loop = asyncio.get_running_loop()
    so = FakeSyncObj()
    replica = SimpleNamespace(state=ClusterState(), lock=threading.RLock())
    raft = SimpleNamespace(membership=RaftMembership(so, loop), is_leader=lambda: True,  # type: ignore[arg-type]
                           commit_index=lambda: 10, member_progress=lambda: {})
    writes = Writes("n1", replica, raft, proposer=None, peers=None)  # type: ignore[arg-type]
    return MembersOps("n1", replica, raft, writes, lambda: (list(SEED), False)), so  # type: ignore[arg-type]


def add_req(nid: str = "n4", raft: str = "127.0.0.1:7", grpc_addr: str = "127.0.0.1:8") -> Any:
    return cluster_pb2.AddMemberRequest(member=cluster_pb2.Member(
        id=nid, raft_address=raft, grpc_address=grpc_addr))


async def refused(coro: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(Aborted) as e:
        await coro
    return e.value.code, e.value.details


def test_a_second_change_while_one_is_in_flight_is_failed_precondition() -> None:
    async def run() -> None:
        m, so = ops()
        first = asyncio.ensure_future(m.add(add_req(), Context()))
        while not so.calls:
            await asyncio.sleep(0.001)
        code, msg = await refused(m.add(add_req("n5", "127.0.0.1:9", "127.0.0.1:10"), Context()))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "in flight" in msg
        code, _ = await refused(m.remove(cluster_pb2.RemoveMemberRequest(node_id="n2"), Context()))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert len(so.calls) == 1  # nothing more was proposed
        so.calls[0](None, FAIL_REASON.SUCCESS)
        resp = await first
        assert isinstance(resp, cluster_pb2.AddMemberResponse)
        # pysyncobj itself refusing (another change appended through another leader)
        second = asyncio.ensure_future(m.add(add_req("n5", "127.0.0.1:9", "127.0.0.1:10"), Context()))
        while len(so.calls) < 2:
            await asyncio.sleep(0.001)
        so.calls[1](None, FAIL_REASON.REQUEST_DENIED)
        code, _ = await refused(second)
        assert code == grpc.StatusCode.FAILED_PRECONDITION

    asyncio.run(run())


def test_bad_input_names_the_field_and_proposes_nothing() -> None:
    async def run() -> None:
        m, so = ops()
        for req, field in ((add_req("n2"), "member.id"), (add_req(raft="127.0.0.1:3"), "member.raft_address"),
                           (add_req(grpc_addr="x"), "member.grpc_address"),
                           (add_req(nid="a b"), "member.id")):
            code, msg = await refused(m.add(req, Context()))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith(field), (field, msg)
        code, msg = await refused(m.remove(cluster_pb2.RemoveMemberRequest(node_id="n9"), Context()))
        assert code == grpc.StatusCode.NOT_FOUND and "node_id" in msg
        code, msg = await refused(m.remove(cluster_pb2.RemoveMemberRequest(), Context()))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "node_id" in msg
        assert so.calls == []

    asyncio.run(run())
