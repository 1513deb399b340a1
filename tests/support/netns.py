"""Test hosts in network namespaces: one namespace per node on a private bridge made
by the test, so a node can be cut off from the others (and from us) by taking its
link down, while it keeps running. Needs root and iproute2; callers skip otherwise.
All addresses live on the test's own bridge; nothing leaves this machine."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys

from tests.support.cluster import TestCluster


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def netns_available() -> str | None:
    """None if namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    probe = f"rsprobe{secrets.token_hex(2)}"
    r = _ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class NetnsCluster(TestCluster):
    """A TestCluster whose nodes each run in their own namespace, 10.213.X.i/24."""

    def __init__(self, n_nodes: int = 3, **kw) -> None:
        self.tag = secrets.token_hex(2)
        self.subnet = 200 + int(self.tag, 16) % 50
        self.bridge = f"rsbr{self.tag}"
        self.ns = [f"rs{self.tag}n{i + 1}" for i in range(n_nodes)]
        self.links = [f"rs{self.tag}v{i + 1}" for i in range(n_nodes)]
        self.hosts = [f"10.213.{self.subnet}.{i + 1}" for i in range(n_nodes)]
        self._made: list[tuple[str, ...]] = []
        try:
            self._setup_network()
        except Exception:
            self._teardown_network()
            raise
        super().__init__(n_nodes=n_nodes, hosts=self.hosts, **kw)

    def _setup_network(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made.append(("link", "del", self.bridge))
        _ip("addr", "add", f"10.213.{self.subnet}.254/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for ns, link, host in zip(self.ns, self.links, self.hosts, strict=True):
            _ip("netns", "add", ns)
            self._made.append(("netns", "del", ns))
            _ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", link, "master", self.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{host}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def _teardown_network(self) -> None:
        for args in reversed(self._made):
            _ip(*args, check=False)
        self._made.clear()

    def start_node(self, node_id: str) -> None:
        i = int(node_id[1:]) - 1
        log = open(self.log_dir / f"{node_id}.log", "ab")  # noqa: SIM115
        self.procs[node_id] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[i], sys.executable, "-m", "raftsched",
             "--config", str(self.config_path), "node", "--id", node_id],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()

    def cut(self, node_id: str) -> None:
        """Partition: the node loses every link (peers and clients); it keeps running."""
        _ip("link", "set", self.links[int(node_id[1:]) - 1], "down")

    def heal(self, node_id: str) -> None:
        _ip("link", "set", self.links[int(node_id[1:]) - 1], "up")

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._teardown_network()


