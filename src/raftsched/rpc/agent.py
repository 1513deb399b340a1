"""NodeAgent: the node-to-node service (starts, reports, heartbeats, replica status)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import grpc
import structlog

from raftsched.config import ClusterConfig
from raftsched.core import reconcile
from raftsched.core.commands import FinishedItem, JobsFinished, JobsStarted, StartedItem
from raftsched.core.members import Member, members_of
from raftsched.core.model import JobSpec
from raftsched.node.lease import Lease
from raftsched.ports import LeaderDuties, Propose, RaftStatus, ReplicaView, Runner
from raftsched.replica.proposer import NotLeader, OutcomeUnknown
from raftsched.rpc import bounds, convert
from raftsched.rpc.control import HeartbeatDesk
from raftsched.rpc.convert_members import member_to_pb
from raftsched.rpc.freshness import CONSISTENT_DEADLINE, Freshness, Unavailable
from raftsched.rpc.identity import NodeIdentity
from raftsched.rpc.refusal import NO_LEASE, Refused
from raftsched.rpc.status import ReplicaStatus
from raftsched.v1 import node_pb2, node_pb2_grpc

log = structlog.get_logger("raftsched.agent")


async def _bounded(context: grpc.aio.ServicerContext, request: object) -> None:
    """Every field within its bounds (rpc/bounds.py), else INVALID_ARGUMENT naming it."""
    err = bounds.check(request)
    if err:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, err)


class NodeAgentServicer(node_pb2_grpc.NodeAgentServicer):
    """Every call is checked first: the caller's certificate must be the node the request
    names (StartJobs: the leader this node follows). Nothing is read before that."""

    def __init__(self, cfg: ClusterConfig, me_id: str, incarnation: str, raft: RaftStatus,
                 proposer: Propose, lease: Lease, runner: Runner, leader: LeaderDuties,
                 status: ReplicaStatus, replica: ReplicaView,
                 freshness: Freshness | None = None,
                 members: Callable[[], tuple[list[Member], bool]] | None = None) -> None:
        self.cfg = cfg
        self.members = members
        self.identity = NodeIdentity.of(cfg)
        self.replica = replica
        self.me_id = me_id
        self.incarnation = incarnation
        self.raft = raft
        self.proposer = proposer
        self.lease = lease
        self.runner = runner
        self.leader = leader
        self.status = status
        self.refused_reports = 0
        self.freshness = freshness
        self.heartbeats = HeartbeatDesk(cfg, me_id, raft, leader)

    async def StartJobs(self, request, context):
        await self.identity.require(context, request.leader_id)
        await _bounded(context, request)
        try:
            return await self.start(request)
        except Refused as e:
            await context.abort(e.code, e.details)

    async def start(self, request: node_pb2.StartJobsRequest) -> node_pb2.StartJobsResponse:
        """The fenced start of a leader's StartJobsRequest, also called directly by this
        node's own leader (rpc/peer.py: no gRPC round trip to itself). Refused: the
        whole request is (a stale leader, another incarnation or generation, no lease)."""
        lc = self.raft.leader_config()
        if self.cfg.tls and (lc is None or lc.id != request.leader_id):
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"{request.leader_id} is not the leader {self.me_id} follows")
        term = self.raft.term()
        if request.term < term:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"start from stale leader {request.leader_id} (term {request.term} < {term})")
        if request.incarnation and request.incarnation != self.incarnation:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"starts meant for an earlier process of {self.me_id} "
                          f"(incarnation {request.incarnation}, now {self.incarnation})")
        if not self.lease.valid():
            raise Refused(grpc.StatusCode.UNAVAILABLE,
                          f"{self.me_id} {NO_LEASE}; it starts nothing until it renews")
        if request.generation != self.lease.generation:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          f"start for generation {request.generation} of {self.me_id}, which is at "
                          f"generation {self.lease.generation}: refused (late or early delivery)")
        accepted = 0
        converted: dict[bytes, JobSpec] = {}  # a large spec repeated: converted once
        for i, sj in enumerate(request.jobs):
            if i and i % 32 == 0:
                # Spawning is ~0.5 ms a process: let heartbeats, reports and the
                # leader loop run between groups of a large batch.
                await asyncio.sleep(0)
                if not self.lease.valid():
                    break  # the lease ran out meanwhile: the rest is refused (re-sent later)
            with self.replica.lock:
                stale = reconcile.stale_start(self.replica.state, self.me_id, sj.job_id, sj.attempt, sj.fencing_token)
            if stale:  # the leader's fence should have kept it back: a second line of defence
                log.warning("stale start refused", job=sj.job_id, attempt=sj.attempt,
                            token=sj.fencing_token, leader=request.leader_id, why=stale)
                continue
            spec = convert.spec_from_pb_cached(sj.spec, request=converted)
            if self.runner.start(sj.job_id, sj.attempt, sj.fencing_token, spec):
                accepted += 1
        return node_pb2.StartJobsResponse(accepted=accepted)

    async def ReportJobs(self, request, context):
        await self.identity.require(context, request.node_id)
        try:
            return await self.report(request)
        except Refused as e:
            await context.abort(e.code, e.details)

    async def report(self, request: node_pb2.ReportJobsRequest) -> node_pb2.ReportJobsResponse:
        """A node's reports, proposed on this (leading) node: ReportJobs once the caller's
        certificate is checked, or called directly by this node's own reporter (rpc/peer.py:
        no gRPC round trip to itself). Refused: the whole request is (out of bounds, not
        the leader, not committed)."""
        err = bounds.check(request)
        if err:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, err)
        if not self.raft.is_leader():
            raise Refused(grpc.StatusCode.UNAVAILABLE, f"{self.me_id} is not the leader")
        started: list[StartedItem] = []
        finished: list[FinishedItem] = []
        jobs = self.replica.state.jobs
        for r in request.reports:
            job = jobs.get(r.job_id)
            if (job is not None and (r.attempt, r.fencing_token) == (job.attempt, job.fencing_token)
                    and job.node_id != request.node_id):
                # The current assignment (its token is readable by clients) belongs to another
                # node: only that node reports on it. Anything else (stale attempts, a replica
                # not caught up yet) the state machine decides with the fencing token.
                self.refused_reports += 1
                log.warning("report refused: the attempt is assigned to another node",
                            node=request.node_id, job=r.job_id, assigned=job.node_id)
                continue
            if r.kind == node_pb2.STARTED:
                started.append(StartedItem(r.job_id, r.attempt, r.fencing_token, r.isolation[:512]))
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
                        r.lost,
                        oom_killed=r.oom_killed,
                        result=r.result_json,
                    )
                )
        now = time.time()
        finished = self.leader.stamp_retries(finished, now)
        try:
            # STARTED before FINISHED: a finish in the same batch then finds RUNNING. Both
            # are queued together: one entry, one commit round (a short job's two reports
            # usually come in one batch).
            cmds = [JobsStarted(uuid.uuid4().hex, now, tuple(started))] if started else []
            cmds += [JobsFinished(uuid.uuid4().hex, now, tuple(finished))] if finished else []
            outs = await self.proposer.propose_all(list(cmds)) if cmds else []
            results = [pair for cmd, res in zip(cmds, outs, strict=True)
                       for pair in zip(cmd.items, res.value or (), strict=False)]
            for item, why in results:
                if why:  # refused by the state machine, e.g. a stale fencing token
                    self.refused_reports += 1
                    log.warning("report refused", node=request.node_id, job=item.job_id,
                                attempt=item.attempt, token=item.token, reason=why)
        except (NotLeader, OutcomeUnknown) as e:
            raise Refused(grpc.StatusCode.UNAVAILABLE, f"reports not committed: {e}") from None
        return node_pb2.ReportJobsResponse(accepted=len(request.reports))

    async def Heartbeat(self, request, context):
        """The same answer as the control port's (rpc/control.py), for nodes that send
        their heartbeats here (older versions)."""
        await self.identity.require(context, request.node_id)
        try:
            return self.heartbeats.answer(request)
        except Refused as e:
            await context.abort(e.code, e.details)

    async def GetReplicaStatus(self, request, context):
        await self.identity.require(context)
        return node_pb2.ReplicaStatusResponse(status=await self.status.report())

    async def GetMembers(self, request, context):
        """A joining node (`raftsched node --join`) learns the member list; its certificate
        must name a member already added (the identity check reads the replicated list)."""
        await self.identity.require(context, request.node_id)
        await _bounded(context, request)
        if self.members is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "membership is not served here")
        assert self.members is not None
        members, _ = self.members()
        with self.replica.lock:
            version = members_of(self.replica.state).version
        return node_pb2.GetMembersResponse(members=[member_to_pb(m) for m in members],
                                           version=version)

    async def ReadIndex(self, request, context):
        """A follower serving a consistent read asks the leader for its read index."""
        await self.identity.require(context, request.node_id)
        await _bounded(context, request)
        if self.freshness is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.me_id} serves no read index")
        assert self.freshness is not None
        budget = min(CONSISTENT_DEADLINE, context.time_remaining() or CONSISTENT_DEADLINE)
        try:
            index, term = await self.freshness.leader_read_index(time.monotonic() + budget)
        except Unavailable as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
        return node_pb2.ReadIndexResponse(read_index=index, term=term)
