"""Channels to the other nodes and the delivery of starts (the `ports.Peers` port)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import grpc
import structlog

from raftsched.client.credentials import ClientTLS, open_aio_channel
from raftsched.core import reconcile
from raftsched.core.model import Job
from raftsched.ports import RaftStatus, ReplicaView
from raftsched.rpc import convert
from raftsched.rpc.refusal import NO_LEASE, Refused, status_of
from raftsched.v1 import node_pb2, node_pb2_grpc

log = structlog.get_logger("raftsched.rpc.peer")

GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]
# A peer cut off by a partition drops packets instead of refusing them: without
# keepalive pings a call to it (a write forwarded to a leader that just lost its
# majority) hangs until the caller's deadline instead of failing over to the new
# leader. Pings every second, a connection silent for 2 s more is closed and its
# calls fail with UNAVAILABLE (retried elsewhere with the same request id).
KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_time_ms", 1000),
    ("grpc.keepalive_timeout_ms", 2000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_time_between_pings_ms", 1000),
]
# What servers accept from such clients (the default would answer frequent pings with
# GOAWAY "too_many_pings").
SERVER_KEEPALIVE_OPTIONS = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 500),
    ("grpc.http2.max_ping_strikes", 0),
]


MAX_STARTS_PER_CALL = 1000  # below the NodeAgent bound on StartJobsRequest.jobs (rpc/bounds.py)
MAX_START_BYTES = 8 << 20  # below the node's gRPC message limit
# seconds before each new try of starts a node refused for want of a lease: heartbeats
# come every 0.2 s by default, and the lease with the answer to one
NO_LEASE_RETRY_AFTER = (0.05, 0.1, 0.2, 0.4)


def start_parts(starts: list[node_pb2.StartJob]) -> Iterator[list[node_pb2.StartJob]]:
    """Starts for one node in calls of bounded count and size (an unconfirmed rest is re-sent)."""
    part: list[node_pb2.StartJob] = []
    size = 0
    for s in starts:
        n = s.ByteSize()
        if part and (len(part) == MAX_STARTS_PER_CALL or size + n > MAX_START_BYTES):
            yield part
            part, size = [], 0
        part.append(s)
        size += n
    if part:
        yield part


class PeerChannels:
    def __init__(self, me_id: str, replica: ReplicaView, raft: RaftStatus,
                 tls: ClientTLS | None = None) -> None:
        self.me_id = me_id
        self.tls = tls  # this node's certificate: peers know the caller is node `me_id`
        self.replica = replica
        self.raft = raft
        self._channels: dict[str, grpc.aio.Channel] = {}
        # this node's own NodeAgent.start (rpc/agent.py): its starts skip the gRPC round
        # trip to itself, through the same fence checks
        self.local_start: Callable[[node_pb2.StartJobsRequest],
                                   Awaitable[node_pb2.StartJobsResponse]] | None = None
        # and its NodeAgent.report: this node's reports while it leads, the same way
        self.local_report: Callable[[node_pb2.ReportJobsRequest],
                                    Awaitable[node_pb2.ReportJobsResponse]] | None = None

    def channel(self, addr: str) -> grpc.aio.Channel:
        ch = self._channels.get(addr)
        if ch is None:
            ch = self._channels[addr] = open_aio_channel(addr, self.tls, GRPC_OPTIONS + KEEPALIVE_OPTIONS)
        return ch

    async def send_reports(self, req: node_pb2.ReportJobsRequest) -> bool:
        """Deliver a node's reports to the leader (itself: in process). False: no leader
        known. A refusal raises grpc.aio.AioRpcError, or Refused in process."""
        lc = self.raft.leader_config()
        if lc is None:
            return False
        if lc.id == self.me_id and self.local_report is not None:
            await self.local_report(req)
        else:
            await node_pb2_grpc.NodeAgentStub(self.channel(lc.grpc)).ReportJobs(req, timeout=5.0)
        return True

    async def send_starts(self, node_id: str, jobs: list[Job], tries: int = 0) -> None:
        """Send the starts of `jobs` (records read earlier) that are still assigned to
        `node_id`, under the incarnation and generation they were assigned in. Refused
        because the node holds no lease yet (its first, or next, comes with a heartbeat):
        tried again after NO_LEASE_RETRY_AFTER[tries], from a fresh read, not after the
        leader's re-send of unconfirmed starts (RESEND_AFTER, ~1 s)."""
        if not self.raft.leader_confirmed():
            # A leader that cannot hear from a majority may be stale (e.g. just thawed
            # from SIGSTOP): its view of assignments must not start anything.
            return
        withheld: list[tuple[tuple[str, int, int], tuple[str, int, str] | None]] = []
        with self.replica.lock:  # the node and the jobs as of one applied index
            node, current = reconcile.startable(self.replica.state, node_id, jobs)
            if len(current) < len(jobs):
                # (job, attempt, token) as read -> (state, attempt, node) now
                kept, now = {j.id for j in current}, self.replica.state.jobs
                withheld = [((j.id, j.attempt, j.fencing_token),
                             (now[j.id].state.value, now[j.id].attempt, now[j.id].node_id) if j.id in now else None)
                            for j in jobs if j.id not in kept][:20]
        if withheld:
            log.info("starts withheld: attempts no longer assigned to the node", node=node_id,
                     incarnation=node.incarnation if node else None,
                     generation=node.generation if node else None, withheld=withheld)
        if node is None or not current:
            return
        jobs = current
        log.debug("sending starts", node=node_id, incarnation=node.incarnation,
                  generation=node.generation, starts=[(j.id, j.attempt, j.fencing_token) for j in jobs][:20])
        stub = node_pb2_grpc.NodeAgentStub(self.channel(node.grpc_address))
        starts = [node_pb2.StartJob(job_id=j.id, attempt=j.attempt, fencing_token=j.fencing_token,
                                    spec=convert.spec_to_pb(j.spec)) for j in jobs]
        sent = 0
        for part in start_parts(starts):
            req = node_pb2.StartJobsRequest(leader_id=self.me_id, term=self.raft.term(),
                                            incarnation=node.incarnation,
                                            generation=node.generation, jobs=part)
            try:
                if node_id == self.me_id and self.local_start is not None:
                    await self.local_start(req)
                else:
                    await stub.StartJobs(req, timeout=5.0)
            except (grpc.aio.AioRpcError, Refused) as e:
                code, details = status_of(e)
                if NO_LEASE in details and tries < len(NO_LEASE_RETRY_AFTER):
                    log.debug("starts refused: no lease yet; trying again", node=node_id, jobs=len(jobs) - sent)
                    await asyncio.sleep(NO_LEASE_RETRY_AFTER[tries])
                    await self.send_starts(node_id, jobs[sent:], tries + 1)
                    return
                log.warning("start not delivered", node=node_id, jobs=len(jobs) - sent,
                            code=str(code), details=details)
                return
            sent += len(part)

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()
