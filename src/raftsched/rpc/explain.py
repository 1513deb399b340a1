"""ExplainJob and PlanJob: placement explanations from this node's replica.

Pure read: the servicer hands over its replica view, the cluster config and
this node's id; `core.explain` does the work under the lock in
O(nodes) per job (no O(state) step on the request path).
"""

from __future__ import annotations

import time
from typing import Any

import grpc

from raftsched.config import ClusterConfig
from raftsched.core import explain, settings, validate
from raftsched.core.placement import Strategy
from raftsched.ports import ReplicaView
from raftsched.rpc import convert
from raftsched.rpc.runtimecfg import cluster_nodes
from raftsched.v1 import jobs_pb2


def _strategy(replica: ReplicaView, cfg: ClusterConfig) -> Strategy:
    """The strategy in effect (runtime override or cluster.toml). Caller holds the lock."""
    return settings.effective(replica.state, settings.base_of(cfg)).strategy


def to_pb(e: explain.Explanation, strategy: Strategy, me: str,
          applied_index: int) -> jobs_pb2.PlacementExplanation:
    return jobs_pb2.PlacementExplanation(
        job_id=e.job_id,
        state=convert.state_to_pb(e.state),  # type: ignore[arg-type]
        summary=e.summary,
        holds=list(e.holds),
        nodes=[jobs_pb2.NodeVerdict(node_id=v.node_id, check=v.check.value, detail=v.detail)
               for v in e.verdicts],
        node_id=e.node_id,
        ranked=list(e.ranked),
        avoided_node=e.avoided,
        strategy=strategy.value,
        answered_by=me,
        applied_index=applied_index,
    )


async def explain_job(replica: ReplicaView, cfg: ClusterConfig, me: str, request: Any,
                      context: grpc.aio.ServicerContext) -> jobs_pb2.PlacementExplanation:
    if not request.job_id:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_id is empty")
    with replica.lock:
        state = replica.state
        job = state.jobs.get(request.job_id)
        if job is not None:
            strategy = _strategy(replica, cfg)
            e = explain.explain_job(state, job, time.time(), strategy)
            index = state.applied_index
    if job is None:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id} not found")
    return to_pb(e, strategy, me, index)


async def plan_job(replica: ReplicaView, cfg: ClusterConfig, me: str, request: Any,
                   context: grpc.aio.ServicerContext) -> jobs_pb2.PlacementExplanation:
    if not request.HasField("spec"):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "spec is missing: give the job to plan")
    spec = convert.spec_from_pb(request.spec)
    err = validate.check_job(spec, cluster_nodes(cfg, replica))
    if err:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"spec: {err}")
    with replica.lock:
        strategy = _strategy(replica, cfg)
        e = explain.plan_spec(replica.state, spec, time.time(), strategy)
        index = replica.state.applied_index
    return to_pb(e, strategy, me, index)


def pending_reason(replica: ReplicaView, cfg: ClusterConfig, job_id: str) -> str:
    """GetJob's `pending_reason` field ("" unless the job is PENDING or WAITING)."""
    with replica.lock:
        job = replica.state.jobs.get(job_id)
        return (explain.pending_reason(replica.state, job, time.time(), _strategy(replica, cfg))
                if job else "")
