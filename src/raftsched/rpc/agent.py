"""NodeAgent: the node-to-node service (starts, reports, heartbeats, replica status)."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import grpc
import structlog

from raftsched.commands import FinishedItem, JobsFinished, JobsStarted, StartedItem
from raftsched.model import Node, Resources
from raftsched.proposer import NotLeader, OutcomeUnknown
from raftsched.rpc import convert
from raftsched.rpc.status import replica_status
from raftsched.v1 import node_pb2, node_pb2_grpc

if TYPE_CHECKING:
    from raftsched.node import NodeRuntime

log = structlog.get_logger("raftsched.agent")


class NodeAgentServicer(node_pb2_grpc.NodeAgentServicer):
    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt

    async def StartJobs(self, request, context):
        term = self.rt.term()
        if request.term < term:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"start from stale leader {request.leader_id} (term {request.term} < {term})",
            )
        accepted = 0
        for sj in request.jobs:
            spec = convert.spec_from_pb(sj.spec)
            if self.rt.executor.start(sj.job_id, sj.attempt, sj.fencing_token, spec):
                accepted += 1
        return node_pb2.StartJobsResponse(accepted=accepted)

    async def ReportJobs(self, request, context):
        if not self.rt.is_leader():
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.rt.me.id} is not the leader")
        started: list[StartedItem] = []
        finished: list[FinishedItem] = []
        for r in request.reports:
            if r.kind == node_pb2.STARTED:
                started.append(StartedItem(r.job_id, r.attempt, r.fencing_token))
            elif r.kind == node_pb2.FINISHED:
                finished.append(
                    FinishedItem(
                        r.job_id,
                        r.attempt,
                        r.fencing_token,
                        r.exit_code if r.has_exit_code else None,
                        r.timed_out,
                        r.error,
                        r.stdout_tail,
                        r.stderr_tail,
                    )
                )
        now = time.time()
        finished = self.rt.leader.stamp_retries(finished, now)
        try:
            # STARTED before FINISHED: a finish in the same batch then finds RUNNING.
            if started:
                await self.rt.propose(JobsStarted(uuid.uuid4().hex, now, tuple(started)))
            if finished:
                await self.rt.propose(JobsFinished(uuid.uuid4().hex, now, tuple(finished)))
        except (NotLeader, OutcomeUnknown) as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"reports not committed: {e}")
        return node_pb2.ReportJobsResponse(accepted=len(request.reports))

    async def Heartbeat(self, request, context):
        if not self.rt.is_leader():
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.rt.me.id} is not the leader")
        if self.rt.cfg.node_by_raft(request.raft_address) is None:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"node {request.node_id} ({request.raft_address}) is not in the cluster config",
            )
        node = Node(
            id=request.node_id,
            grpc_address=request.grpc_address,
            raft_address=request.raft_address,
            capacity=Resources(request.capacity.cpu_millis, request.capacity.memory_mib),
            labels=tuple(sorted(request.labels.items())),
        )
        running = [(r.job_id, r.attempt, r.fencing_token) for r in request.running]
        revoke = self.rt.leader.heartbeat(node, running)
        return node_pb2.HeartbeatResponse(
            leader_id=self.rt.me.id,
            term=self.rt.term(),
            revoke=[
                node_pb2.RunningAttempt(job_id=j, attempt=a, fencing_token=t)
                for j, a, t in revoke
            ],
        )

    async def GetReplicaStatus(self, request, context):
        return node_pb2.ReplicaStatusResponse(status=await replica_status(self.rt))
