"""Job constraints on node labels, and node pools. Pure; shared by submit validation,
placement and apply.

Pools: a node's pool is its `pool` label. A job asks for pools with its `pool`
field (an implicit constraint pool=<it>) or with a constraint `pool=X` /
`pool in X,Y`. A node may be dedicated to its pool (cluster.toml `dedicated =
true`): then it takes only jobs that ask for that pool (Kubernetes taints and
tolerations, Nomad node pools). Nodes that are not dedicated take any job whose
constraints they satisfy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from raftsched.core.model import CONSTRAINT_OPS, Constraint, JobSpec

POOL_LABEL = "pool"
_POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def _values(c: Constraint) -> set[str]:
    return {v.strip() for v in c.value.split(",") if v.strip()}


def holds(c: Constraint, labels: Mapping[str, str]) -> bool:
    have = labels.get(c.key)
    if c.op == "eq":
        return have == c.value
    if c.op == "ne":
        return have != c.value
    if c.op == "in":
        return have is not None and have in _values(c)
    if c.op == "not_in":
        return have is None or have not in _values(c)
    if c.op == "exists":
        return have is not None
    if c.op == "not_exists":
        return have is None
    return False


def first_unmet(constraints: Iterable[Constraint], labels: Mapping[str, str]) -> Constraint | None:
    """The first constraint these labels do not satisfy, or None if all hold."""
    for c in constraints:
        if not holds(c, labels):
            return c
    return None


def satisfied(constraints: Iterable[Constraint], labels: Iterable[tuple[str, str]]) -> bool:
    return first_unmet(constraints, dict(labels)) is None


def effective(spec: JobSpec) -> tuple[Constraint, ...]:
    """The job's constraints, with its `pool` field as the constraint pool=<pool>."""
    if spec.pool:
        return (*spec.constraints, Constraint(POOL_LABEL, "eq", spec.pool))
    return spec.constraints


def asked_pools(spec: JobSpec) -> frozenset[str]:
    """The pools a job asks for by name: its `pool` field, pool=X and `pool in X,Y` constraints."""
    out = {spec.pool} if spec.pool else set()
    for c in spec.constraints:
        if c.key == POOL_LABEL and c.op == "eq":
            out.add(c.value)
        elif c.key == POOL_LABEL and c.op == "in":
            out |= _values(c)
    return frozenset(out)


def pool_refusal(spec: JobSpec, dedicated: str) -> str | None:
    """Why a node dedicated to pool `dedicated` ("" = not dedicated) refuses the job, or None."""
    if not dedicated or dedicated in asked_pools(spec):
        return None
    return f"dedicated to pool {dedicated}, which the job does not ask for"


def unmet_labels(spec: JobSpec, labels: Mapping[str, str]) -> str | None:
    """Why these node labels do not satisfy the job's constraints (pool included), or None."""
    unmet = first_unmet(effective(spec), labels)
    if unmet is None:
        return None
    have = labels.get(unmet.key)
    node_has = f"has {unmet.key}={have}" if have is not None else f"has no label {unmet.key}"
    return f"does not satisfy constraint {unmet.describe()} ({node_has})"


def validate_pool(pool: str) -> str | None:
    if pool and not _POOL_NAME.match(pool):
        return (f"pool {pool!r} is not a pool name: 1-63 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit")
    return None


def validate(constraints: Iterable[Constraint]) -> str | None:
    for i, c in enumerate(constraints):
        if not c.key or any(ch in c.key for ch in "=!, \0"):
            return f"constraints[{i}]: key {c.key!r} must be a non-empty label name"
        if c.op not in CONSTRAINT_OPS:
            return f"constraints[{i}]: op {c.op!r} is unknown; use one of {', '.join(CONSTRAINT_OPS)}"
        if c.op in ("in", "not_in") and not _values(c):
            return f"constraints[{i}] ({c.key} {c.op}): give at least one value (comma-separated)"
        if c.op in ("exists", "not_exists") and c.value:
            return f"constraints[{i}] ({c.key} {c.op}) takes no value"
    return None


def parse(text: str) -> Constraint:
    """CLI syntax: key=v, key!=v, key=a|b (in), key!=a|b (not in), key (exists), !key."""
    t = text.strip()
    if "!=" in t:
        k, v = t.split("!=", 1)
        vals = v.split("|")
        return Constraint(k.strip(), "not_in" if len(vals) > 1 else "ne", ",".join(vals))
    if "=" in t:
        k, v = t.split("=", 1)
        vals = v.split("|")
        return Constraint(k.strip(), "in" if len(vals) > 1 else "eq", ",".join(vals))
    if t.startswith("!"):
        return Constraint(t[1:].strip(), "not_exists")
    return Constraint(t, "exists")
