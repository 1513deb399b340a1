"""cgroup v2: one group per attempt under this node's group,
  <own cgroup>/raftsched-<node id>-<node pid>/<job id>.<attempt>
with memory.max, pids.max and cpu.max. Usable when the node's own cgroup offers
the memory, pids and cpu controllers and lets us enable them for children (a
delegated subtree, e.g. a systemd unit with Delegate=yes, or a container root).
v2 forbids enabling controllers for children of a group that itself holds
processes (other than the root), so a node started inside a populated group
falls back to v1 or the subreaper mode; the warning at start says why."""

from __future__ import annotations

import os
from pathlib import Path

import raftsched.node.isolation.cgfs as cgfs
import raftsched.node.isolation.kill as kill
from raftsched.node.isolation.base import Isolation, Limits, Sandbox, Usage, join_argv, pid_alive

CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000


def _enable(group: Path) -> None:
    (group / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in CONTROLLERS))


class V2Sandbox(Sandbox):
    def __init__(self, name: str, limits: Limits, d: Path) -> None:
        super().__init__(name, limits)
        self.dir = d
        d.mkdir(exist_ok=True)
        if limits.memory_mib:
            (d / "memory.max").write_text(str(limits.memory_mib << 20))
            if (d / "memory.swap.max").exists():  # no swapping past the limit
                (d / "memory.swap.max").write_text("0")
        if limits.pids:
            (d / "pids.max").write_text(str(limits.pids))
        if limits.cpu_millis:
            quota = max(1000, limits.cpu_millis * CPU_PERIOD_US // 1000)
            (d / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")

    @property
    def handle(self) -> str:
        return f"v2 {self.dir}"

    def wrap(self, argv: list[str]) -> list[str]:
        return join_argv([self.dir / "cgroup.procs"], argv)

    def oom_killed(self) -> bool:
        return cgfs.keyed(self.dir / "memory.events").get("oom_kill", 0) > 0

    def usage(self) -> Usage:
        return _usage(self.dir)

    def release(self) -> bool:
        kill.kill_v2(self.dir)
        return cgfs.remove_tree(self.dir)


def _usage(d: Path) -> Usage:
    return Usage(cgfs.read_int(d / "memory.current"),
                 cgfs.keyed(d / "cpu.stat").get("usage_usec", 0) * 1000)


class CgroupV2(Isolation):
    mode = "cgroup-v2"

    @classmethod
    def unusable(cls) -> str:
        own = cgfs.v2_dir()
        if own is None:
            return "no cgroup v2 hierarchy mounted"
        try:
            have = set((own / "cgroup.controllers").read_text().split())
        except OSError as e:
            return f"cannot read {own}/cgroup.controllers: {e.strerror}"
        missing = [c for c in CONTROLLERS if c not in have]
        if missing:
            return f"controllers {', '.join(missing)} not available in {own}"
        why = cgfs.writable_dir(own)
        if why:
            return why
        try:
            _enable(own)
        except OSError as e:
            return f"cannot enable controllers for children of {own}: {e.strerror}"
        return ""

    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        own = cgfs.v2_dir()
        assert own is not None
        for d in own.glob("raftsched-*"):
            _, _, pid = d.name.rpartition("-")
            if d.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
                kill.kill_v2(d)
                cgfs.remove_tree(d)
        self.base = own / f"raftsched-{node_id}-{os.getpid()}"
        self.base.mkdir(exist_ok=True)
        _enable(self.base)

    def describe(self) -> str:
        return str(self.base)

    def sandbox(self, job_id: str, attempt: int, limits: Limits) -> Sandbox:
        name = f"{job_id}.{attempt}"
        try:
            return V2Sandbox(name, limits, self.base / name)
        except OSError:
            cgfs.remove_tree(self.base / name)
            raise

    def enforced(self, limits: Limits) -> Limits:
        return limits

    def usage(self) -> Usage:
        return _usage(self.base)

    def close(self) -> None:
        super().close()
        kill.kill_v2(self.base)
        cgfs.remove_tree(self.base)
