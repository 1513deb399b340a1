"""The control port: node heartbeats, answered on threads of their own.

Everything else a node serves runs on its asyncio event loop, and a burst of heavy
requests (thousands of watch streams, a 10k-job batch, a listing of 100k jobs) can
keep that loop's queue a second deep. A heartbeat answered a second late costs a
lease: the sender's watchdog kills its jobs and the leader declares it down (issue
12). So the heartbeat exchange, the only thing leases and liveness depend on, has
its own listener (each node's `control` address, default: its gRPC port + 100): a
synchronous gRPC server whose handler runs on a small thread pool, and the sender
(node/worker.Heartbeater) is a thread too. A heartbeat waits for the GIL (handed
over every millisecond, see NodeRuntime.start), never for the event loop's queue.

Same mutual TLS as the main port; only node certificates are accepted, and the
request must name the node of its certificate. The method is NodeAgent.Heartbeat
(same messages as on the main port, which still answers it for older nodes).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import structlog

from raftsched.config import ClusterConfig
from raftsched.core.model import Node, Resources
from raftsched.ports import LeaderDuties, RaftStatus
from raftsched.rpc import bounds
from raftsched.rpc.identity import NodeIdentity, server_credentials
from raftsched.rpc.peer import SERVER_KEEPALIVE_OPTIONS
from raftsched.rpc.refusal import Refused
from raftsched.v1 import node_pb2

log = structlog.get_logger("raftsched.rpc.control")

SERVICE = node_pb2.DESCRIPTOR.services_by_name["NodeAgent"].full_name
MAX_REQUEST_BYTES = 4 << 20  # a heartbeat lists the attempts its node runs; bounds.py caps it
WORKERS = 4  # one heartbeat every 0.2 s per node: a few threads answer a large cluster


class HeartbeatDesk:
    """The leader's answer to a heartbeat; safe to call from any thread (Leader.heartbeat
    takes the replica lock and hands Raft proposals to the event loop)."""

    def __init__(self, cfg: ClusterConfig, me_id: str, raft: RaftStatus, leader: LeaderDuties) -> None:
        self.cfg = cfg
        self.me_id = me_id
        self.raft = raft
        self.leader = leader
        # heartbeats answered without a lease, by reason (metrics: raftsched_lease_refusals)
        self.refusals = {"unconfirmed": 0, "node_down": 0}

    def answer(self, request: node_pb2.HeartbeatRequest) -> node_pb2.HeartbeatResponse:
        err = bounds.check(request)
        if err:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, err)
        known = {n.id: n for n in self.cfg.nodes}.get(request.node_id)
        if known is None or (known.raft, known.grpc) != (request.raft_address, request.grpc_address):
            raise Refused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"node {request.node_id!r} at {request.raft_address}/{request.grpc_address} "
                "is not a member of the cluster (see `raftsched operator members`)",
            )
        if not self.raft.is_leader():
            raise Refused(grpc.StatusCode.UNAVAILABLE, f"{self.me_id} is not the leader")
        node = Node(
            id=request.node_id,
            grpc_address=request.grpc_address,
            raft_address=request.raft_address,
            capacity=Resources(request.capacity.cpu_millis, request.capacity.memory_mib),
            labels=tuple(sorted(request.labels.items())),
            incarnation=request.incarnation,
            dedicated=request.dedicated_pool,
        )
        running = [(r.job_id, r.attempt, r.fencing_token) for r in request.running]
        revoke = self.leader.heartbeat(node, running)
        lease, generation = self.leader.lease_for(node.id)
        if lease <= 0:
            self.refusals["node_down" if self.raft.leader_confirmed() else "unconfirmed"] += 1
        return node_pb2.HeartbeatResponse(
            leader_id=self.me_id,
            term=self.raft.term(),
            lease_seconds=lease,
            generation=generation,
            revoke=[node_pb2.RunningAttempt(job_id=j, attempt=a, fencing_token=t) for j, a, t in revoke],
        )


class ControlServer:
    """The node's control listener (synchronous gRPC, thread pool)."""

    def __init__(self, cfg: ClusterConfig, me_id: str, address: str,
                 answer: Callable[[node_pb2.HeartbeatRequest], node_pb2.HeartbeatResponse],
                 thread_init: Callable[[], object] | None = None) -> None:
        self.cfg = cfg
        self.me_id = me_id
        self.address = address
        self.answer = answer
        self.thread_init = thread_init  # run first on each handler thread (its CPU priority)
        self.identity = NodeIdentity.of(cfg)  # members only (core/members.py)
        self.server: grpc.Server | None = None
        self.answered = 0  # heartbeats answered with a lease (metrics, tests)

    def start(self) -> None:
        server = grpc.server(
            ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="control",
                               initializer=self.thread_init),
            options=[("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
                     *SERVER_KEEPALIVE_OPTIONS, ("grpc.so_reuseport", 0)],
            maximum_concurrent_rpcs=16 * WORKERS,
        )
        handler = grpc.method_handlers_generic_handler(SERVICE, {
            "Heartbeat": grpc.unary_unary_rpc_method_handler(
                self._heartbeat,
                request_deserializer=node_pb2.HeartbeatRequest.FromString,
                response_serializer=node_pb2.HeartbeatResponse.SerializeToString,
            ),
        })
        server.add_generic_rpc_handlers((handler,))
        if self.cfg.tls:
            port = server.add_secure_port(self.address, server_credentials(self.cfg, self.me_id))
        else:
            port = server.add_insecure_port(self.address)
        if port == 0:
            raise RuntimeError(f"cannot bind the control address {self.address}")
        server.start()
        self.server = server

    def _heartbeat(self, request: node_pb2.HeartbeatRequest,
                   context: grpc.ServicerContext) -> node_pb2.HeartbeatResponse:
        why = self.identity.problem(context, request.node_id)
        if why:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, why)
        try:
            resp = self.answer(request)
        except Refused as e:
            context.abort(e.code, e.details)
        except Exception:  # never UNKNOWN with a traceback to the caller
            log.exception("heartbeat handler failed", node=request.node_id)
            context.abort(grpc.StatusCode.INTERNAL, "the leader could not process the heartbeat")
        self.answered += 1
        return resp

    def stop(self, grace: float = 0.5) -> None:
        if self.server is not None:
            self.server.stop(grace).wait(grace + 1)
            self.server = None
