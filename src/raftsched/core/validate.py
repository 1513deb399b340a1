"""Validation of user-supplied job specs. Pure: returns messages, never raises.

A message names the field and says what would be accepted, so that a user who
reads it can fix the request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from raftsched.core import constraints as cons
from raftsched.core import pytask, retry, runas
from raftsched.core.fit import could_ever_fit
from raftsched.core.model import JobSpec, Resources

MAX_ARGS = 4096
MAX_SPEC_BYTES = 256 * 1024
MAX_PRIORITY = 1000
MAX_TIMEOUT_S = 7 * 24 * 3600.0
MAX_BATCH = 10_000


def validate_spec(spec: JobSpec, max_capacity: Resources | None = None) -> str | None:
    """None if the spec is acceptable, else what is wrong with it."""
    if pytask.is_python(spec):
        err = pytask.validate_python(spec)
        if err:
            return err
    elif spec.use_shell:
        if spec.command:
            return "give either command (argv) or shell with use_shell, not both"
        if not spec.shell.strip():
            return "shell is empty: use_shell=true needs a shell command string"
        if "\0" in spec.shell:
            return "shell contains a NUL byte"
    else:
        if spec.shell:
            return "shell is set but use_shell is false: set use_shell=true or pass an argv list"
        if not spec.command:
            return "command is empty: give the program and its arguments as an argv list"
        if not spec.command[0]:
            return "command[0] (the program) is empty"
        if len(spec.command) > MAX_ARGS:
            return f"command has {len(spec.command)} arguments; at most {MAX_ARGS}"
        for i, arg in enumerate(spec.command):
            if "\0" in arg:
                return f"command[{i}] contains a NUL byte"
    size = sum(len(a) for a in spec.command) + len(spec.shell)
    size += sum(len(k) + len(v) for k, v in spec.env)
    if size > MAX_SPEC_BYTES:
        return f"job spec is {size} bytes; at most {MAX_SPEC_BYTES}"
    for k, v in spec.env:
        if not k or "=" in k or "\0" in k:
            return f"env name {k!r} is invalid: it must be non-empty, without '=' or NUL"
        if "\0" in v:
            return f"env {k} contains a NUL byte"
        if k.startswith("RAFTSCHED_"):
            return f"env {k}: the RAFTSCHED_ prefix is reserved for the scheduler"
    if "\0" in spec.working_dir:
        return "working_dir contains a NUL byte"
    if spec.working_dir and not spec.working_dir.startswith("/"):
        return f"working_dir {spec.working_dir!r} must be an absolute path"
    r = spec.resources
    if r.cpu_millis < 0:
        return f"resources.cpu_millis is {r.cpu_millis}; it must be >= 0 (millicores)"
    if r.memory_mib < 0:
        return f"resources.memory_mib is {r.memory_mib}; it must be >= 0 (MiB)"
    if r.cpu_millis == 0 and r.memory_mib == 0:
        return "resources are all zero after defaults; request some CPU or memory"
    if max_capacity is not None and not could_ever_fit(max_capacity, r):
        return (
            f"resources cpu_millis={r.cpu_millis} memory_mib={r.memory_mib} exceed every "
            f"node of the cluster (largest: cpu_millis={max_capacity.cpu_millis} "
            f"memory_mib={max_capacity.memory_mib}); this job could never run"
        )
    if not -MAX_PRIORITY <= spec.priority <= MAX_PRIORITY:
        return f"priority is {spec.priority}; it must be between {-MAX_PRIORITY} and {MAX_PRIORITY}"
    if not 0 <= spec.timeout_s <= MAX_TIMEOUT_S or spec.timeout_s != spec.timeout_s:
        return f"timeout_seconds is {spec.timeout_s}; it must be between 0 (none) and {MAX_TIMEOUT_S:.0f}"
    if len(spec.name) > 256:
        return "name is longer than 256 characters"
    err = (retry.validate_policy(spec.retry) or cons.validate(spec.constraints)
           or cons.validate_pool(spec.pool))
    if err:
        return err
    if len(spec.sequence_key) > 256 or "\0" in spec.sequence_key:
        return "sequence_key must be at most 256 characters without NUL"
    if spec.run_as and runas.user_error(spec.run_as):
        return runas.user_error(spec.run_as)
    if spec.run_as and pytask.is_python(spec):
        return "run_as is not supported for Python tasks (they run in the node's worker pool)"
    return _validate_limits(spec)


MAX_LIMIT_MIB = 1 << 24  # 16 TiB
MAX_LIMIT_MILLIS = 1 << 20
MAX_PIDS = 1 << 22


def _validate_limits(spec: JobSpec) -> str | None:
    lim, r = spec.limits, spec.resources
    if not 0 <= lim.memory_mib <= MAX_LIMIT_MIB:
        return f"limits.memory_mib is {lim.memory_mib}; it must be between 0 (the request) and {MAX_LIMIT_MIB}"
    if lim.memory_mib and lim.memory_mib < r.memory_mib:
        return (f"limits.memory_mib {lim.memory_mib} is below the request resources.memory_mib "
                f"{r.memory_mib}; a limit may only allow bursting above the request")
    if not 0 <= lim.cpu_millis <= MAX_LIMIT_MILLIS:
        return f"limits.cpu_millis is {lim.cpu_millis}; it must be between 0 (the request) and {MAX_LIMIT_MILLIS}"
    if lim.cpu_millis and lim.cpu_millis < r.cpu_millis:
        return (f"limits.cpu_millis {lim.cpu_millis} is below the request resources.cpu_millis "
                f"{r.cpu_millis}; a limit may only allow bursting above the request")
    if not 0 <= lim.pids <= MAX_PIDS:
        return f"limits.pids is {lim.pids}; it must be between 0 (the node default) and {MAX_PIDS}"
    return None


class StaticNode(NamedTuple):
    """What submit validation knows of a configured node."""

    id: str
    labels: Mapping[str, str]
    capacity: Resources
    dedicated: str = ""  # the pool it is dedicated to, if any


def check_placeable(spec: JobSpec, nodes: Iterable[tuple[Any, ...]]) -> str | None:
    """None if some node of the cluster (id, labels, capacity[, dedicated]) could ever run
    the job: the placement filters on empty nodes (labels, pool, capacity).

    Otherwise a message naming the constraint, the pool or the resources that no node meets.
    """
    all_nodes = [StaticNode(*n) for n in nodes]
    matching = [n for n in all_nodes if cons.unmet_labels(spec, n.labels) is None]
    if not matching:
        wanted = cons.effective(spec)
        unmet = [c.describe() for c in wanted
                 if not any(cons.holds(c, n.labels) for n in all_nodes)]
        what = f"constraint {unmet[0]}" if unmet else "constraints " + ", ".join(
            c.describe() for c in wanted) + " together"
        seen = "; ".join(f"{n.id}: {dict(n.labels) or '{}'}" for n in all_nodes)
        return (f"constraints: no node of the cluster satisfies {what} (node labels: {seen}); "
                "this job could never run")
    open_to = [n for n in matching if cons.pool_refusal(spec, n.dedicated) is None]
    if not open_to:
        pools = ", ".join(f"{n.id}: {n.dedicated}" for n in matching)
        return (f"pool: every node satisfying the constraints is dedicated to a pool the job "
                f"does not ask for ({pools}); set pool to one of them")
    r = spec.resources
    if not any(could_ever_fit(n.capacity, r) for n in open_to):
        ids = ", ".join(n.id for n in open_to)
        return (f"resources cpu_millis={r.cpu_millis} memory_mib={r.memory_mib} exceed every node "
                f"satisfying the constraints ({ids}); this job could never run")
    return None


def check_job(spec: JobSpec, nodes: Iterable[tuple[Any, ...]]) -> str | None:
    """`validate_spec` against the cluster's largest node, then `check_placeable`."""
    all_nodes = [StaticNode(*n) for n in nodes]
    largest = Resources(max((n.capacity.cpu_millis for n in all_nodes), default=0),
                        max((n.capacity.memory_mib for n in all_nodes), default=0))
    return validate_spec(spec, largest) or check_placeable(spec, all_nodes)
