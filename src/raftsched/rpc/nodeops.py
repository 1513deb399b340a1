"""Node operations of the Cluster service (issue 15): drain and scheduling eligibility.

Validated before anything is written (the field named in the message), refused with
NOT_FOUND for a node the leader's replica does not know, then proposed through the
shared write path (forwarded to the leader, same request id on every retry). The
leader stamps the drain's absolute deadline (its clock + the asked duration).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import grpc

from raftsched.core.acl import ALL_NAMESPACES
from raftsched.core.model import Node
from raftsched.core.nodeops import DrainNode, SetEligibility
from raftsched.ports import ReplicaView
from raftsched.rpc import auth
from raftsched.rpc.writes import Writes
from raftsched.v1 import cluster_pb2, cluster_pb2_grpc

MAX_DRAIN_DEADLINE = 30 * 24 * 3600.0  # seconds


def drain_error(req: cluster_pb2.DrainNodeRequest) -> str:
    """Why a DrainNode request is invalid whatever the state ("" if it is not)."""
    if not req.node_id:
        return "node_id is required: the id of the node to drain (see `raftsched nodes`)"
    d = req.deadline_seconds
    if req.force and d:
        return f"deadline_seconds {d:g} with force: give a deadline or force, not both"
    if not req.force and (not math.isfinite(d) or d <= 0):
        return (f"deadline_seconds {d:g}: must be > 0 (how long running jobs may go on), "
                "or set force to requeue them now")
    if d > MAX_DRAIN_DEADLINE:
        return f"deadline_seconds {d:g}: at most {MAX_DRAIN_DEADLINE:g} (30 days)"
    return ""


class NodeOps:
    """The write half of the Cluster service. `info` makes a NodeInfo of a node as the
    replica has it now (the ListNodes row)."""

    def __init__(self, replica: ReplicaView, writes: Writes,
                 info: Callable[[Node], cluster_pb2.NodeInfo]) -> None:
        self.replica = replica
        self.writes = writes
        self.info = info

    async def _allowed(self, context: grpc.aio.ServicerContext, what: str) -> None:
        t = auth.principal()
        if ALL_NAMESPACES not in t.namespaces:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"{what} moves or holds back jobs of every namespace: it needs a "
                                f"token for every namespace ('*'); token {t.name!r} has only "
                                f"{', '.join(t.namespaces)}")

    async def _known(self, context: grpc.aio.ServicerContext, node_id: str, rid: str) -> None:
        with self.replica.lock:
            st = self.replica.state
            if node_id in st.nodes or rid in st.dedup:
                return
            known = ", ".join(sorted(st.nodes)) or "none yet"
        await context.abort(grpc.StatusCode.NOT_FOUND,
                            f"node_id {node_id[:64]!r}: no such node in the cluster (registered: {known})")

    def _node(self, node_id: str) -> cluster_pb2.NodeInfo:
        with self.replica.lock:
            node = self.replica.state.nodes[node_id]
        return self.info(node)

    async def drain(self, request: cluster_pb2.DrainNodeRequest,
                    context: grpc.aio.ServicerContext) -> cluster_pb2.DrainNodeResponse:
        await self._allowed(context, "draining a node")
        err = drain_error(request)
        if err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, err)

        async def local(rid: str) -> cluster_pb2.DrainNodeResponse:
            await self._known(context, request.node_id, rid)
            now = time.time()
            deadline = now if request.force else now + request.deadline_seconds
            await self.writes.propose(context, DrainNode(rid, now, request.node_id, deadline,
                                                         by=auth.principal().name))
            return cluster_pb2.DrainNodeResponse(node=self._node(request.node_id))

        return await self.writes.write(context, request, cluster_pb2_grpc.ClusterStub,
                                       "DrainNode", local)

    async def eligibility(self, request: cluster_pb2.SetNodeEligibilityRequest,
                          context: grpc.aio.ServicerContext) -> cluster_pb2.SetNodeEligibilityResponse:
        await self._allowed(context, "changing a node's eligibility")
        if not request.node_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "node_id is required: the id of the node (see `raftsched nodes`)")

        async def local(rid: str) -> cluster_pb2.SetNodeEligibilityResponse:
            await self._known(context, request.node_id, rid)
            await self.writes.propose(context, SetEligibility(rid, time.time(), request.node_id,
                                                              request.eligible,
                                                              by=auth.principal().name))
            return cluster_pb2.SetNodeEligibilityResponse(node=self._node(request.node_id))

        return await self.writes.write(context, request, cluster_pb2_grpc.ClusterStub,
                                       "SetNodeEligibility", local)
