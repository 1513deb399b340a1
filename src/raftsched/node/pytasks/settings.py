"""Per-node settings of the Python task worker pool (issue 14), keys of a [[nodes]] table:

    python_workers = 2            # warm worker processes (0: this node runs no Python tasks)
    python_path = ["/srv/app"]    # import path of the pool (relative: to the config file)
    python_executable = ""        # a virtualenv's bin/python ("" = the node's interpreter)
    python_max_tasks = 1000       # a worker is replaced after this many tasks (0 = never)
    python_max_rss_mib = 512      # ... or once its resident memory exceeds this (0 = never)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


class PyConfigError(ValueError):
    pass


@dataclass(frozen=True)
class PyPoolConfig:
    workers: int = 2
    path: tuple[str, ...] = ()
    executable: str = ""
    max_tasks: int = 1000
    max_rss_mib: int = 512


MAX_WORKERS = 256


def _int(n: dict[str, Any], key: str, default: int, where: str, top: int) -> int:
    v = n.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= top:
        raise PyConfigError(f"{where}.{key} must be an integer between 0 and {top}, got {v!r}")
    return v


def parse_pool(n: dict[str, Any], where: str, base: Path) -> PyPoolConfig:
    """The pool settings of one node table; relative paths are taken from `base`."""
    path = n.get("python_path", [])
    if isinstance(path, str):
        path = [path]
    if not isinstance(path, list) or not all(isinstance(x, str) and x for x in path):
        raise PyConfigError(f"{where}.python_path must be a list of directories")
    exe = n.get("python_executable", "")
    if not isinstance(exe, str):
        raise PyConfigError(f"{where}.python_executable must be a path to a python interpreter")
    return PyPoolConfig(
        workers=_int(n, "python_workers", 2, where, MAX_WORKERS),
        path=tuple(str((base / x).resolve()) for x in path),
        executable=str((base / exe).resolve()) if exe and "/" in exe else exe,
        max_tasks=_int(n, "python_max_tasks", 1000, where, 1 << 30),
        max_rss_mib=_int(n, "python_max_rss_mib", 512, where, 1 << 24),
    )
