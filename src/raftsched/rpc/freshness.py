"""Honest reads (issue 20): how fresh an answer is, and consistent reads (ReadIndex).

A read is served from this node's replica. Every public read says how fresh that
replica is, in its initial metadata:

* ``x-raftsched-applied-index``: the last Raft index this replica applied;
* ``x-raftsched-leader``: the leader this node knows ("" if none);
* ``x-raftsched-stale``: "1" when this node is a follower that has not heard from a
  leader within the election timeout (``election_timeout_max``), or a leader that has
  not heard from a majority within it; else "0";
* ``x-raftsched-contact-age``: seconds since that contact ("" if never).

A request with ``consistent = true`` is linearizable (ReadIndex, Raft thesis 6.4):
the leader takes its commit index when the request arrives (after it has committed an
entry of its own term), waits until a majority answered heartbeats it sent after
that moment, and hands the index back; the serving node (leader or follower, which
asks the leader over the node-to-node NodeAgent.ReadIndex) waits until it has applied
that index, then reads. No leader, or no confirmation within the deadline:
UNAVAILABLE.

`FreshnessInterceptor` does this for every read method (the READ rows of
`auth.METHODS`): no read handler repeats it. It runs after the auth interceptor, so
an unauthenticated caller learns nothing.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from raftsched.config import ClusterConfig
from raftsched.core.acl import Perm
from raftsched.core.freshness import (
    APPLIED_INDEX,
    CONTACT_AGE,
    LEADER,
    NODE,
    STALE,
    Fresh,
    judge,
    parse,
)
from raftsched.ports import Peers, RaftStatus, ReplicaView
from raftsched.rpc.auth import METHODS
from raftsched.v1 import node_pb2, node_pb2_grpc

__all__ = ["APPLIED_INDEX", "CONTACT_AGE", "LEADER", "NODE", "READ_METHODS", "STALE", "Fresh", "Freshness",
           "FreshnessInterceptor", "Unavailable", "judge", "parse"]

READ_METHODS = frozenset(m for m, p in METHODS.items() if p is Perm.READ)
CONSISTENT_DEADLINE = 3.0  # seconds a consistent read may wait for its read index
POLL = 0.003
RETRY_PAUSE = 0.05  # between attempts to get a read index
ANSWER_MARGIN = 0.3  # seconds kept from the caller's deadline to send the refusal


class Unavailable(Exception):
    """A consistent read cannot be served now (the message says why)."""


class Freshness:
    def __init__(self, cfg: ClusterConfig, me_id: str, replica: ReplicaView, raft: RaftStatus,
                 peers: Peers) -> None:
        self.cfg = cfg
        self.me_id = me_id
        self.replica = replica
        self.raft = raft
        self.peers = peers
        self.timeout = cfg.election_timeout_max

    def now(self) -> Fresh:
        lc = self.raft.leader_config()
        age = self.raft.contact_age()
        if age is not None and math.isinf(age):
            age = None
        return judge(self.me_id, self.replica.state.applied_index, "" if lc is None else lc.id,
                     age, self.timeout)

    async def leader_read_index(self, deadline: float) -> tuple[int, int]:
        """On the leader: (read index, term) once a majority answered heartbeats sent after
        this call began; Unavailable if this node does not lead or time runs out."""
        begun = self.raft.read_index_begin()
        if begun is None:
            raise Unavailable(f"{self.me_id} is not a leader with a committed entry of its term")
        term, index, arrival = begun
        while not self.raft.read_index_confirmed(term, arrival):
            if time.monotonic() >= deadline or not self.raft.is_leader():
                raise Unavailable(f"leader {self.me_id} could not confirm its leadership with a "
                                  "majority in time")
            await asyncio.sleep(POLL)
        return index, term

    async def read_index(self, deadline: float) -> int:
        """The index a consistent read must see: the leader's, asked for if need be."""
        if self.raft.is_leader():
            return (await self.leader_read_index(deadline))[0]
        lc = self.raft.leader_config()
        if lc is None or lc.id == self.me_id:
            raise Unavailable("no leader known")
        stub = node_pb2_grpc.NodeAgentStub(self.peers.channel(lc.grpc))
        try:
            resp = await stub.ReadIndex(node_pb2.ReadIndexRequest(node_id=self.me_id),
                                        timeout=max(0.05, deadline - time.monotonic()))
        except grpc.aio.AioRpcError as e:
            raise Unavailable(f"leader {lc.id}: {e.details() or e.code().name}") from None
        return int(resp.read_index)

    async def barrier(self, context: grpc.aio.ServicerContext) -> None:
        """Wait until this replica may serve a linearizable read, or abort UNAVAILABLE."""
        budget = CONSISTENT_DEADLINE
        remaining = context.time_remaining()
        if remaining is not None:
            # answer UNAVAILABLE (with the reason) before the caller's deadline cuts us off
            budget = min(budget, max(0.0, remaining - ANSWER_MARGIN))
        deadline = time.monotonic() + budget
        while True:
            try:
                index = await self.read_index(deadline)
                break
            except Unavailable as e:
                # an election in progress, a leader not ready yet: ask again until the deadline
                if time.monotonic() + RETRY_PAUSE >= deadline:
                    await self._refuse(context, e)
                await asyncio.sleep(RETRY_PAUSE)
        while self.replica.state.applied_index < index:
            if time.monotonic() >= deadline:
                await self._refuse(context, Unavailable(
                    f"{self.me_id} has not applied index {index} in time"))
            await asyncio.sleep(POLL)

    async def _refuse(self, context: grpc.aio.ServicerContext, e: Unavailable) -> None:
        await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            f"no leader reachable from {self.me_id} ({e}): a consistent read cannot be "
            "served; retry or read without --consistent (stale)")


class FreshnessInterceptor(grpc.aio.ServerInterceptor):
    """Every read: the consistent barrier if asked for, then the freshness metadata."""

    def __init__(self, freshness: Freshness) -> None:
        self.freshness = freshness

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or details.method not in READ_METHODS:
            return handler
        return _wrap(handler, self._before)

    async def _before(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        if getattr(request, "consistent", False) is True:
            await self.freshness.barrier(context)
        await context.send_initial_metadata(self.freshness.now().metadata())


def _wrap(h: Any, before: Callable[[Any, grpc.aio.ServicerContext], Awaitable[None]]) -> Any:
    des, ser = h.request_deserializer, h.response_serializer
    if h.unary_unary is not None:
        inner = h.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await before(request, context)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(unary, des, ser)
    if h.unary_stream is not None:
        inner_s = h.unary_stream

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await before(request, context)
            async for item in inner_s(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(stream, des, ser)
    return h
