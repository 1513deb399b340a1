"""This node's replica status: Raft position and a digest of the applied state."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from raftsched.core.state import state_digest
from raftsched.replica.raft_node import raft_role
from raftsched.v1 import cluster_pb2

if TYPE_CHECKING:
    from raftsched.node.runtime import NodeRuntime

_cache: dict[int, tuple[int, str]] = {}


async def replica_status(rt: NodeRuntime, with_digest: bool = True) -> cluster_pb2.ReplicaStatus:
    """Raft position of this replica; with its state digest (O(state): only on request)."""
    with rt.sm.lock:
        state = rt.sm.state
        index = state.applied_index
        cached = _cache.get(id(rt))
        fresh = cached is not None and cached[0] == index
        snapshot = state.to_dict() if with_digest and not fresh else None
    digest = ""
    if fresh:
        digest = cached[1]  # type: ignore[index]
    elif snapshot is not None:
        digest = await asyncio.to_thread(_digest_of, snapshot)
        _cache[id(rt)] = (index, digest)
    so = rt.syncobj
    return cluster_pb2.ReplicaStatus(
        node_id=rt.me.id,
        reachable=True,
        raft_state=raft_role(so),
        term=int(so.raftCurrentTerm),
        commit_index=int(so.raftCommitIndex),
        applied_index=index,
        state_digest=digest,
    )


def _digest_of(d: dict) -> str:
    return state_digest(d)
