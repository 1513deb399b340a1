"""Public gRPC service Cluster: nodes (with the leader's view of heartbeats) and the
cluster's status (Raft position, job counts, optionally every replica's digest); node
drain and eligibility (rpc/nodeops.py); runtime changes (rpc/runtimecfg.py);
membership (rpc/members.py)."""

from __future__ import annotations

import asyncio
import time

import grpc

from raftsched.config import ClusterConfig
from raftsched.core.model import JobState, Node
from raftsched.ports import LeaderDuties, Peers, RaftStatus, ReplicaView
from raftsched.rpc import convert
from raftsched.rpc.freshness import Freshness
from raftsched.rpc.limits import ReadLimiter
from raftsched.rpc.members import MembersOps
from raftsched.rpc.nodeops import NodeOps
from raftsched.rpc.runtimecfg import RuntimeOps
from raftsched.rpc.snapshot import SnapshotSaver
from raftsched.rpc.status import ReplicaStatus
from raftsched.rpc.writes import Writes
from raftsched.v1 import cluster_pb2, cluster_pb2_grpc, node_pb2, node_pb2_grpc


class ClusterServicer(cluster_pb2_grpc.ClusterServicer):
    def __init__(self, cfg: ClusterConfig, me_id: str, replica: ReplicaView, raft: RaftStatus,
                 peers: Peers, leader: LeaderDuties, status: ReplicaStatus, writes: Writes,
                 reads: ReadLimiter | None = None, freshness: Freshness | None = None,
                 members: MembersOps | None = None) -> None:
        self.cfg = cfg
        self.me_id = me_id
        self.replica = replica
        self.raft = raft
        self.peers = peers
        self.leader = leader
        self.status = status
        self.snapshots = SnapshotSaver(cfg, me_id, replica, raft, reads or ReadLimiter(), freshness)
        self.ops = NodeOps(replica, writes, self._info)
        self.members = members
        self.runtime = RuntimeOps(cfg, replica, writes, self._info)

    def _info(self, n: Node) -> cluster_pb2.NodeInfo:
        """One registered node as ListNodes shows it."""
        with self.replica.lock:
            u = self.replica.state.usage.get(n.id)
            alloc, running = (u.as_resources(), len(u.jobs)) if u else (convert.Resources(0, 0), 0)
        seen = self.leader.last_seen.get(n.id) if self.raft.is_leader() else None
        age = max(0.0, time.monotonic() - seen) if seen is not None else -1.0
        return convert.node_to_pb(n, alloc, running, age)

    async def DrainNode(self, request, context):
        return await self.ops.drain(request, context)

    async def UpdateNode(self, request, context):
        return await self.runtime.update_node(request, context)

    async def GetClusterConfig(self, request, context):
        return await self.runtime.get_config(request, context)

    async def SetClusterConfig(self, request, context):
        return await self.runtime.set_config(request, context)

    async def SetNodeEligibility(self, request, context):
        return await self.ops.eligibility(request, context)

    async def _members(self, context: grpc.aio.ServicerContext) -> MembersOps:
        if self.members is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "membership is not served here")
        assert self.members is not None
        return self.members

    async def ListMembers(self, request, context):
        return await (await self._members(context)).list_members(request, context)

    async def AddMember(self, request, context):
        return await (await self._members(context)).add(request, context)

    async def RemoveMember(self, request, context):
        return await (await self._members(context)).remove(request, context)

    async def ListNodes(self, request, context):
        st = self.replica.state
        now = time.monotonic()
        out = []
        with self.replica.lock:
            registered = dict(st.nodes)
            usage = {nid: (u.as_resources(), len(u.jobs)) for nid, u in st.usage.items()}
        leader_view = self.leader.last_seen if self.raft.is_leader() else {}
        for nc in self.cfg.nodes:
            n = registered.pop(nc.id, None)
            if n is None:
                info = cluster_pb2.NodeInfo(
                    id=nc.id, grpc_address=nc.grpc, raft_address=nc.raft,
                    capacity=convert.resources_to_pb(nc.capacity), alive=False,
                    labels=nc.labels, last_heartbeat_age=-1, dedicated_pool=nc.dedicated,
                    eligible=True, scheduling="eligible",
                )
                out.append(info)
                continue
            alloc, running = usage.get(n.id, (convert.Resources(0, 0), 0))
            seen = leader_view.get(n.id)
            age = max(0.0, now - seen) if seen is not None else -1.0
            out.append(convert.node_to_pb(n, alloc, running, age))
        for n in registered.values():  # registered but no longer in the config
            alloc, running = usage.get(n.id, (convert.Resources(0, 0), 0))
            out.append(convert.node_to_pb(n, alloc, running, -1.0))
        return cluster_pb2.ListNodesResponse(nodes=out)

    async def ClusterStatus(self, request, context):
        mine = await self.status.report(with_digest=request.include_replicas)
        lc = self.raft.leader_config()
        with self.replica.lock:
            counts = {s.value: self.replica.state.counts.get(s, 0) for s in JobState}
        resp = cluster_pb2.ClusterStatusResponse(
            node_id=self.me_id,
            leader_id=lc.id if lc else "",
            leader_address=lc.grpc if lc else "",
            term=mine.term,
            commit_index=mine.commit_index,
            applied_index=mine.applied_index,
            state_digest=mine.state_digest,
            jobs_by_state=counts,
        )
        if request.include_replicas:
            resp.replicas.extend(await asyncio.gather(*(self._peer(nc) for nc in self.cfg.nodes)))
        return resp

    async def _peer(self, nc) -> cluster_pb2.ReplicaStatus:
        if nc.id == self.me_id:
            return await self.status.report()
        stub = node_pb2_grpc.NodeAgentStub(self.peers.channel(nc.grpc))
        try:
            resp = await stub.GetReplicaStatus(node_pb2.ReplicaStatusRequest(), timeout=5.0)
            return resp.status
        except grpc.aio.AioRpcError as e:
            return cluster_pb2.ReplicaStatus(node_id=nc.id, reachable=False,
                                             error=e.details() or str(e.code()))

    async def SaveSnapshot(self, request, context):
        async for chunk in self.snapshots.stream(request, context):
            yield chunk
