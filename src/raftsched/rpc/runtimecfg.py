"""Runtime changes of the Cluster service (issue 15): UpdateNode (a node's labels and
capacity), GetClusterConfig / SetClusterConfig (cluster-wide scheduling settings).

Writes are admin-only (auth.METHODS), validated before anything is proposed (the message
names the field or key), then proposed through the shared write path. The readers of the
settings (`settings_now`) and of the nodes a job could ever run on (`cluster_nodes`) take
the replicated values, falling back to cluster.toml.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from raftsched.config import ClusterConfig
from raftsched.core import settings
from raftsched.core.model import Node, Resources
from raftsched.core.nodeupdate import update_error
from raftsched.core.runtimeops import SetSetting, UpdateNode
from raftsched.ports import ReplicaView
from raftsched.rpc import auth
from raftsched.rpc.writes import Writes
from raftsched.v1 import cluster_pb2, cluster_pb2_grpc


def settings_now(cfg: ClusterConfig, replica: ReplicaView) -> settings.Settings:
    """The settings in effect: the replicated overrides over cluster.toml."""
    with replica.lock:
        return settings.effective(replica.state, settings.base_of(cfg))


def cluster_nodes(cfg: ClusterConfig, replica: ReplicaView) -> list[tuple[str, dict[str, str], Resources, str]]:
    """(id, labels, capacity, dedicated pool) of every node, as the replica has it (with
    runtime changes), else as cluster.toml says: what a submitted job is checked against."""
    with replica.lock:
        known = dict(replica.state.nodes)
    out = [(k.id, dict(k.labels), k.capacity, k.dedicated) if (k := known.pop(n.id, None))
           else (n.id, n.labels, n.capacity, n.dedicated) for n in cfg.nodes]  # config order
    return out + [(k.id, dict(k.labels), k.capacity, k.dedicated) for k in known.values()]


def largest(nodes: list[tuple[str, dict[str, str], Resources, str]]) -> Resources:
    return Resources(max(n[2].cpu_millis for n in nodes), max(n[2].memory_mib for n in nodes))


def _text(v: Any) -> str:
    return str(v.value) if hasattr(v, "value") else repr(v)


class RuntimeOps:
    def __init__(self, cfg: ClusterConfig, replica: ReplicaView, writes: Writes,
                 info: Callable[[Node], cluster_pb2.NodeInfo]) -> None:
        self.cfg = cfg
        self.replica = replica
        self.writes = writes
        self.info = info

    def _settings(self) -> list[cluster_pb2.ClusterSetting]:
        base = settings.base_of(self.cfg)
        with self.replica.lock:
            o = dict(settings.overrides(self.replica.state))
        return [cluster_pb2.ClusterSetting(
            key=k, value=o.get(k) or _text(getattr(base, k)),
            source="runtime" if k in o else "cluster.toml", file_value=_text(getattr(base, k)))
            for k in settings.KEYS]

    async def get_config(self, request: cluster_pb2.GetClusterConfigRequest,
                         context: grpc.aio.ServicerContext) -> cluster_pb2.GetClusterConfigResponse:
        return cluster_pb2.GetClusterConfigResponse(settings=self._settings())

    async def set_config(self, request: cluster_pb2.SetClusterConfigRequest,
                         context: grpc.aio.ServicerContext) -> cluster_pb2.SetClusterConfigResponse:
        err = settings.key_error(request.key) if request.key else (
            f"key is required: one of {', '.join(settings.KEYS)}")
        if not err and request.reset and request.value:
            err = f"value {request.value[:64]!r} with reset: give a value or reset, not both"
        if not err and not request.reset:
            try:
                settings.parse(request.key, request.value)
            except settings.SettingError as e:
                err = str(e)
        if err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, err)

        async def local(rid: str) -> cluster_pb2.SetClusterConfigResponse:
            value = "" if request.reset else request.value
            await self.writes.propose(context, SetSetting(rid, time.time(), request.key, value,
                                                                   by=auth.principal().name))
            [row] = [s for s in self._settings() if s.key == request.key]
            return cluster_pb2.SetClusterConfigResponse(setting=row)

        return await self.writes.write(context, request, cluster_pb2_grpc.ClusterStub,
                                       "SetClusterConfig", local)

    async def update_node(self, request: cluster_pb2.UpdateNodeRequest,
                          context: grpc.aio.ServicerContext) -> cluster_pb2.UpdateNodeResponse:
        if not request.node_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "node_id is required: the id of the node (see `raftsched nodes`)")
        set_labels = tuple(sorted(request.set_labels.items()))
        remove = tuple(request.remove_labels)

        def refusal(rid: str) -> tuple[grpc.StatusCode, str] | None:
            with self.replica.lock:
                st = self.replica.state
                node = st.nodes.get(request.node_id)
                if rid in st.dedup:
                    return None
                if node is None:
                    known = ", ".join(sorted(st.nodes)) or "none yet"
                    return (grpc.StatusCode.NOT_FOUND, f"node_id {request.node_id[:64]!r}: no such "
                            f"node in the cluster (registered: {known})")
                err = update_error(node, set_labels, remove, request.cpu_millis, request.memory_mib)
            return (grpc.StatusCode.INVALID_ARGUMENT, err) if err else None

        async def local(rid: str) -> cluster_pb2.UpdateNodeResponse:
            why = refusal(rid)
            if why:
                await context.abort(*why)
            await self.writes.propose(context, UpdateNode(
                rid, time.time(), request.node_id, set_labels, remove, request.cpu_millis,
                request.memory_mib, by=auth.principal().name))
            with self.replica.lock:
                node = self.replica.state.nodes[request.node_id]
            return cluster_pb2.UpdateNodeResponse(node=self.info(node))

        return await self.writes.write(context, request, cluster_pb2_grpc.ClusterStub,
                                       "UpdateNode", local)
