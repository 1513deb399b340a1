"""The Raft port under abuse: garbage, an oversized length prefix and 2,000 idle
connections leave the cluster committing, and the node accepts peers afterwards."""

from __future__ import annotations

import os
import resource
import select
import signal
import socket
import struct
import time

import pytest

from raftsched.replica.rafttransport import UNKNOWN_IDLE
from raftsched.v1 import jobs_pb2
from tests.support.cluster import TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


def _raft_addr(c: TestCluster, node_id: str) -> tuple[str, int]:
    host, port = c.cfg.node(node_id).raft.rsplit(":", 1)
    return host, int(port)


def _closed_by_peer(s: socket.socket, timeout: float) -> bool:
    """True once the node has closed this connection (EOF or reset)."""
    r, _, _ = select.select([s], [], [], timeout)
    if not r:
        return False
    try:
        return s.recv(1 << 16) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def _local_non_loopback_ip() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 9))  # no packet is sent; picks the outgoing address
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def test_raft_port_binds_the_configured_host(cluster3: TestCluster) -> None:
    ip = _local_non_loopback_ip()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    for n in cluster3.cfg.nodes:
        _, port = _raft_addr(cluster3, n.id)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((ip, port), timeout=5).close()
        socket.create_connection(_raft_addr(cluster3, n.id), timeout=5).close()


def _commits(c: TestCluster) -> None:
    cl = c.client()
    jid = cl.submit(jobs_pb2.JobSpec(command=["true"]))
    assert c.wait_terminal([jid], timeout=60)[jid].state == jobs_pb2.SUCCEEDED


def test_raft_port_survives_garbage_oversized_frames_and_idle_connections(cluster_factory) -> None:
    c = cluster_factory().start()
    c.wait_ready()
    # the node with the lowest Raft address is the one its peers connect to
    target = min(c.cfg.nodes, key=lambda n: n.raft).id
    addr = _raft_addr(c, target)
    term_before = c.client().status().term

    # garbage, and a length prefix of 1 GiB: the connection is closed, nothing buffered
    g = socket.create_connection(addr, timeout=5)
    g.sendall(os.urandom(4096))
    big = socket.create_connection(addr, timeout=5)
    big.sendall(struct.pack("i", 1 << 30) + b"x" * 65536)
    assert _closed_by_peer(g, 5) and _closed_by_peer(big, 5)
    g.close()
    big.close()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2300:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    idle: list[socket.socket] = []
    try:
        for _ in range(2000):
            s = socket.socket()
            s.settimeout(10)
            s.connect(addr)
            idle.append(s)
        _commits(c)  # the cluster commits with 2,000 connections hanging on one node
        # every one of them is closed by the node: refused at once or after the idle limit
        deadline = time.monotonic() + UNKNOWN_IDLE + 20
        by_fd = {s.fileno(): s for s in idle}
        poller = select.poll()
        for fd in by_fd:
            poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while by_fd and time.monotonic() < deadline:
            for fd, _ev in poller.poll(1000):
                try:
                    data = by_fd[fd].recv(1 << 16)
                except (ConnectionResetError, BrokenPipeError):
                    data = b""
                if data == b"":
                    poller.unregister(fd)
                    del by_fd[fd]
        assert not by_fd, f"{len(by_fd)} idle connections still open on {target}"
    finally:
        for s in idle:
            s.close()

    # the listener still accepts: a peer restarted now reconnects and catches up
    other = next(n.id for n in c.cfg.nodes if n.id != target and n.id != c.leader())
    c.kill(other, signal.SIGKILL)
    _commits(c)
    c.start_node(other)
    c.wait_ready(60)
    _commits(c)
    c.replicas_identical(30)
    print(f"term before {term_before}, after {c.client().status().term}")
