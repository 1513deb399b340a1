"""Building `JobSpec` messages from Python values: shared by `raftsched.Client`, the
`@raftsched.task` decorator and the CLI."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from raftsched.v1 import jobs_pb2

RetryArg = int | jobs_pb2.RetryPolicy | None


def retry_policy(retry: RetryArg) -> jobs_pb2.RetryPolicy | None:
    """`retry=3`: up to 3 failed attempts with the default backoff; a RetryPolicy as is."""
    if retry is None or isinstance(retry, jobs_pb2.RetryPolicy):
        return retry
    if isinstance(retry, bool) or not isinstance(retry, int):
        raise TypeError(f"retry must be an int (max attempts) or a RetryPolicy, got {type(retry).__name__}")
    return jobs_pb2.RetryPolicy(max_attempts=retry)


def dumps_args(args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """args and kwargs as the JSON texts of a Python task (ValueError if not JSON-serialisable)."""
    try:
        a = json.dumps(list(args), separators=(",", ":"), allow_nan=False) if args else ""
        k = json.dumps(dict(kwargs), separators=(",", ":"), allow_nan=False) if kwargs else ""
    except (TypeError, ValueError) as e:
        raise ValueError(f"Python task arguments must be JSON-serialisable: {e}") from None
    return a, k


def job_spec(command: Sequence[str] | str | None = None, *, python: str | None = None,
             args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
             name: str = "", priority: int = 0, timeout: float = 0.0, retry: RetryArg = None,
             cpu_millis: int = 0, memory_mib: int = 0, env: Mapping[str, str] | None = None,
             working_dir: str = "", pool: str = "", namespace: str = "",
             constraints: Sequence[tuple[str, str, str]] = (),
             sequence_key: str = "") -> jobs_pb2.JobSpec:
    """A job spec: a command (argv list; a string runs through /bin/sh -c) or a Python task
    (`python="package.module:function"` with JSON-serialisable `args`/`kwargs`)."""
    spec = jobs_pb2.JobSpec(name=name, priority=priority, timeout_seconds=timeout,
                            env=dict(env or {}), working_dir=working_dir, pool=pool,
                            namespace=namespace, sequence_key=sequence_key)
    if python is not None:
        if command is not None:
            raise ValueError("give either command or python, not both")
        a, k = dumps_args(args, kwargs)
        spec.python.CopyFrom(jobs_pb2.PythonCall(target=python, args_json=a, kwargs_json=k))
    elif isinstance(command, str):
        spec.shell, spec.use_shell = command, True
    elif command is not None:
        spec.command.extend(command)
    else:
        raise ValueError("give a command (argv list or shell string) or python='module:function'")
    if cpu_millis or memory_mib:
        spec.resources.CopyFrom(jobs_pb2.Resources(cpu_millis=cpu_millis, memory_mib=memory_mib))
    policy = retry_policy(retry)
    if policy is not None:
        spec.retry.CopyFrom(policy)
    for key, op, value in constraints:
        spec.constraints.append(jobs_pb2.Constraint(key=key, op=op, value=value))
    return spec
