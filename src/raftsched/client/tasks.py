"""`@raftsched.task`: a Python function as a cluster task, Celery style.

    @raftsched.task(retry=3, timeout=30)
    def add(a, b):
        return a + b

    job_id = add.submit(client, 1, 2)      # runs add(1, 2) on some node's worker pool
    client.result(job_id)                  # 3
    add(1, 2)                              # still a plain local call

The function is named by its module and qualified name (`package.module:function`),
so it must be importable by the nodes (their pool's `python_path`). Defaults given
to the decorator (retry, timeout, priority, and any `submit` option) can be
overridden per call with `.options(...)`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

if TYPE_CHECKING:
    from raftsched.client.api import Client

P = ParamSpec("P")
R = TypeVar("R")


class Task(Generic[P, R]):
    """A function that can also be submitted to a cluster (see `task`)."""

    def __init__(self, fn: Callable[P, R], defaults: dict[str, Any], target: str | None = None) -> None:
        functools.update_wrapper(self, fn)
        self.__wrapped_task__ = fn
        self.fn = fn
        self.defaults = defaults
        self.target = target or f"{fn.__module__}:{fn.__qualname__}"
        if "<locals>" in self.target:
            raise ValueError(f"{self.target}: a task must be a module-level function (nodes import it)")

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def options(self, **options: Any) -> Task[P, R]:
        """This task with other submit options (retry, timeout, priority, name, pool...)."""
        return Task(self.fn, {**self.defaults, **options}, self.target)

    def submit(self, client: Client, *args: P.args, **kwargs: P.kwargs) -> str:
        """Submit one call; returns the job id (`client.result(job_id)` waits for its value)."""
        return client.submit(python=self.target, args=args, kwargs=kwargs, **self.defaults)

    def spec(self, *args: Any, **kwargs: Any) -> Any:
        """The JobSpec of one call, e.g. for `client.submit_many`, templates, cron or DAGs."""
        from raftsched.client.specs import job_spec

        return job_spec(python=self.target, args=args, kwargs=kwargs, **self.defaults)


def task(fn: Callable[P, R] | None = None, *, retry: Any = None, timeout: float = 0.0,
         priority: int = 0, **options: Any) -> Any:
    """Decorate a module-level function as a task: `@task` or `@task(retry=3, timeout=30,
    priority=5, name=..., pool=..., cpu_millis=..., memory_mib=...)`."""
    defaults: dict[str, Any] = {"retry": retry, "timeout": timeout, "priority": priority, **options}

    def wrap(f: Callable[P, R]) -> Task[P, R]:
        return Task(f, defaults)

    return wrap(fn) if fn is not None else wrap
