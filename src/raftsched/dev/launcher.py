"""Start every node of a config as local processes (`raftsched cluster up`)."""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from raftsched.client.credentials import ClientTLS, local_files, read_token
from raftsched.config import ClusterConfig
from raftsched.node import certs
from raftsched.node.acl_bootstrap import ensure_local_token


def free_ports(n: int) -> list[int]:
    """n ports free on 127.0.0.1, below the kernel's ephemeral range (so outgoing
    connections do not take them between now and the node's bind)."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randint(20000, 32000)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def write_config(root: Path, n_nodes: int = 3, cpu: int = 2000, mem: int = 2048,
                 cluster_extra: str = "", labels: list[dict[str, str]] | None = None,
                 secret: str | None = None,
                 hosts: list[str] | None = None,
                 node_extra: list[str] | None = None) -> Path:
    """Write a cluster config under `root`: loopback with free ports, or one host per
    node (`hosts`, e.g. test network namespaces) with fixed ports. `node_extra`: more
    lines per node table (e.g. 'dedicated = true')."""
    root.mkdir(parents=True, exist_ok=True)
    secret = secret or secrets.token_urlsafe(32)
    ports = free_ports(4 * n_nodes) if hosts is None else [7101, 7201, 9101, 7301] * n_nodes
    lines = [
        "[cluster]",
        'name = "test"',
        f'secret = "{secret}"',
        f'data_dir = "{root}/data"',
        "heartbeat_interval = 0.2",
        "heartbeat_ttl = 1.5",
        "kill_grace = 1.0",
        cluster_extra,
    ]
    for i in range(n_nodes):
        lab = (labels or [{}] * n_nodes)[i]
        lab_s = ", ".join(f'{k} = "{v}"' for k, v in lab.items())
        host = "127.0.0.1" if hosts is None else hosts[i]
        lines += [
            "",
            "[[nodes]]",
            f'id = "n{i + 1}"',
            f'raft = "{host}:{ports[4 * i]}"',
            f'grpc = "{host}:{ports[4 * i + 1]}"',
            f'metrics = "{host}:{ports[4 * i + 2]}"',
            f'control = "{host}:{ports[4 * i + 3]}"',
            f"cpu_millis = {cpu}",
            f"memory_mib = {mem}",
            f"labels = {{ {lab_s} }}",
            (node_extra or [""] * n_nodes)[i],
        ]
    path = root / "cluster.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def local_token(cfg: ClusterConfig) -> str | None:
    """The bootstrap token of a cluster started from this machine (created if missing;
    the nodes bootstrap ACLs with it), or None with ACLs off."""
    return read_token(ensure_local_token(cfg.data_dir)) if cfg.acl else None


class LocalCluster:
    """Node processes of one config on this machine. Stops them on exit."""

    def __init__(self, cfg: ClusterConfig, log_dir: Path | None = None,
                 echo: bool = True, extra_args: Sequence[str] = (),
                 wrap: Callable[[str], list[str]] | None = None) -> None:
        self.cfg = cfg
        self.wrap = wrap  # node id -> command prefix (e.g. `ip netns exec NS`)
        self.log_dir = log_dir
        self.echo = echo
        self.extra_args = list(extra_args)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._threads: list[threading.Thread] = []

    def start_node(self, node_id: str) -> subprocess.Popen[bytes]:
        cmd = [*(self.wrap(node_id) if self.wrap else ()), sys.executable, "-m", "raftsched",
               "--config", str(self.cfg.path), "node", "--id", node_id, *self.extra_args]
        out: int | IO[bytes] = subprocess.PIPE
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{node_id}.log", "ab")  # noqa: SIM115
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.procs[node_id] = p
        if out is subprocess.PIPE:
            t = threading.Thread(target=self._pump, args=(node_id, p), daemon=True)
            t.start()
            self._threads.append(t)
        return p

    def _pump(self, node_id: str, p: subprocess.Popen[bytes]) -> None:
        assert p.stdout is not None
        for line in p.stdout:
            if self.echo:
                sys.stderr.write(f"[{node_id}] {line.decode(errors='replace')}")

    @property
    def token(self) -> str | None:
        """The management token the nodes of this local cluster bootstrap (None: ACLs off)."""
        return local_token(self.cfg)

    def start(self) -> None:
        certs.ensure_local(self.cfg)  # first start of a local cluster: its CA and certificates
        local_token(self.cfg)  # created before the nodes start; they bootstrap ACLs with it
        for n in self.cfg.nodes:
            self.start_node(n.id)

    def tls(self) -> ClientTLS | None:
        """The client certificate of this local cluster (made by `start`)."""
        return local_files(self.cfg.data_dir) if self.cfg.tls else None

    def signal(self, node_id: str, sig: int) -> None:
        p = self.procs[node_id]
        if p.poll() is None:
            p.send_signal(sig)
        if sig == signal.SIGKILL:
            p.wait(10)

    def alive(self, node_id: str) -> bool:
        return self.procs[node_id].poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def wait(self) -> int:
        """Block until a node exits on its own; returns its exit code."""
        while True:
            for nid, p in self.procs.items():
                rc = p.poll()
                if rc is not None:
                    sys.stderr.write(f"node {nid} exited with {rc}\n")
                    return rc
            time.sleep(0.2)
