"""Membership of the Cluster service (issue 15): ListMembers, AddMember, RemoveMember.

Admin only (rpc/auth.py). Every call runs on the leader (the shared write path forwards
it, same request id on every retry): the leader validates the change against its
replica (INVALID_ARGUMENT / NOT_FOUND naming the field), refuses a second change while
one is in flight (FAILED_PRECONDITION), and appends one pysyncobj membership entry
carrying the `core.members` command (replica/membership.py). Removing the leader first
hands leadership to a caught-up follower (Raft's TimeoutNow), and the new leader
removes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

import grpc

from raftsched.core import codec
from raftsched.core.members import AddMember, Member, RemoveMember, add_error, members_of, remove_error
from raftsched.ports import ReplicaView
from raftsched.replica.membership import ChangeRefused, RaftMembership
from raftsched.replica.proposer import NotLeader, OutcomeUnknown
from raftsched.rpc import auth
from raftsched.rpc.convert_members import member_from_pb, member_to_pb
from raftsched.rpc.writes import Writes
from raftsched.v1 import cluster_pb2, cluster_pb2_grpc

HANDOVER_WAIT = 10.0  # seconds for a leadership transfer to show


class MembershipRaft(Protocol):
    membership: RaftMembership

    def is_leader(self) -> bool: ...
    def commit_index(self) -> int: ...
    def member_progress(self) -> dict[str, tuple[int, bool]]: ...


Current = Callable[[], tuple[list[Member], bool]]  # (members, seeded in the state)


class MembersOps:
    def __init__(self, me_id: str, replica: ReplicaView, raft: MembershipRaft, writes: Writes,
                 current: Current) -> None:
        self.me_id = me_id
        self.replica = replica
        self.raft = raft
        self.writes = writes
        self.current = current

    # ---- list -----------------------------------------------------------------------
    def listing(self) -> cluster_pb2.ListMembersResponse:
        members, _ = self.current()
        leading = self.raft.is_leader()
        progress = self.raft.member_progress() if leading else {}
        commit = self.raft.commit_index()
        out = []
        for m in members:
            if m.id == self.me_id and leading:
                out.append(member_to_pb(m, "leader", commit, 0, True))
            elif m.raft in progress:
                match, connected = progress[m.raft]
                out.append(member_to_pb(m, "follower", match, max(0, commit - match), connected))
            else:
                out.append(member_to_pb(m, "unknown" if leading else ""))
        with self.replica.lock:
            version = members_of(self.replica.state).version
        return cluster_pb2.ListMembersResponse(
            members=out, leader_id=self.me_id if leading else "", commit_index=commit,
            version=version, change_in_flight=self.raft.membership.in_flight() or 0)

    async def list_members(self, request: cluster_pb2.ListMembersRequest,
                   context: grpc.aio.ServicerContext) -> cluster_pb2.ListMembersResponse:
        async def local(_rid: str) -> cluster_pb2.ListMembersResponse:
            if not self.raft.is_leader():
                raise NotLeader("not the leader")
            return self.listing()

        return await self.writes.write(context, request, cluster_pb2_grpc.ClusterStub,
                                       "ListMembers", local)

    # ---- add / remove -------------------------------------------------------------------
    def _applied(self, rid: str) -> bool:
        with self.replica.lock:
            return rid in self.replica.state.dedup

    def _members_pb(self) -> list[cluster_pb2.Member]:
        return [member_to_pb(m) for m in self.current()[0]]

    async def _change(self, context: grpc.aio.ServicerContext, kind: str, raft_address: str,
                      cmd: Any) -> None:
        membership = self.raft.membership
        try:
            await membership.change(kind, raft_address, codec.encode_entry([cmd]))
        except ChangeRefused as e:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        except OutcomeUnknown:
            # Not confirmed in time: our entry may still be in the log. While it is in flight
            # a retry would be refused as "another change", so wait for it here first.
            deadline = time.monotonic() + (context.time_remaining() or 0.0) - 0.5
            while membership.in_flight() is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if not self._applied(cmd.rid):
                raise

    async def add(self, request: cluster_pb2.AddMemberRequest,
                  context: grpc.aio.ServicerContext) -> cluster_pb2.AddMemberResponse:
        m = member_from_pb(request.member)
        _field, err = add_error([], m)  # the shape first, on whichever node got the call
        if err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"member.{err}")

        async def local(rid: str) -> cluster_pb2.AddMemberResponse:
            if not self._applied(rid):
                current, seeded = self.current()
                _field, err = add_error(current, m)
                if err:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"member.{err}")
                seed = () if seeded else tuple(current)
                await self._change(context, "add", m.raft,
                                   AddMember(rid, time.time(), m, seed, by=auth.principal().name))
            return cluster_pb2.AddMemberResponse(members=self._members_pb())

        return await self.writes.write(context, request, cluster_pb2_grpc.ClusterStub,
                                       "AddMember", local)

    async def remove(self, request: cluster_pb2.RemoveMemberRequest,
                     context: grpc.aio.ServicerContext) -> cluster_pb2.RemoveMemberResponse:
        if not request.node_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "node_id is required: the id of the member to remove")

        async def local(rid: str) -> cluster_pb2.RemoveMemberResponse:
            if not self._applied(rid):
                current, seeded = self.current()
                field, err = remove_error(current, request.node_id)
                if err:
                    code = grpc.StatusCode.NOT_FOUND if field == "not_found" else \
                        grpc.StatusCode.INVALID_ARGUMENT
                    await context.abort(code, err)
                target = next(m for m in current if m.id == request.node_id)
                if target.id == self.me_id:
                    await self._hand_over(context)
                    raise NotLeader("leadership handed over; the new leader removes this node")
                seed = () if seeded else tuple(current)
                await self._change(context, "rem", target.raft,
                                   RemoveMember(rid, time.time(), target.id, seed,
                                                by=auth.principal().name))
            return cluster_pb2.RemoveMemberResponse(members=self._members_pb(), leader_id=self.me_id)

        return await self.writes.write(context, request, cluster_pb2_grpc.ClusterStub,
                                       "RemoveMember", local)

    async def _hand_over(self, context: grpc.aio.ServicerContext) -> None:
        """This leader is to be removed: TimeoutNow to the most caught-up follower (pysyncobj
        only sends it to one holding the whole log: retried while entries are in flight),
        then wait until this node no longer leads."""
        if self.raft.membership.in_flight() is not None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "another membership change is in flight; retry once it is applied")
        remaining = context.time_remaining()
        deadline = time.monotonic() + min(HANDOVER_WAIT, max(1.0, (remaining or HANDOVER_WAIT) - 2.0))
        while time.monotonic() < deadline and self.raft.is_leader():
            await self.raft.membership.transfer_leadership(None)
            step = time.monotonic() + 0.5  # pysyncobj refuses while entries are in flight: retry
            while time.monotonic() < min(step, deadline) and self.raft.is_leader():
                await asyncio.sleep(0.02)
        if self.raft.is_leader():
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                "could not hand leadership over (no follower caught up); retry")
