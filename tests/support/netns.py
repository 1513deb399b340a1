"""Test hosts in network namespaces (raftsched.dev.netns): a TestCluster whose nodes
each run in their own namespace on a private bridge made by the test, so a node can be
cut off from the others (and from us) while it keeps running. Needs root and iproute2;
callers skip otherwise. Nothing leaves this machine."""

from __future__ import annotations

import os
import subprocess
import sys

from raftsched.dev.netns import Netns, netns_available
from tests.support.cluster import TestCluster

__all__ = ["NetnsCluster", "netns_available"]


class NetnsCluster(TestCluster):
    """A TestCluster whose nodes each run in their own namespace, 10.213.X.i/24."""

    def __init__(self, n_nodes: int = 3, spare: int = 0, **kw) -> None:
        """`spare`: namespaces beyond the configured nodes, for nodes added at run time
        (n<n_nodes + 1>..., each on its namespace's address)."""
        self.net = Netns(n_nodes + spare)
        self.ns, self.hosts = self.net.ns, self.net.hosts
        try:
            super().__init__(n_nodes=n_nodes, hosts=self.hosts[:n_nodes], **kw)
        except Exception:
            self.net.close()
            raise

    def start_node(self, node_id: str, *extra: str) -> None:
        log = open(self.log_dir / f"{node_id}.log", "ab")  # noqa: SIM115
        self.procs[node_id] = subprocess.Popen(
            [*self.net.wrap(int(node_id[1:])), sys.executable, "-m", "raftsched",
             "--config", str(self.config_path), "node", "--id", node_id, *extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()

    def cut(self, node_id: str) -> None:
        """Partition: the node loses every link (peers and clients); it keeps running."""
        self.net.cut(int(node_id[1:]))

    def heal(self, node_id: str) -> None:
        self.net.heal(int(node_id[1:]))

    def split(self, a: str, b: str) -> None:
        """Cut only the link between nodes `a` and `b`, both ways (a bridge split when a
        third node still sees both)."""
        ia, ib = int(a[1:]), int(b[1:])
        self.net.block(ia, ib)
        self.net.block(ib, ia)

    def unsplit(self, a: str, b: str) -> None:
        ia, ib = int(a[1:]), int(b[1:])
        self.net.unblock(ia, ib)
        self.net.unblock(ib, ia)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.net.close()
