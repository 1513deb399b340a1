"""raftsched: a Raft-replicated, peer-to-peer distributed job scheduler.

The public Python API (imported lazily, so a worker process or the CLI pays only
for what it uses):

- `Client`: connect to a cluster, submit/get/wait/result/cancel/watch/list jobs,
  templates, cron schedules and DAGs (raftsched/client/api.py);
- `AsyncClient`: its asyncio variant for submit/get/wait/result/cancel
  (raftsched/client/aio.py);
- `task`: the `@raftsched.task(retry=..., timeout=..., priority=...)` decorator,
  with `.submit(client, *args)` (raftsched/client/tasks.py);
- `current_task()` / `TaskContext`: inside a Python task, its job id, attempt
  and fencing token (raftsched/client/context.py);
- `TaskError`: raised by `Client.result()` for a job that did not succeed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "Task", "TaskContext", "TaskError", "current_task", "task"]

if TYPE_CHECKING:
    from raftsched.client.aio import AsyncClient
    from raftsched.client.api import Client, TaskError
    from raftsched.client.context import TaskContext, current_task
    from raftsched.client.tasks import Task, task

_LAZY = {"AsyncClient": "raftsched.client.aio", "Client": "raftsched.client.api", "TaskError": "raftsched.client.api",
         "TaskContext": "raftsched.client.context", "current_task": "raftsched.client.context",
         "Task": "raftsched.client.tasks", "task": "raftsched.client.tasks"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'raftsched' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
