"""Bounds on every field of every request, checked before anything else reads it.

`check(request)` walks the message (it is at most `MAX_MESSAGE_BYTES` long, so
the walk is bounded too) and returns a message naming the first field out of
bounds: a string longer than its limit, a list or map with too many entries, an
enum number the API does not define, a NaN, infinite or out-of-range number.
Defaults apply to every field; `STRING_LIMITS` / `COUNT_LIMITS` raise or lower
them for named fields (by their proto field name). The public API is checked by
the auth interceptor; NodeAgent requests by the agent, once the caller's node
certificate has been checked.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from raftsched.core.pytask import MAX_RESULT_BYTES

MAX_MESSAGE_BYTES = 16 << 20  # gRPC max receive size of the public API (server and client)
DEFAULT_STRING = 256
DEFAULT_COUNT = 1000
MAX_ABS_NUMBER = 1e11  # seconds: timestamps (year ~5138), durations and factors stay below

STRING_LIMITS: dict[str, int] = {
    "command": 64 * 1024,  # one argv element
    "shell": 256 * 1024,
    "working_dir": 4096,
    "description": 4096,
    "page_token": 64,
    "request_id": 128,
    "secret": 256,
    "cron": 512,
    # NodeAgent (node-to-node) requests
    "error": 4096,
    "stdout_tail": 8192,  # a tail is the last 4096 bytes of a stream
    "stderr_tail": 8192,
    "isolation": 1024,
    # Python tasks (issue 14); core/pytask.py bounds args + kwargs together
    "target": 512,
    "args_json": 64 * 1024,
    "kwargs_json": 64 * 1024,
    "result_json": MAX_RESULT_BYTES,  # a report's return value (the node fails larger ones)
}
COUNT_LIMITS: dict[str, int] = {
    "specs": 10_000,
    "command": 4096,
    "job_ids": 10_000,
    "idempotency_keys": 10_000,
    "env": 1024,
    "constraints": 64,
    "jobs": 10_000,  # workflow jobs (the DAG check says at most 1000)
    "depends_on": 1000,
    "labels": 256,
    "namespaces": 64,
    # NodeAgent (node-to-node) requests; StartJobsRequest.jobs is "jobs" above
    "reports": 10_000,  # a worker sends at most 5000 per call
    "running": 100_000,  # attempts a node runs at once, in each heartbeat
}
MAP_VALUE_LIMITS: dict[str, int] = {"env": 64 * 1024}

_STRING = FieldDescriptor.TYPE_STRING
_BYTES = FieldDescriptor.TYPE_BYTES
_MESSAGE = FieldDescriptor.TYPE_MESSAGE
_ENUM = FieldDescriptor.TYPE_ENUM
_FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


# Lists whose items a batch often repeats (one spec, `submit --count`): each distinct
# item is checked once. Elsewhere (reports, starts) items differ: serialising each to
# compare would only cost.
DEDUP_LISTS = frozenset({"specs"})

_MAP, _LIST, _MSG, _SCALAR = range(4)
# per field descriptor: (kind, count limit, string limit); filled as fields are met
_kinds: dict[FieldDescriptor, tuple[int, int, int]] = {}


def _is_repeated(f: FieldDescriptor) -> bool:
    rep = getattr(f, "is_repeated", None)  # protobuf >= 6; `label` before
    return bool(rep) if rep is not None else f.label == FieldDescriptor.LABEL_REPEATED


def _kind(f: FieldDescriptor) -> tuple[int, int, int]:
    k = _kinds.get(f)
    if k is None:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            kind = _MAP
        elif _is_repeated(f):
            kind = _LIST
        elif f.type == _MESSAGE:
            kind = _MSG
        else:
            kind = _SCALAR
        k = _kinds[f] = (kind, COUNT_LIMITS.get(f.name, DEFAULT_COUNT), STRING_LIMITS.get(f.name, DEFAULT_STRING))
    return k


def _scalar(f: FieldDescriptor, v: Any, str_limit: int) -> str | None:
    """What is wrong with one value (the caller names where), or None."""
    if f.type in (_STRING, _BYTES):
        if len(v) > str_limit:
            return f"{len(v)} {'characters' if f.type == _STRING else 'bytes'}; at most {str_limit}"
    elif f.type == _ENUM:
        if f.enum_type.values_by_number.get(v) is None:
            names = ", ".join(sorted(f.enum_type.values_by_name))
            return f"unknown value {v}; use one of {names}"
    elif f.type in _FLOATS and (not math.isfinite(v) or abs(v) > MAX_ABS_NUMBER):
        return f"{v!r} is not a finite number within +-{MAX_ABS_NUMBER:g}"
    return None


def check(msg: Any, prefix: str = "") -> str | None:
    """None if every field of `msg` is within bounds, else what is not (naming the field).
    Locations are spelled out only for the field at fault."""
    if not isinstance(msg, Message):
        return None
    for f, value in msg.ListFields():
        kind, count_limit, str_limit = _kind(f)
        if kind == _SCALAR:
            err = _scalar(f, value, str_limit)
            if err:
                return f"{prefix}{f.name}: {err}"
        elif kind == _MSG:
            err = check(value, f"{prefix}{f.name}.")
            if err:
                return err
        elif kind == _LIST:
            err = _check_list(f, value, count_limit, str_limit)
            if err:
                return prefix + f.name + err
        else:
            err = _check_map(f, value, count_limit)
            if err:
                return prefix + f.name + err
    return None


def _check_list(f: FieldDescriptor, values: Any, limit: int, str_limit: int) -> str | None:
    """What is wrong, from just after the field's name ("[3].x: ..." or ": ..."), or None."""
    if len(values) > limit:
        return f": {len(values)} entries; at most {limit}"
    if f.type == _MESSAGE:
        seen: set[bytes] | None = set() if f.name in DEDUP_LISTS else None
        for i, v in enumerate(values):
            if seen is not None:
                key = v.SerializeToString(deterministic=True)
                if key in seen:
                    continue
                seen.add(key)
            err = check(v)
            if err:
                return f"[{i}].{err}"
        return None
    for i, v in enumerate(values):
        err = _scalar(f, v, str_limit)
        if err:
            return f"[{i}]: {err}"
    return None


def _check_map(f: FieldDescriptor, values: Any, limit: int) -> str | None:
    """What is wrong, from just after the field's name, or None."""
    if len(values) > limit:
        return f": {len(values)} entries; at most {limit}"
    key_f = f.message_type.fields_by_name["key"]
    val_f = f.message_type.fields_by_name["value"]
    val_limit = MAP_VALUE_LIMITS.get(f.name, DEFAULT_STRING)
    for k, v in values.items():
        err = _scalar(key_f, k, DEFAULT_STRING)
        if err:
            return f" key {str(k)[:40]!r}: {err}"
        if val_f.type == _MESSAGE:
            err = check(v)
            if err:
                return f"[{str(k)[:40]!r}].{err}"
        else:
            err = _scalar(val_f, v, val_limit)
            if err:
                return f"[{str(k)[:40]!r}]: {err}"
    return None
