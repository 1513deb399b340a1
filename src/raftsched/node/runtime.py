"""One raftsched node: Raft replica, gRPC server, executor, leader loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from raftsched import logs
from raftsched.config import ClusterConfig, ConfigError, NodeConfig
from raftsched.core.commands import Command
from raftsched.core.lagstats import LagStats
from raftsched.core.model import Job, JobState
from raftsched.core.state import Result
from raftsched.node import acl_bootstrap, certs, isolation, priority
from raftsched.node.executor import Executor
from raftsched.node.exposure import exposure_problems
from raftsched.node.heartbeat import Heartbeater
from raftsched.node.jobenv import Scratch
from raftsched.node.lag import monitor_loop
from raftsched.node.leader import Leader
from raftsched.node.lease import Lease
from raftsched.node.members import LiveMembers, fetch_for_join, has_raft_data, load_persisted
from raftsched.node.pytasks.pool import PyPool
from raftsched.node.worker import Reporter
from raftsched.replica import raft_node
from raftsched.replica import watch as watchmod
from raftsched.replica.proposer import Proposer
from raftsched.rpc import event_encoding as events_rpc
from raftsched.rpc.acl import AclServicer
from raftsched.rpc.agent import NodeAgentServicer
from raftsched.rpc.auth import AuthInterceptor
from raftsched.rpc.bounds import MAX_MESSAGE_BYTES
from raftsched.rpc.cluster import ClusterServicer
from raftsched.rpc.control import ControlServer, HeartbeatDesk
from raftsched.rpc.events import EventsServicer
from raftsched.rpc.freshness import Freshness, FreshnessInterceptor
from raftsched.rpc.identity import NodeIdentity, node_client_tls, server_credentials
from raftsched.rpc.limits import ReadLimiter, StreamLimiter, helper_processes
from raftsched.rpc.members import MembersOps
from raftsched.rpc.peer import GRPC_OPTIONS, SERVER_KEEPALIVE_OPTIONS, PeerChannels
from raftsched.rpc.public import SchedulerServicer
from raftsched.rpc.status import ReplicaStatus
from raftsched.rpc.workflows import WorkflowsServicer
from raftsched.rpc.writes import Writes
from raftsched.v1 import (
    acl_pb2,
    acl_pb2_grpc,
    cluster_pb2,
    cluster_pb2_grpc,
    events_pb2,
    node_pb2,
    node_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)

log = structlog.get_logger("raftsched.node.runtime")

class NodeRuntime:
    """Builds this node's parts and hands each consumer the ports it uses."""

    def __init__(self, cfg: ClusterConfig, node_id: str) -> None:
        self.cfg = cfg
        self.me: NodeConfig = cfg.node(node_id)
        self.data_dir = cfg.node_data_dir(node_id)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.sm = raft_node.JobStateMachine()
        self.incarnation = uuid.uuid4().hex[:12]
        self._tasks: set[asyncio.Task[Any]] = set()
        self.sm.hooks.append(self._on_applied)
        # observability (issue 6): watch buffer fed from applied entries, metrics
        self.watch = watchmod.WatchHub()
        self.leader_changes = 0
        self.sm.hooks.append(watchmod.tick_hook(self.watch, self.sm, self.loop))
        self.members = LiveMembers(cfg, self.me.id, self.sm)
        self.sm.hooks.append(self.members.refresh)
        self.sm.restore_hooks.append(self.members.refresh)
        self.raft = raft_node.RaftNode(cfg, self.me, self.sm, self.loop)
        self.watch.floor = self.watch.last_pos = (self.sm.state.applied_index, watchmod.ENTRY_END)
        logs.provide("term", self.raft.term)
        self.proposer = Proposer(self.raft.is_leader, self.sm, self.loop)
        self.peers = PeerChannels(self.me.id, self.sm, self.raft, node_client_tls(cfg, node_id))
        self.writes = Writes(self.me.id, self.sm, self.raft, self.proposer, self.peers,
                             NodeIdentity.of(cfg))
        self.freshness = Freshness(cfg, self.me.id, self.sm, self.raft, self.peers)
        self.loop_lag = LagStats()
        self.reads = ReadLimiter()
        self.streams = StreamLimiter()
        self.helpers = helper_processes(1)
        self.previews = ReadLimiter(executor=self.helpers)
        self.status = ReplicaStatus(self.me.id, self.sm, self.raft, lambda: self.executor.actual_use(),
                                    self.loop_lag, self.raft.tick_lag)
        self.status.incarnation = self.incarnation
        self.lease = Lease(cfg.lease)
        self.reporter = Reporter(self.me.id, self.peers)
        self.executor = Executor(
            self.me.id, self.data_dir, self.loop, self.reporter.push, cfg.kill_grace, self.lease,
            isolation.detect(self.me.id, cfg.isolation.mode), cfg.isolation,
            scratch=Scratch(self.data_dir, cfg.job_retention), allowed_run_as=self.me.allowed_run_as,
        )
        self.executor.pytasks = PyPool(self.me.id, self.me.python, self.data_dir, self.loop,
                                       self.reporter.push, self.lease, self.executor.isolation,
                                       self.executor.scratch, cfg.isolation.pids_limit)
        self.leader = Leader(cfg, self.sm, self.raft, self.proposer, self.peers, self.spawn)
        self.heartbeater = Heartbeater(self.me, cfg.heartbeat_interval, self.incarnation,
                                       self._leader_control, node_client_tls(cfg, node_id),
                                       self.executor, self.lease, self.loop, cfg.critical_nice)
        self.heartbeat_desk = HeartbeatDesk(cfg, self.me.id, self.raft, self.leader)
        self.control = ControlServer(cfg, self.me.id, self.me.control, self.heartbeat_desk.answer,
                                     lambda: priority.favour_me(cfg.critical_nice, "control"))
        priority.favour(self.raft.tick_thread_id(), cfg.critical_nice, "raft tick")
        self.metrics = None
        if cfg.metrics_enabled and self.me.metrics:
            from raftsched.node.metrics import NodeMetrics, Sources

            self.metrics = NodeMetrics(Sources(
                self.me.id, cfg.heartbeat_interval, self.sm, self.raft, self.leader,
                self.proposer.stats, self.executor, self.watch, lambda: self.leader_changes,
                self.loop_lag, self.raft.tick_lag, self.lease, self.heartbeat_desk.refusals,
            ))
            self.watch.listeners.append(self.metrics.jobs.observe)
        self.server: grpc.aio.Server | None = None
        self.started_at = time.time()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` on the event loop; callable from any thread (the control port's
        heartbeat handler proposes NodeUp through here)."""
        if threading.get_ident() != self._loop_thread:
            self.loop.call_soon_threadsafe(self.spawn, coro)
            return
        t = self.loop.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _leader_control(self) -> str | None:
        lc = self.raft.leader_config()
        return lc.control if lc is not None else None

    def _servicers(self) -> list[tuple[Callable[[Any, grpc.aio.Server], None], Any]]:
        cfg, me, sm = self.cfg, self.me.id, self.sm
        agent = NodeAgentServicer(cfg, me, self.incarnation, self.raft, self.proposer, self.lease,
                                  self.executor, self.leader, self.status, sm, self.freshness,
                                  self.members.current)
        self.peers.local_start = agent.start  # this node's starts, without a gRPC call to itself
        self.peers.local_report = agent.report  # and its reports while it leads
        return [
            (scheduler_pb2_grpc.add_SchedulerServicer_to_server,
             SchedulerServicer(cfg, sm, self.writes, self.reads, self.leader.submit_placer)),
            (cluster_pb2_grpc.add_ClusterServicer_to_server,
             ClusterServicer(cfg, me, sm, self.raft, self.peers, self.leader, self.status,
                             self.writes, self.reads, self.freshness,
                             MembersOps(me, sm, self.raft, self.writes, self.members.current))),
            (node_pb2_grpc.add_NodeAgentServicer_to_server, agent),
            (events_rpc.add_to_server,
             EventsServicer(cfg, me, self.data_dir, sm, self.raft, self.peers, self.watch,
                            self.executor, self.reads, self.streams)),
            (workflows_pb2_grpc.add_WorkflowsServicer_to_server,
             WorkflowsServicer(cfg, sm, self.writes, self.reads, self.previews)),
            (acl_pb2_grpc.add_AclServicer_to_server, AclServicer(sm, self.writes)),
        ]

    def _on_applied(self, cmds: list[Command], results: list[Result], changes: list[Job],
                    index: int) -> None:
        # pysyncobj tick thread: hand over to the event loop, never block here.
        if self.raft.is_leader():
            fresh = [j.id for j in changes if j.state is JobState.PENDING]
            if fresh:
                self.leader.fresh.extend(fresh)  # list.extend is atomic under the GIL
            self.loop.call_soon_threadsafe(self.leader.kick.set)

    # ---- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        # A thread waiting for the GIL gets it within this long (default 5 ms): worker
        # threads doing O(state) reads then delay the event loop and the Raft tick less.
        sys.setswitchinterval(0.001)
        # No SO_REUSEPORT: a second process must fail to bind our port rather than
        # silently share (and steal) our connections.
        # Deliberate message bounds: a request larger than MAX_MESSAGE_BYTES is refused by
        # gRPC (RESOURCE_EXHAUSTED) before it is parsed; `limits` bounds every field below it.
        options = [o for o in GRPC_OPTIONS if o[0] != "grpc.max_receive_message_length"]
        self.server = grpc.aio.server(
            options=[*options, ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                     *SERVER_KEEPALIVE_OPTIONS, ("grpc.so_reuseport", 0)],
            interceptors=[AuthInterceptor(self.sm, self.cfg.acl, self._caught_up),
                          FreshnessInterceptor(self.freshness)])
        for add, servicer in self._servicers():
            add(servicer, self.server)
        hs = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(hs, self.server)
        names = (
            scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"].full_name,
            cluster_pb2.DESCRIPTOR.services_by_name["Cluster"].full_name,
            node_pb2.DESCRIPTOR.services_by_name["NodeAgent"].full_name,
            events_pb2.DESCRIPTOR.services_by_name["Events"].full_name,
            workflows_pb2.DESCRIPTOR.services_by_name["Workflows"].full_name,
            acl_pb2.DESCRIPTOR.services_by_name["Acl"].full_name,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, self.server)
        if self.cfg.tls:
            port = self.server.add_secure_port(self.me.grpc, server_credentials(self.cfg, self.me.id))
        else:
            port = self.server.add_insecure_port(self.me.grpc)
        if port == 0:
            raise RuntimeError(f"cannot bind gRPC address {self.me.grpc}")
        await self.server.start()
        serving = health_pb2.HealthCheckResponse.SERVING
        for name in ("", *names[:6]):
            res = hs.set(name, serving)
            if asyncio.iscoroutine(res):
                await res
        self.proposer.start()
        assert self.executor.pytasks is not None
        self.executor.pytasks.start()
        self.control.start()
        self.heartbeater.start()
        for coro in (self.leader.run(), self.leader.watch_stalls(), self.reporter.run(),
                     monitor_loop(self.loop_lag), self.status.refresh_forever()):
            self.spawn(coro)
        token = acl_bootstrap.bootstrap_file(self.cfg)
        if token is not None:
            self.spawn(acl_bootstrap.bootstrap_from_file(token, self.sm, self.raft, self.proposer))
        self.spawn(watchmod.observe_leader(self._leader_and_term, self.watch, self._on_leader_change))
        if self.metrics is not None:
            self.metrics.serve(self.me.metrics)
            log.info("metrics served", address=f"http://{self.me.metrics}/metrics")
        log.info("node started", grpc=self.me.grpc, raft=self.me.raft, control=self.me.control,
                 incarnation=self.incarnation,
                 data_dir=str(self.data_dir))

    def _caught_up(self) -> bool:
        """A leader is known and this replica has applied what it knows to be committed."""
        return (self.raft.leader_config() is not None
                and self.sm.state.applied_index >= self.raft.commit_index())

    def _leader_and_term(self) -> tuple[str, int]:
        lc = self.raft.leader_config()
        return (lc.id if lc else "", self.raft.term())

    def _on_leader_change(self, leader_id: str, term: int) -> None:
        self.leader_changes += 1
        log.info("leader observed", leader=leader_id)

    async def stop(self) -> None:
        log.info("node stopping")
        if self.metrics is not None:
            self.metrics.stop()
        if self.server is not None:
            await self.server.stop(0.5)
        self.heartbeater.stop()
        self.control.stop()
        for t in list(self._tasks):
            t.cancel()
        await self.proposer.stop()
        self.executor.close()
        self.helpers.shutdown(wait=False, cancel_futures=True)
        self.lease.close()
        await self.peers.close()
        self.raft.destroy()


def prepare(cfg: ClusterConfig, node_id: str) -> None:
    """Before anything listens: refuse an exposed node without TLS, ACLs and a strong
    secret (unless `insecure_i_know`), make new files private, and give a local
    cluster its certificates on first start."""
    problems = exposure_problems(cfg, node_id)
    if problems and not cfg.insecure_i_know:
        raise ConfigError("; ".join(problems) + ". Fix it, or set [cluster] insecure_i_know = true "
                          "to run exposed anyway")
    for p in problems:
        log.warning("INSECURE: " + p + " (insecure_i_know = true)")
    os.umask(0o077)  # journal, snapshot, output, certificates: 0600 in 0700 directories
    certs.private_dir(cfg.data_dir)
    certs.make_private(cfg.node_data_dir(node_id))
    certs.ensure_local(cfg)


async def serve(cfg: ClusterConfig, node_id: str, join: str = "") -> None:
    if load_persisted(cfg, node_id):
        log.info("member list from the data dir", members=sorted(n.id for n in cfg.nodes))
    elif join:
        if has_raft_data(cfg, node_id):
            raise ConfigError(f"--join needs an empty data dir; {cfg.node_data_dir(node_id)} "
                              "holds Raft data but no member list")
        await fetch_for_join(cfg, node_id, join)
    prepare(cfg, node_id)
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
