"""This node's replica status: Raft position and a digest of the applied state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from raftsched.core.state import state_digest
from raftsched.ports import RaftStatus, ReplicaView
from raftsched.v1 import cluster_pb2


class ReplicaStatus:
    def __init__(self, me_id: str, replica: ReplicaView, raft: RaftStatus,
                 job_usage: Callable[[], tuple[int, int, str]] | None = None) -> None:
        self.me_id = me_id
        self.replica = replica
        self.raft = raft
        # (cpu millicores, memory MiB) the node's jobs actually use (-1: unknown), isolation mode
        self.job_usage = job_usage or (lambda: (-1, -1, ""))
        self._digest: tuple[int, str] | None = None  # (applied index, digest at that index)

    async def report(self, with_digest: bool = True) -> cluster_pb2.ReplicaStatus:
        """Raft position of this replica; with its state digest (O(state): only on request)."""
        with self.replica.lock:
            state = self.replica.state
            index = state.applied_index
            cached = self._digest
            fresh = cached is not None and cached[0] == index
            snapshot = state.to_dict() if with_digest and not fresh else None
        digest = ""
        if cached is not None and fresh:
            digest = cached[1]
        elif snapshot is not None:
            digest = await asyncio.to_thread(state_digest, snapshot)
            self._digest = (index, digest)
        cpu_used, mem_used, isolation = self.job_usage()
        return cluster_pb2.ReplicaStatus(
            node_id=self.me_id,
            reachable=True,
            raft_state=self.raft.role(),
            term=self.raft.term(),
            commit_index=self.raft.commit_index(),
            applied_index=index,
            state_digest=digest,
            cpu_millis_used=cpu_used,
            memory_mib_used=mem_used,
            isolation=isolation,
        )
