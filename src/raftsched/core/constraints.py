"""Job constraints on node labels. Pure; shared by submit validation, placement and apply."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from raftsched.core.model import CONSTRAINT_OPS, Constraint


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
