"""Heartbeats and the lease do not depend on the event loop (issue 12).

Real parts: the control port's gRPC server with the cluster's mutual TLS, the
heartbeat thread, the lease and its watchdog process, a real `sleep` job. The node's
event loop is kept busy with Python work for three lease lengths; the job must
survive it. Before the control port, the heartbeat was a coroutine on that loop:
the lease lapsed after one second and the watchdog killed the job.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from raftsched import config as configmod
from raftsched.client.credentials import open_channel
from raftsched.core.model import Resources
from raftsched.dev.launcher import write_config
from raftsched.node import certs
from raftsched.node.heartbeat import Heartbeater
from raftsched.node.lease import Lease
from raftsched.rpc.control import ControlServer, Refused
from raftsched.rpc.identity import node_client_tls
from raftsched.v1 import node_pb2, node_pb2_grpc

LEASE = 1.0


class _Runner:
    def __init__(self) -> None:
        self.running: dict[tuple[str, int], object] = {}
        self.killed: list[tuple[str, int]] = []

    def running_attempts(self) -> list[tuple[str, int, int]]:
        return [("job-1", 1, 5)]

    def in_use(self) -> Resources:
        return Resources(100, 10)

    def kill(self, job_id: str, attempt: int, reason: str) -> bool:
        self.killed.append((job_id, attempt))
        return True


@pytest.fixture
def cluster_cfg(tmp_path: Path) -> configmod.ClusterConfig:
    cfg = configmod.load(write_config(tmp_path, 2, cpu=1000, mem=1000))
    certs.ensure_local(cfg)
    return cfg


@pytest.fixture
def busy_loop() -> Iterator[asyncio.AbstractEventLoop]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)  # as NodeRuntime.start sets it
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()
        sys.setswitchinterval(old)


def _hog(seconds: float) -> None:
    """Python work on the event loop, never yielding: a loop a heavy request stalls."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += sum(range(200))


@pytest.mark.timeout(60)
def test_lease_holds_while_the_event_loop_is_stalled(cluster_cfg: configmod.ClusterConfig,
                                                    busy_loop: asyncio.AbstractEventLoop) -> None:
    cfg = cluster_cfg
    leader, me = cfg.node("n1"), cfg.node("n2")
    seen: list[node_pb2.HeartbeatRequest] = []

    def answer(req: node_pb2.HeartbeatRequest) -> node_pb2.HeartbeatResponse:
        seen.append(req)
        revoke = [node_pb2.RunningAttempt(job_id="old", attempt=1)] if len(seen) == 3 else []
        return node_pb2.HeartbeatResponse(leader_id="n1", lease_seconds=LEASE, generation=1,
                                          revoke=revoke)

    server = ControlServer(cfg, "n1", leader.control, answer)
    server.start()
    lease = Lease(LEASE)
    runner = _Runner()
    hb = Heartbeater(me, 0.2, "inc", lambda: leader.control, node_client_tls(cfg, "n2"),
                     runner, lease, busy_loop)
    job = subprocess.Popen(["sleep", "60"], process_group=0)
    try:
        hb.start()
        deadline = time.monotonic() + 10
        while not lease.valid() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lease.valid(), f"no lease after 10 s ({hb.failures} failed heartbeats)"
        lease.register(job.pid)
        before = hb.sent
        busy_loop.call_soon(_hog, 3 * LEASE)
        busy_loop.call_soon(busy_loop.stop)
        busy_loop.run_forever()  # returns after the 3 s stall
        assert job.poll() is None, "the watchdog killed the job: the lease lapsed"
        assert lease.expirations == 0 and not lease.lapses
        assert hb.sent - before >= 5  # heartbeats kept flowing during the stall
        assert seen[-1].node_id == "n2" and seen[-1].running[0].job_id == "job-1"
        # the revoke in the third answer reached the runner through the loop
        busy_loop.call_soon(busy_loop.stop)
        busy_loop.run_forever()
        assert ("old", 1) in runner.killed
    finally:
        hb.stop()
        server.stop()
        lease.close()
        job.kill()
        job.wait(5)


@pytest.mark.timeout(60)
def test_control_port_refusals_keep_their_status(cluster_cfg: configmod.ClusterConfig) -> None:
    """A refusal of the leader (not leader, unknown node) reaches the sender with its code;
    a bug in the handler is INTERNAL, never UNKNOWN with a traceback."""
    cfg = cluster_cfg
    calls = []

    def answer(req: node_pb2.HeartbeatRequest) -> node_pb2.HeartbeatResponse:
        calls.append(req)
        if len(calls) == 1:
            raise Refused(grpc.StatusCode.UNAVAILABLE, "n1 is not the leader")
        raise RuntimeError("boom")

    server = ControlServer(cfg, "n1", cfg.node("n1").control, answer)
    server.start()
    try:
        with open_channel(cfg.node("n1").control, node_client_tls(cfg, "n2")) as ch:
            stub = node_pb2_grpc.NodeAgentStub(ch)
            req = node_pb2.HeartbeatRequest(node_id="n2")
            for code, text in ((grpc.StatusCode.UNAVAILABLE, "not the leader"),
                               (grpc.StatusCode.INTERNAL, "could not process")):
                with pytest.raises(grpc.RpcError) as ei:
                    stub.Heartbeat(req, timeout=5)
                assert ei.value.code() == code and text in (ei.value.details() or "")
    finally:
        server.stop()


def test_critical_threads_get_their_nice_value_where_allowed() -> None:
    import os
    import threading

    from raftsched.node.priority import favour_me

    got: list[tuple[bool, int]] = []

    def thread() -> None:
        ok = favour_me(-5, "test")
        got.append((ok, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))

    t = threading.Thread(target=thread)
    t.start()
    t.join(10)
    ok, nice = got[0]
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert base != -5  # only that thread changed
    if ok:
        assert nice == -5
    else:  # not root: refused, left at its normal priority
        assert os.geteuid() != 0 and nice == base


def test_critical_nice_is_validated(tmp_path: Path) -> None:
    for bad in ("5", "-21", "true", '"high"'):
        path = write_config(tmp_path / bad.strip('"'), 1, cpu=1000, mem=1000,
                            cluster_extra=f"critical_nice = {bad}")
        with pytest.raises(configmod.ConfigError, match="critical_nice"):
            configmod.load(path)
    assert configmod.load(write_config(tmp_path / "ok", 1, cpu=1000, mem=1000)).critical_nice == -5
