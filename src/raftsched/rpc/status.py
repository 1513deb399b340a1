"""This node's replica status: Raft position and a digest of the applied state.

The digest is maintained incrementally (core.digest): taking its inputs under the
replica lock only swaps out the change log; hashing what changed runs in a worker
thread, one computation at a time. `refresh_forever` folds the change log in the
background so that a status request finds little left to hash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from raftsched.core.lagstats import LagStats
from raftsched.ports import RaftStatus, ReplicaView
from raftsched.v1 import cluster_pb2

log = structlog.get_logger("raftsched.rpc.status")


class ReplicaStatus:
    def __init__(self, me_id: str, replica: ReplicaView, raft: RaftStatus,
                 job_usage: Callable[[], tuple[int, int, str]] | None = None,
                 loop_lag: LagStats | None = None, tick_lag: LagStats | None = None) -> None:
        self.me_id = me_id
        self.loop_lag = loop_lag or LagStats()
        self.tick_lag = tick_lag or LagStats()
        self.replica = replica
        self.raft = raft
        # (cpu millicores, memory MiB) the node's jobs actually use (-1: unknown), isolation mode
        self.job_usage = job_usage or (lambda: (-1, -1, ""))
        self._digest: tuple[object, int, str] | None = None  # (state, applied index, digest)
        self._computing = asyncio.Lock()
        self.incarnation = ""  # id of this node process (node/runtime.py sets it)

    async def digest(self) -> tuple[int, str]:
        """(applied index, digest at that index); hashing runs off the event loop. While a
        computation is under way (a large change set), the last digest and its index."""
        if self._computing.locked() and self._digest is not None:
            return self._digest[1], self._digest[2]
        async with self._computing:
            with self.replica.lock:
                state = self.replica.state
                index = state.applied_index
                cached = self._digest
                if cached is not None and cached[0] is state and cached[1] == index:
                    return index, cached[2]
                work = state.digest_work()
            try:
                sums, digest = await asyncio.to_thread(work.compute)
            except BaseException:
                with self.replica.lock:
                    state.dig.abandon()
                raise
            state.dig.settle(sums)
            self._digest = (state, index, digest)
            return index, digest

    async def refresh_forever(self, period: float = 10.0) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await self.digest()
            except Exception:
                log.exception("state digest failed")

    async def report(self, with_digest: bool = True) -> cluster_pb2.ReplicaStatus:
        """Raft position of this replica, with its state digest if asked."""
        if with_digest:
            index, digest = await self.digest()
        else:
            index, digest = self.replica.state.applied_index, ""
        loop_p99, loop_max = self.loop_lag.recent_p99_max()
        tick_p99, tick_max = self.tick_lag.recent_p99_max()
        cpu_used, mem_used, isolation = self.job_usage()
        return cluster_pb2.ReplicaStatus(
            loop_lag_p99=loop_p99, loop_lag_max=loop_max, tick_lag_p99=tick_p99, tick_lag_max=tick_max,
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
            incarnation=self.incarnation,
        )
