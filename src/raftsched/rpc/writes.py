"""Writes from any node: propose on the leader, or forward to it.

A write keeps its request id across every retry and every hop, so that a
proposal whose outcome was unknown (leader died mid-flight) is retried safely:
the state machine applies each request id at most once.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from raftsched.core.apply import reused_message
from raftsched.core.commands import Command
from raftsched.core.freshness import APPLIED_INDEX
from raftsched.core.state import Code, Result
from raftsched.ports import Peers, Propose, RaftStatus, ReplicaView
from raftsched.replica.proposer import NotLeader, OutcomeUnknown, TooLarge
from raftsched.rpc.auth import passthrough
from raftsched.rpc.identity import NOT_MEMBER, NodeIdentity

M = TypeVar("M", bound=Message)
M2 = TypeVar("M2")

FORWARDED = "x-raftsched-forwarded"
# the caller's credentials travel with a forwarded write: the leader checks them again
WRITE_DEADLINE = 15.0
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
# Fingerprint of the client request being written: stamped into its command, so that
# a request id reused for a different request is refused (never answered with the
# first request's result).
_fingerprint: contextvars.ContextVar[str] = contextvars.ContextVar("raftsched_fp", default="")


def fingerprint(method: str, request: Message) -> str:
    req = type(request)()
    req.CopyFrom(request)
    if hasattr(req, "request_id"):
        req.request_id = ""  # type: ignore[attr-defined]
    h = hashlib.sha256(method.encode() + b"\0" + req.SerializeToString(deterministic=True))
    return h.hexdigest()[:32]


def forwarded_by(context: grpc.aio.ServicerContext) -> str | None:
    """The node id a write claims to be forwarded by (None: a client's own call)."""
    for k, v in context.invocation_metadata() or ():
        if k == FORWARDED:
            return v if isinstance(v, str) else v.decode(errors="replace")
    return None


async def abort_for(context: grpc.aio.ServicerContext, res: Result) -> None:
    code = {
        Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
        Code.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
        Code.PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
        Code.EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
        Code.DENIED: grpc.StatusCode.PERMISSION_DENIED,
    }.get(res.code, grpc.StatusCode.INTERNAL)
    await context.abort(code, res.message)


Local = Callable[[str], Awaitable[M]]  # request id -> response (this node leads)


class Writes:
    """The one door for writes from a servicer: propose on the leader, or forward the
    request (same request id) to it and wait until this replica applied the write,
    so that the client's next read on this node sees it (read-your-writes)."""

    def __init__(self, me_id: str, replica: ReplicaView, raft: RaftStatus, proposer: Propose,
                 peers: Peers, identity: NodeIdentity | None = None) -> None:
        self.me_id = me_id
        self.identity = identity or NodeIdentity(tls=True)
        self.replica = replica
        self.raft = raft
        self.proposer = proposer
        self.peers = peers

    async def propose(self, context: grpc.aio.ServicerContext, cmd: Command) -> Result:
        """Propose on this (leading) node; a refusal aborts the call with its status."""
        return (await self.propose_all(context, [cmd]))[0]

    async def propose_all(self, context: grpc.aio.ServicerContext, cmds: list[Command]) -> list[Result]:
        """Propose commands together, in order (one entry when they fit); a refusal of
        the first aborts the call with its status, the others' results are returned."""
        fp = _fingerprint.get()
        if fp:
            cmds = [dataclasses.replace(c, fp=fp)  # type: ignore[type-var]
                    if "fp" in getattr(c, "__dataclass_fields__", {}) and not c.fp else c for c in cmds]
        try:
            res = await self.proposer.propose_all(cmds)
        except TooLarge as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        if not res[0].ok:
            await abort_for(context, res[0])
        return res

    async def write(self, context: grpc.aio.ServicerContext, request: M, stub: Callable[[Any], Any],
                    method: str, local: Local[M2]) -> M2:
        """Run `local(request id)` if this node leads, else call `method` of `stub(channel)`
        on the leader with a copy of `request` carrying the request id; retry until the
        deadline. Every retry and hop keeps the request id: the state machine applies
        each at most once."""
        rid = getattr(request, "request_id", "") or uuid.uuid4().hex
        fp = fingerprint(method, request)
        _fingerprint.set(fp)

        async def forward(ch: grpc.aio.Channel, md: tuple[tuple[str, str], ...]) -> M2:
            req = type(request)()
            req.CopyFrom(request)
            req.request_id = rid  # type: ignore[attr-defined]
            call = getattr(stub(ch), method)(req, metadata=md,
                                              timeout=context.time_remaining() or WRITE_DEADLINE)
            resp = await call
            index = await self.wait_applied(call)
            if index is not None:
                # Committed (the leader said so) but not applied here: acknowledging now
                # would let the client read its own write as missing from this node.
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    f"committed by the leader at index {index} but {self.me_id} has not "
                    f"applied it yet; retry with request_id={rid} (safe: applied once)")
            return resp  # type: ignore[no-any-return]

        return await self._leader_write(context, rid, local, forward, fp)

    async def _leader_write(self, context: grpc.aio.ServicerContext, request_id: str,
                            local: Local[M2],
                            forward: Callable[[grpc.aio.Channel, tuple[tuple[str, str], ...]],
                                              Awaitable[M2]], fp: str = "") -> M2:
        by = forwarded_by(context)
        if by is not None:  # only a node's certificate may say it forwards a client's write
            await self.identity.require(context, by)
        forwarded = by is not None
        deadline = time.monotonic() + WRITE_DEADLINE
        remaining = context.time_remaining()
        if remaining is not None:
            deadline = min(deadline, time.monotonic() + remaining)
        last_error = "no leader elected yet"
        while time.monotonic() < deadline:
            if self.raft.is_leader():
                used = self.replica.state.fingerprints.get(request_id)
                if fp and used is not None and used != fp:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, reused_message(request_id))
                try:
                    result = await local(request_id)
                    # Tell a forwarding node which index to wait for (read-your-writes).
                    context.set_trailing_metadata(
                        ((APPLIED_INDEX, str(self.replica.state.applied_index)),))
                    return result
                except NotLeader as e:
                    last_error = str(e)
                except OutcomeUnknown as e:
                    last_error = str(e)
                    continue  # same request id: retry is safe
            elif not forwarded:
                lc = self.raft.leader_config()
                if lc is not None and lc.id != self.me_id:
                    try:
                        md = ((FORWARDED, self.me_id), *passthrough(context))
                        return await forward(self.peers.channel(lc.grpc), md)
                    except grpc.aio.AioRpcError as e:
                        if NOT_MEMBER in (e.details() or ""):
                            # the leader no longer counts this node a member: the client
                            # should call another node
                            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                                f"{self.me_id} was removed from the cluster; "
                                                "call another node")
                        if e.code() not in RETRYABLE:
                            await context.abort(e.code(), e.details() or "")
                        last_error = f"leader {lc.id}: {e.details()}"
            else:
                # A forwarded call reached a node that no longer leads: let the origin re-resolve.
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.me_id} is not the leader")
            await asyncio.sleep(0.05)
        await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            f"write not confirmed ({last_error}); retry with request_id={request_id}",
        )
        raise AssertionError("unreachable")

    async def wait_applied(self, call: Any, timeout: float = 3.0) -> int | None:
        """After a write forwarded to the leader: wait until this replica has applied it.
        None once applied; else the leader's index this replica did not reach in time."""
        index = 0
        for k, v in await call.trailing_metadata() or ():
            if k == APPLIED_INDEX:
                index = int(v)
        deadline = time.monotonic() + timeout
        while self.replica.state.applied_index < index:
            if time.monotonic() >= deadline:
                return index
            await asyncio.sleep(0.002)
        return None


