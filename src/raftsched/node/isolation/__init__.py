"""Job isolation: every attempt in its own control group where the machine allows.

`detect()` picks the strongest mode this node can use, in this order:
  cgroup-v2  a delegated cgroup v2 subtree with the memory, pids and cpu controllers
  cgroup-v1  writable cgroup v1 hierarchies for memory, pids and freezer (cpu if present)
  fallback   no cgroups: the node becomes a child subreaper, and a kill takes the
             job's process group and process tree plus the orphans carrying the
             attempt's RAFTSCHED_* environment; limits other than the timeout are
             not enforced
See docs/isolation.md. The kill primitives live in `kill.py` (shared with the
lease watchdog).
"""

from __future__ import annotations

import structlog

from raftsched.node.isolation.base import Isolation, Limits, Sandbox, Usage
from raftsched.node.isolation.cgroup_v1 import CgroupV1
from raftsched.node.isolation.cgroup_v2 import CgroupV2
from raftsched.node.isolation.fallback import Fallback

log = structlog.get_logger("raftsched.node.isolation")

__all__ = ["Isolation", "Limits", "Sandbox", "Usage", "detect"]


def detect(node_id: str, want: str = "auto") -> Isolation:
    """The isolation this node uses. `want` forces a mode (an unusable forced
    cgroup mode falls back with a warning). Logs which mode is in force."""
    reasons: list[str] = []
    candidates: list[type[Isolation]] = []
    if want in ("auto", "cgroup-v2"):
        candidates.append(CgroupV2)
    if want in ("auto", "cgroup-v1"):
        candidates.append(CgroupV1)
    for cls in candidates:
        why = cls.unusable()
        if why:
            reasons.append(f"{cls.mode}: {why}")
            continue
        try:
            iso = cls(node_id)
        except OSError as e:
            reasons.append(f"{cls.mode}: {e}")
            continue
        log.info("job isolation", mode=iso.mode, detail=iso.describe())
        return iso
    iso = Fallback(node_id)
    log.warning("job isolation: no usable cgroups; jobs are killed by process tree and "
                "environment marker, and memory/cpu/pids limits are NOT enforced",
                mode=iso.mode, forced=want == "fallback", why="; ".join(reasons) or "configured")
    return iso
