"""Where this process's cgroups are: parsed from /proc/self/mountinfo and
/proc/self/cgroup. Stdlib only."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")
SELF_CGROUP = Path("/proc/self/cgroup")


def _mounts(fstype: str) -> list[tuple[str, Path, set[str]]]:
    """(root within the hierarchy, mount point, super options) of cgroup mounts."""
    out = []
    try:
        lines = MOUNTINFO.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        f = pre.split()
        g = post.split()
        if len(f) >= 5 and len(g) >= 3 and g[0] == fstype:
            out.append((f[3], Path(f[4]), set(g[2].split(","))))
    return out


def _own_paths() -> dict[str, str]:
    """Controller set ("memory", "cpu,cpuacct", "" for v2) -> own cgroup path."""
    out = {}
    try:
        for line in SELF_CGROUP.read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            out[ctrls] = path
    except (OSError, ValueError):
        pass
    return out


def _under(mount_root: str, mount: Path, path: str) -> Path:
    rel = path
    if mount_root != "/" and (path == mount_root or path.startswith(mount_root + "/")):
        rel = path[len(mount_root):]
    return mount / rel.lstrip("/")


def v1_dirs() -> dict[str, Path]:
    """Controller -> this process's cgroup directory in the v1 hierarchy holding it."""
    own = _own_paths()
    out: dict[str, Path] = {}
    for root, mount, opts in _mounts("cgroup"):
        for ctrls, path in own.items():
            names = set(ctrls.split(",")) if ctrls else set()
            if names and names <= opts:
                for c in names:
                    out.setdefault(c, _under(root, mount, path))
    return out


def v2_dir() -> Path | None:
    """This process's cgroup v2 directory, if a unified hierarchy is mounted."""
    path = _own_paths().get("")
    if path is None:
        return None
    for root, mount, _ in _mounts("cgroup2"):
        d = _under(root, mount, path)
        if d.is_dir():
            return d
    return None


def read_int(path: Path, default: int = 0) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def keyed(path: Path) -> dict[str, int]:
    """A flat keyed file (memory.events, memory.oom_control, cpu.stat)."""
    out = {}
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[k] = int(v)
    except OSError:
        pass
    return out


def remove_tree(d: Path) -> bool:
    """rmdir a cgroup and its children, deepest first (cgroup dirs hold only
    virtual files, so plain rmdir is the way). False if some were still busy.
    A group that vanishes meanwhile (an attempt's release in a worker thread racing
    the node's close) is fine: os.walk skips it and its rmdir counts as done."""
    if not d.is_dir():
        return True
    ok = True
    subs = [Path(root) / name for root, dirs, _ in os.walk(d) for name in dirs]
    for sub in sorted(subs, key=lambda p: -len(p.parts)):
        try:
            os.rmdir(sub)
        except FileNotFoundError:
            pass
        except OSError:
            ok = False
    try:
        os.rmdir(d)
    except FileNotFoundError:
        pass
    except OSError:
        ok = False
    return ok


def writable_dir(d: Path) -> str:
    """"" if we may create cgroups under d, else why not."""
    if not d.is_dir():
        return f"{d} does not exist"
    probe = d / f".raftsched-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError as e:
        return f"cannot create a cgroup under {d}: {e.strerror}"
    with contextlib.suppress(OSError):
        probe.rmdir()
    return ""
