"""One raftsched node: Raft replica, gRPC server, executor, leader loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import Coroutine
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from raftsched import logs
from raftsched.config import ClusterConfig, NodeConfig
from raftsched.core.commands import Command
from raftsched.core.model import Job, JobState
from raftsched.core.state import Result
from raftsched.node.executor import Executor
from raftsched.node.leader import Leader
from raftsched.node.lease import Lease
from raftsched.node.worker import Heartbeater, Reporter
from raftsched.replica import raft_node
from raftsched.replica import watch as watchmod
from raftsched.replica.proposer import Proposer
from raftsched.rpc import convert
from raftsched.rpc.agent import NodeAgentServicer
from raftsched.rpc.events import EventsServicer
from raftsched.rpc.public import ClusterServicer, SchedulerServicer
from raftsched.rpc.workflows import WorkflowsServicer
from raftsched.v1 import (
    cluster_pb2,
    cluster_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)

log = structlog.get_logger("raftsched.node.runtime")

GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]


class NodeRuntime:
    def __init__(self, cfg: ClusterConfig, node_id: str) -> None:
        self.cfg = cfg
        self.me: NodeConfig = cfg.node(node_id)
        self.data_dir = cfg.node_data_dir(node_id)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.loop = asyncio.get_running_loop()
        self.sm = raft_node.JobStateMachine()
        self.incarnation = uuid.uuid4().hex[:12]
        self.lease = Lease(cfg.lease)
        self.reporter = Reporter(self)
        self.executor = Executor(
            self.me.id, self.data_dir, self.loop, self.reporter.push, cfg.kill_grace, self.lease
        )
        self.leader = Leader(self)
        self.heartbeater = Heartbeater(self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.sm.hooks.append(self._on_applied)
        # observability (issue 6): watch buffer fed from applied entries, metrics
        self.watch = watchmod.WatchHub()
        self.watch_leader_changes = 0
        self.sm.hooks.append(watchmod.tick_hook(self.watch, self.sm, self.loop))
        self.syncobj = raft_node.make_syncobj(cfg, self.me, self.sm)
        self.watch.floor = self.watch.last_pos = (self.sm.state.applied_index, watchmod.ENTRY_END)
        self.metrics = None
        if cfg.metrics_enabled and self.me.metrics:
            from raftsched.node.metrics import NodeMetrics

            self.metrics = NodeMetrics(self)
            self.watch.listeners.append(self.metrics.jobs.observe)
        logs.provide("term", self.term)
        self.proposer = Proposer(self.syncobj, self.sm, self.loop)
        self.server: grpc.aio.Server | None = None
        self.started_at = time.time()

    # ---- helpers used by the other parts ---------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        t = self.loop.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    def term(self) -> int:
        return int(self.syncobj.raftCurrentTerm)

    def leader_config(self) -> NodeConfig | None:
        leader = self.syncobj._getLeader()
        if leader is None:
            return None
        return self.cfg.node_by_raft(getattr(leader, "address", str(leader)))

    def is_leader(self) -> bool:
        return bool(self.syncobj._isLeader())

    def leader_confirmed(self) -> bool:
        """Leader, and heard from a majority recently enough that a lease granted now
        ends before any other leader could reassign work: a new leader needs at least
        the minimum election timeout after the followers last heard from us, then one
        heartbeat TTL, while a lease lasts `lease` < TTL. Allowing half the TTL - lease
        margin on top of the election timeout keeps the other half as safety margin.
        A leader cut off from the others thus stops renewing leases (its own too)."""
        if not self.is_leader():
            return False
        window = self.cfg.election_timeout_min + (self.cfg.heartbeat_ttl - self.cfg.lease) / 2
        horizon = time.monotonic() - window
        try:
            seen = list(self.syncobj._SyncObj__lastResponseTime.values())
        except RuntimeError:  # resized by the tick thread while we looked: ask again next time
            return False
        acks = 1 + sum(1 for t in seen if t > horizon)
        return acks > len(self.cfg.nodes) / 2

    def channel(self, addr: str) -> grpc.aio.Channel:
        ch = self._channels.get(addr)
        if ch is None:
            ch = self._channels[addr] = grpc.aio.insecure_channel(addr, options=GRPC_OPTIONS)
        return ch

    def leader_agent_stub(self) -> node_pb2_grpc.NodeAgentStub | None:
        lc = self.leader_config()
        if lc is None:
            return None
        return node_pb2_grpc.NodeAgentStub(self.channel(lc.grpc))

    async def propose(self, cmd: Command, timeout: float = 5.0) -> Result:
        return await self.proposer.propose(cmd, timeout)

    async def send_starts(self, node_id: str, jobs: list[Job]) -> None:
        node = self.sm.state.nodes.get(node_id)
        if node is None or not self.leader_confirmed():
            # A leader that cannot hear from a majority may be stale (e.g. just thawed
            # from SIGSTOP): its view of assignments must not start anything.
            return
        req = node_pb2.StartJobsRequest(
            leader_id=self.me.id,
            term=self.term(),
            incarnation=node.incarnation,
            generation=node.generation,
            jobs=[
                node_pb2.StartJob(
                    job_id=j.id,
                    attempt=j.attempt,
                    fencing_token=j.fencing_token,
                    spec=convert.spec_to_pb(j.spec),
                )
                for j in jobs
            ],
        )
        stub = node_pb2_grpc.NodeAgentStub(self.channel(node.grpc_address))
        try:
            await stub.StartJobs(req, timeout=5.0)
        except grpc.aio.AioRpcError as e:
            log.warning("start not delivered", node=node_id, jobs=len(jobs),
                        code=str(e.code()), details=e.details())

    def _on_applied(self, cmds: list[Command], results: list[Result], changes: list[Job],
                    index: int) -> None:
        # pysyncobj tick thread: hand over to the event loop, never block here.
        if self.is_leader():
            fresh = [j.id for j in changes if j.state is JobState.PENDING]
            if fresh:
                self.leader.fresh.extend(fresh)  # list.extend is atomic under the GIL
            self.loop.call_soon_threadsafe(self.leader.kick.set)

    # ---- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        # No SO_REUSEPORT: a second process must fail to bind our port rather than
        # silently share (and steal) our connections.
        self.server = grpc.aio.server(options=[*GRPC_OPTIONS, ("grpc.so_reuseport", 0)])
        scheduler_pb2_grpc.add_SchedulerServicer_to_server(SchedulerServicer(self), self.server)
        cluster_pb2_grpc.add_ClusterServicer_to_server(ClusterServicer(self), self.server)
        node_pb2_grpc.add_NodeAgentServicer_to_server(NodeAgentServicer(self), self.server)
        events_pb2_grpc.add_EventsServicer_to_server(EventsServicer(self), self.server)
        workflows_pb2_grpc.add_WorkflowsServicer_to_server(WorkflowsServicer(self), self.server)
        hs = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(hs, self.server)
        names = (
            scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"].full_name,
            cluster_pb2.DESCRIPTOR.services_by_name["Cluster"].full_name,
            node_pb2.DESCRIPTOR.services_by_name["NodeAgent"].full_name,
            events_pb2.DESCRIPTOR.services_by_name["Events"].full_name,
            workflows_pb2.DESCRIPTOR.services_by_name["Workflows"].full_name,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, self.server)
        if self.server.add_insecure_port(self.me.grpc) == 0:
            raise RuntimeError(f"cannot bind gRPC address {self.me.grpc}")
        await self.server.start()
        serving = health_pb2.HealthCheckResponse.SERVING
        for name in ("", *names[:4]):
            res = hs.set(name, serving)
            if asyncio.iscoroutine(res):
                await res
        self.proposer.start()
        for coro in (self.leader.run(), self.reporter.run(), self.heartbeater.run()):
            self.spawn(coro)
        self.spawn(watchmod.observe_leader(self._leader_and_term, self.watch, self._on_leader_change))
        if self.metrics is not None:
            self.metrics.serve(self.me.metrics)
            log.info("metrics served", address=f"http://{self.me.metrics}/metrics")
        log.info("node started", grpc=self.me.grpc, raft=self.me.raft, incarnation=self.incarnation,
                 data_dir=str(self.data_dir))

    def _leader_and_term(self) -> tuple[str, int]:
        lc = self.leader_config()
        return (lc.id if lc else "", self.term())

    def _on_leader_change(self, leader_id: str, term: int) -> None:
        self.watch_leader_changes += 1
        log.info("leader observed", leader=leader_id)

    async def stop(self) -> None:
        log.info("node stopping")
        if self.metrics is not None:
            self.metrics.stop()
        if self.server is not None:
            await self.server.stop(0.5)
        for t in list(self._tasks):
            t.cancel()
        await self.proposer.stop()
        self.executor.kill_all_now()
        self.lease.close()
        for ch in self._channels.values():
            await ch.close()
        self.syncobj.destroy()


async def serve(cfg: ClusterConfig, node_id: str) -> None:
    rt = NodeRuntime(cfg, node_id)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        rt.loop.add_signal_handler(sig, stop.set)
    await rt.start()
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await rt.stop()
