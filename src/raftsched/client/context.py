"""What a running Python task knows about itself (issue 14).

Inside a task function, `raftsched.current_task()` returns its `TaskContext`:
the job id, the attempt number and the attempt's fencing token (pass the token
to any external system you write to, so a stale attempt can be refused there),
the node it runs on and its scratch directory (also its working directory).
Stdlib only: imported by the worker processes.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TaskContext:
    job_id: str
    attempt: int
    fencing_token: int
    node_id: str
    scratch: str


_current: ContextVar[TaskContext | None] = ContextVar("raftsched_task", default=None)


def current_task() -> TaskContext:
    """The context of the Python task running now; RuntimeError outside one."""
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("raftsched.current_task() is only available inside a running Python task")
    return ctx


def _enter(ctx: TaskContext | None) -> object:
    return _current.set(ctx)


def _leave(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
