"""cgroup v1: one group per attempt in each of the memory, pids, freezer (and,
where mounted, cpu and cpuacct) hierarchies, under this node's own cgroup:
  <own cgroup>/raftsched/<node id>-<node pid>/<job id>.<attempt>
Groups left by a node process that is gone are removed when a node starts."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import raftsched.node.isolation.cgfs as cgfs
import raftsched.node.isolation.kill as kill
from raftsched.node.isolation.base import Isolation, Limits, Sandbox, Usage, join_argv, pid_alive

REQUIRED = ("memory", "pids", "freezer")
OPTIONAL = ("cpu", "cpuacct")
CFS_PERIOD_US = 100_000


def _write(path: Path, value: int | str) -> None:
    path.write_text(str(value))


class V1Sandbox(Sandbox):
    def __init__(self, name: str, limits: Limits, dirs: dict[str, Path]) -> None:
        super().__init__(name, limits)
        self.dirs = dirs
        for d in {*dirs.values()}:
            d.mkdir(exist_ok=True)
        if limits.memory_mib:
            b = limits.memory_mib << 20
            _write(dirs["memory"] / "memory.limit_in_bytes", b)
            with contextlib.suppress(OSError):  # only with swap accounting: no swapping past the limit
                _write(dirs["memory"] / "memory.memsw.limit_in_bytes", b)
        if limits.pids:
            _write(dirs["pids"] / "pids.max", limits.pids)
        if limits.cpu_millis and "cpu" in dirs:
            _write(dirs["cpu"] / "cpu.cfs_period_us", CFS_PERIOD_US)
            _write(dirs["cpu"] / "cpu.cfs_quota_us", max(1000, limits.cpu_millis * CFS_PERIOD_US // 1000))

    @property
    def handle(self) -> str:
        return f"v1 {self.dirs['freezer']}"

    def wrap(self, argv: list[str]) -> list[str]:
        # The cpu group last: the joining shell's own work is not billed to the job's CPU
        # quota (a 10-millicpu job has 1 ms per 100 ms period: sh + the job's exec in one
        # period, or a wait for the next one). The freezer first: the watchdog sees the
        # process as soon as it can.
        order = sorted(self.dirs, key=lambda c: (c in ("cpu", "cpuacct"), c != "freezer", c))
        dirs = list(dict.fromkeys(self.dirs[c] for c in order))  # co-mounted controllers: once
        return join_argv([d / "cgroup.procs" for d in dirs], argv)

    def oom_killed(self) -> bool:
        return cgfs.keyed(self.dirs["memory"] / "memory.oom_control").get("oom_kill", 0) > 0

    def usage(self) -> Usage:
        return _usage(self.dirs)

    def release(self) -> bool:
        kill.kill_v1(self.dirs["freezer"])
        ok = True
        for d in {*self.dirs.values()}:
            ok = cgfs.remove_tree(d) and ok
        return ok


def _usage(dirs: dict[str, Path]) -> Usage:
    cpu = cgfs.read_int(dirs["cpuacct"] / "cpuacct.usage") if "cpuacct" in dirs else 0
    return Usage(cgfs.read_int(dirs["memory"] / "memory.usage_in_bytes"), cpu)


class CgroupV1(Isolation):
    mode = "cgroup-v1"

    @classmethod
    def unusable(cls) -> str:
        dirs = cgfs.v1_dirs()
        for c in REQUIRED:
            if c not in dirs:
                return f"no v1 {c} hierarchy mounted"
            why = cgfs.writable_dir(dirs[c])
            if why:
                return why
        return ""

    def __init__(self, node_id: str) -> None:
        super().__init__(node_id)
        own = cgfs.v1_dirs()
        ctrls = [c for c in (*REQUIRED, *OPTIONAL) if c in own and not cgfs.writable_dir(own[c])]
        self.base = {c: own[c] / "raftsched" / f"{node_id}-{os.getpid()}" for c in ctrls}
        for c in ctrls:
            _remove_stale(own[c] / "raftsched", c == "freezer")
        for d in self.base.values():
            d.mkdir(parents=True, exist_ok=True)

    def describe(self) -> str:
        return ", ".join(f"{c}={d}" for c, d in self.base.items())

    def sandbox(self, job_id: str, attempt: int, limits: Limits) -> Sandbox:
        name = f"{job_id}.{attempt}"
        dirs = {c: d / name for c, d in self.base.items()}
        try:
            return V1Sandbox(name, self.enforced(limits), dirs)
        except OSError:
            for d in dirs.values():
                cgfs.remove_tree(d)
            raise

    def enforced(self, limits: Limits) -> Limits:
        return Limits(limits.memory_mib, limits.cpu_millis if "cpu" in self.base else 0, limits.pids)

    def usage(self) -> Usage:
        return _usage(self.base)

    def close(self) -> None:
        super().close()
        fz = self.base["freezer"]
        for sub in fz.iterdir() if fz.is_dir() else ():
            if sub.is_dir():
                kill.kill_v1(sub)
        for d in self.base.values():
            cgfs.remove_tree(d)


def _remove_stale(parent: Path, is_freezer: bool) -> None:
    """Remove node groups whose node process is gone (killing what is left in them)."""
    if not parent.is_dir():
        return
    for d in parent.iterdir():
        _, _, pid = d.name.rpartition("-")
        if not d.is_dir() or not pid.isdigit() or pid_alive(int(pid)):
            continue
        if is_freezer:
            for sub in d.iterdir():
                if sub.is_dir():
                    kill.kill_v1(sub)
        cgfs.remove_tree(d)
