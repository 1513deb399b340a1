"""Python task functions the test clusters' worker pools import (their python_path is
the repository root, so targets are `tests.support.pytasks_funcs:<name>`)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import raftsched


def add(a: int, b: int) -> int:
    return a + b


def noop() -> None:
    return None


def describe(tag: str = "") -> dict[str, Any]:
    """What the task sees: its context, environment and working directory."""
    ctx = raftsched.current_task()
    print(f"hello from {ctx.job_id}")
    return {"tag": tag, "job_id": ctx.job_id, "attempt": ctx.attempt, "token": ctx.fencing_token,
            "node": ctx.node_id, "scratch": ctx.scratch, "cwd": os.getcwd(),
            "env": dict(os.environ), "pid": os.getpid()}


def fail_until(attempt_ok: int, ledger: str) -> dict[str, Any]:
    """Raise on attempts before `attempt_ok`; append (attempt, token, pid) to `ledger`."""
    ctx = raftsched.current_task()
    with open(ledger, "a") as f:
        f.write(f"{ctx.attempt} {ctx.fencing_token} {os.getpid()}\n")
    if ctx.attempt < attempt_ok:
        raise ValueError(f"boom on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt, "token": ctx.fencing_token}


def sleep_then(seconds: float, ledger: str = "") -> dict[str, Any]:
    """Write (attempt, token, pid) to `ledger` when starting, sleep, return."""
    ctx = raftsched.current_task()
    if ledger:
        with open(ledger, "a") as f:
            f.write(f"{ctx.attempt} {ctx.fencing_token} {os.getpid()}\n")
    time.sleep(seconds)
    return {"attempt": ctx.attempt, "token": ctx.fencing_token, "pid": os.getpid()}


def big_result(n: int) -> str:
    return "x" * n


def not_json() -> object:
    return {1, 2}


def leave_behind(seconds: float) -> int:
    """Start a child process and return without waiting for it: its pid."""
    import subprocess

    return subprocess.Popen(["sleep", str(seconds)]).pid


def pid() -> int:
    return os.getpid()


_kept: list[bytes] = []


def hog(mib: int) -> int:
    """Keep `mib` MiB alive in this worker (module state survives between tasks); its pid."""
    _kept.append(b"\1" * (mib << 20))
    return os.getpid()


def touch(path: str) -> str:
    Path(path).write_text(raftsched.current_task().job_id)
    return path


@raftsched.task(retry=2, timeout=20, priority=5)
def mul(a: int, b: int) -> int:
    return a * b


def daemonize(seconds: float) -> int:
    """Leave a double-forked process behind (its parent exits at once): its pid."""
    import subprocess

    out = subprocess.run(["sh", "-c", f"sleep {seconds} >/dev/null 2>&1 & echo $!"], capture_output=True,
                         text=True, check=True)
    return int(out.stdout)


def write_scratch(name: str) -> str:
    """Write a file in the task's working directory (its scratch directory)."""
    with open(name, "w") as f:
        f.write("x")
    return os.getcwd()
