"""The node's heartbeats to the leader, sent from a thread of their own.

Every `interval` the node tells the leader's control port (rpc/control.py) which
attempts it runs; the answer renews its lease (node/lease.py) and lists attempts
the node no longer owns, which are killed. Nothing here waits for the event loop:
a loop kept busy by heavy requests must not let the lease lapse (issue 12). The
loop only receives the kills (call_soon_threadsafe) and reads the counters.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import grpc
import structlog

from raftsched.client.credentials import ClientTLS, open_channel
from raftsched.config import NodeConfig
from raftsched.node.lease import Lease
from raftsched.node.priority import favour_me
from raftsched.ports import Runner
from raftsched.rpc import convert
from raftsched.rpc.control import SERVICE
from raftsched.rpc.peer import KEEPALIVE_OPTIONS
from raftsched.v1 import node_pb2

log = structlog.get_logger("raftsched.node.heartbeat")

METHOD = f"/{SERVICE}/Heartbeat"


class Heartbeater:
    def __init__(self, me: NodeConfig, interval: float, incarnation: str,
                 leader_control: Callable[[], str | None], tls: ClientTLS | None,
                 runner: Runner, lease: Lease, loop: asyncio.AbstractEventLoop, nice: int = 0) -> None:
        self.me = me
        self.interval = interval
        self.incarnation = incarnation
        self.leader_control = leader_control  # the leader's control address, if one is known
        self.tls = tls
        self.runner = runner
        self.lease = lease
        self.loop = loop
        self.nice = nice  # node/priority.py
        self.failures = 0  # in a row
        self.sent = 0
        self._lapsed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._channel: tuple[str, grpc.Channel] | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval * 2 + 2)
        if self._channel is not None:
            self._channel[1].close()
            self._channel = None

    def _run(self) -> None:
        favour_me(self.nice, "heartbeat")
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception:  # keep beating: a bug here must not silently stop the lease
                log.exception("heartbeat failed unexpectedly")
            self._stop.wait(self.interval)

    def _call(self, addr: str) -> Callable[..., node_pb2.HeartbeatResponse]:
        if self._channel is None or self._channel[0] != addr:
            if self._channel is not None:
                self._channel[1].close()
            self._channel = (addr, open_channel(addr, self.tls, KEEPALIVE_OPTIONS))
        return self._channel[1].unary_unary(
            METHOD, request_serializer=node_pb2.HeartbeatRequest.SerializeToString,
            response_deserializer=node_pb2.HeartbeatResponse.FromString)

    def request(self) -> node_pb2.HeartbeatRequest:
        me = self.me
        running = self.runner.running_attempts()
        in_use = self.runner.in_use()
        return node_pb2.HeartbeatRequest(
            node_id=me.id,
            incarnation=self.incarnation,
            running_jobs=len(running),
            cpu_millis_in_use=in_use.cpu_millis,
            memory_mib_in_use=in_use.memory_mib,
            grpc_address=me.grpc,
            raft_address=me.raft,
            capacity=convert.resources_to_pb(me.capacity),
            labels=me.labels,
            dedicated_pool=me.dedicated,
            running=[node_pb2.RunningAttempt(job_id=j, attempt=a, fencing_token=t) for j, a, t in running],
        )

    def beat(self) -> None:
        """One heartbeat (if a leader is known) and its consequences."""
        addr = self.leader_control()
        if addr is not None:
            req = self.request()
            sent = time.monotonic()
            try:
                resp = self._call(addr)(req, timeout=max(self.interval * 2, 0.5))
                self.failures = 0
                self.sent += 1
                self.lease.renew(sent, resp.lease_seconds, resp.generation)
                for r in resp.revoke:
                    self.loop.call_soon_threadsafe(self._revoke, r.job_id, r.attempt)
            except grpc.RpcError as e:
                self.failures += 1
                log.debug("heartbeat failed", code=str(e.code()), details=e.details())
        lapsed = not self.lease.valid()
        if lapsed and not self._lapsed and self.runner.running_attempts():
            log.warning("lease lapsed; the watchdog kills this node's jobs", failures=self.failures)
        self._lapsed = lapsed

    def _revoke(self, job_id: str, attempt: int) -> None:  # on the event loop
        if self.runner.kill(job_id, attempt, "revoked by leader"):
            log.warning("attempt revoked", job=job_id, attempt=attempt)
