"""Writes from any node: propose on the leader, or forward to it.

A write keeps its request id across every retry and every hop, so that a
proposal whose outcome was unknown (leader died mid-flight) is retried safely:
the state machine applies each request id at most once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from raftsched.core.state import Code, Result
from raftsched.replica.proposer import NotLeader, OutcomeUnknown

if TYPE_CHECKING:
    from raftsched.node.runtime import NodeRuntime

T = TypeVar("T")

FORWARDED = "x-raftsched-forwarded"
APPLIED_INDEX = "x-raftsched-applied-index"
WRITE_DEADLINE = 15.0
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def is_forwarded(context: grpc.aio.ServicerContext) -> bool:
    return any(k == FORWARDED for k, _ in (context.invocation_metadata() or ()))


async def abort_for(context: grpc.aio.ServicerContext, res: Result) -> None:
    code = {
        Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
        Code.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
        Code.PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    }.get(res.code, grpc.StatusCode.INTERNAL)
    await context.abort(code, res.message)


async def leader_write(
    rt: NodeRuntime,
    context: grpc.aio.ServicerContext,
    request_id: str,
    local: Callable[[], Awaitable[T]],
    forward: Callable[[grpc.aio.Channel, tuple[tuple[str, str], ...]], Awaitable[T]],
) -> T:
    """Run `local` if this node leads, else `forward` to the leader; retry until the deadline."""
    forwarded = is_forwarded(context)
    deadline = time.monotonic() + WRITE_DEADLINE
    remaining = context.time_remaining()
    if remaining is not None:
        deadline = min(deadline, time.monotonic() + remaining)
    last_error = "no leader elected yet"
    while time.monotonic() < deadline:
        if rt.is_leader():
            try:
                result = await local()
                # Tell a forwarding node which index to wait for (read-your-writes).
                context.set_trailing_metadata(((APPLIED_INDEX, str(rt.sm.state.applied_index)),))
                return result
            except NotLeader as e:
                last_error = str(e)
            except OutcomeUnknown as e:
                last_error = str(e)
                continue  # same request id: retry is safe
        elif not forwarded:
            lc = rt.leader_config()
            if lc is not None and lc.id != rt.me.id:
                try:
                    return await forward(rt.channel(lc.grpc), ((FORWARDED, rt.me.id),))
                except grpc.aio.AioRpcError as e:
                    if e.code() not in RETRYABLE:
                        await context.abort(e.code(), e.details() or "")
                    last_error = f"leader {lc.id}: {e.details()}"
        else:
            # A forwarded call reached a node that no longer leads: let the origin re-resolve.
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{rt.me.id} is not the leader")
        await asyncio.sleep(0.05)
    await context.abort(
        grpc.StatusCode.UNAVAILABLE,
        f"write not confirmed ({last_error}); retry with request_id={request_id}",
    )
    raise AssertionError("unreachable")


async def wait_applied(rt: NodeRuntime, call: Any, timeout: float = 3.0) -> None:
    """After a write forwarded to the leader: wait until this replica has applied it,
    so that a client reading from this node next sees its own write."""
    index = 0
    for k, v in await call.trailing_metadata() or ():
        if k == APPLIED_INDEX:
            index = int(v)
    deadline = time.monotonic() + timeout
    while rt.sm.state.applied_index < index and time.monotonic() < deadline:
        await asyncio.sleep(0.002)


def forward_kwargs(md: tuple[tuple[str, str], ...], timeout: float | None) -> dict[str, Any]:
    return {"metadata": md, "timeout": timeout or WRITE_DEADLINE}
