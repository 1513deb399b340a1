"""Hosts in network namespaces for partition tests and the partition nemesis: one
namespace per node on a private bridge made here, so links between nodes can be cut
while the nodes keep running. Needs root and iproute2 (no iptables/tc actions: a
one-way or pairwise cut is a blackhole route inside the sender's namespace). All
addresses live on this bridge (10.213.X.0/24); nothing leaves the machine."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def netns_available() -> str | None:
    """None if namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    probe = f"rsprobe{secrets.token_hex(2)}"
    r = ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


class Netns:
    """n namespaces rs<tag>n<i> with veth links on bridge rsbr<tag>; node i (1-based)
    at 10.213.<subnet>.i, this (root) namespace at .254."""

    def __init__(self, n: int) -> None:
        self.tag = secrets.token_hex(2)
        self.subnet = 200 + int(self.tag, 16) % 50
        self.bridge = f"rsbr{self.tag}"
        self.ns = [f"rs{self.tag}n{i + 1}" for i in range(n)]
        self.links = [f"rs{self.tag}v{i + 1}" for i in range(n)]
        self.hosts = [f"10.213.{self.subnet}.{i + 1}" for i in range(n)]
        self._made: list[tuple[str, ...]] = []
        self.blocked: set[tuple[int, int]] = set()
        try:
            self._setup()
        except Exception:
            self.close()
            raise

    def _setup(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        self._made.append(("link", "del", self.bridge))
        ip("addr", "add", f"10.213.{self.subnet}.254/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for ns, link, host in zip(self.ns, self.links, self.hosts, strict=True):
            ip("netns", "add", ns)
            self._made.append(("netns", "del", ns))
            ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("link", "set", link, "master", self.bridge, "up")
            ip("-n", ns, "addr", "add", f"{host}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def wrap(self, i: int) -> list[str]:
        """Command prefix running a program in node i's namespace."""
        return ["ip", "netns", "exec", self.ns[i - 1]]

    def cut(self, i: int) -> None:
        """Node i loses every link (peers and clients); it keeps running."""
        ip("link", "set", self.links[i - 1], "down")

    def heal(self, i: int) -> None:
        ip("link", "set", self.links[i - 1], "up")

    def block(self, src: int, dst: int) -> None:
        """Packets from node src to node dst are dropped (one way)."""
        ip("-n", self.ns[src - 1], "route", "add", "blackhole", f"{self.hosts[dst - 1]}/32")
        self.blocked.add((src, dst))

    def unblock(self, src: int, dst: int) -> None:
        ip("-n", self.ns[src - 1], "route", "del", "blackhole", f"{self.hosts[dst - 1]}/32",
           check=False)
        self.blocked.discard((src, dst))

    def heal_all(self) -> None:
        for src, dst in list(self.blocked):
            self.unblock(src, dst)
        for i in range(1, len(self.ns) + 1):
            self.heal(i)

    def close(self) -> None:
        for args in reversed(self._made):
            ip(*args, check=False)
        self._made.clear()
