"""Cluster-wide scheduling settings changed at runtime (issue 15): `raftsched operator
config set KEY VALUE`. Pure and deterministic.

An override is replicated (state extension "settings": key -> canonical text) and wins
over cluster.toml; a key without one takes the file's value (`effective`). Only settings
the leader and the API read afresh at each decision are here; the others need every node
restarted (`RESTART_ONLY`, docs/operations.md "Rolling restart / upgrade"). The
command, `SetSetting`, is in `core.runtimeops`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from raftsched.core.placement import Strategy
from raftsched.core.runqueue import QueueOrder
from raftsched.core.runtimeops import SetSetting
from raftsched.core.state import ClusterState, Code, Handler, Result, ok, state_extension

KEYS = ("strategy", "queue_order", "aging_rate", "job_retention", "idempotency_retention")
MAX_SECONDS = 10 * 365 * 86400.0
MAX_AGING_RATE = 1e6
_READ_AT_START = "read once when a node starts"
RESTART_ONLY: dict[str, str] = {
    "heartbeat_interval": _READ_AT_START, "heartbeat_ttl": _READ_AT_START,
    "lease": _READ_AT_START, "kill_grace": _READ_AT_START,
    "election_timeout_min": "a Raft timer set when the node starts",
    "election_timeout_max": "a Raft timer set when the node starts",
    "append_entries_batch": "a Raft option set when the node starts",
    "log_compaction_entries": "a Raft option set when the node starts",
    "fsync": "the journal's durability mode, set when the node starts",
    "pre_vote": "a Raft option set when the node starts",
    "check_quorum": "a Raft option set when the node starts",
    "secret": "the Raft transport's key", "tls": "the listeners' TLS setup",
    "acl": "the listeners' authentication", "insecure_i_know": "checked when a node starts",
    "data_dir": "where a node keeps its journal", "name": "the cluster's identity",
    "nodes": "node addresses (membership: `raftsched operator members`)",
    "metrics_enabled": _READ_AT_START, "isolation": "the executor's setup",
    "log_format": _READ_AT_START, "log_level": _READ_AT_START,
}


class SettingError(ValueError):
    """A key or value that cannot be set; the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The runtime-changeable settings in effect."""

    strategy: Strategy
    queue_order: QueueOrder
    aging_rate: float
    job_retention: float
    idempotency_retention: float


def base_of(cfg: Any) -> Settings:
    """The settings of a ClusterConfig (cluster.toml)."""
    return Settings(**{k: getattr(cfg, k) for k in KEYS})


def key_error(key: str) -> str | None:
    if key in KEYS:
        return None
    if key in RESTART_ONLY:
        return (f"key {key!r} cannot change at runtime ({RESTART_ONLY[key]}): change it in "
                "cluster.toml on every node and restart them one at a time (docs/operations.md, "
                "Rolling restart / upgrade)")
    return f"key {key[:64]!r}: not a cluster setting; settable at runtime: {', '.join(KEYS)}"


def _number(key: str, value: str, zero_ok: bool, high: float, what: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise SettingError(f"value {value[:64]!r} for {key}: not a number ({what})") from None
    if not math.isfinite(v) or v < 0 or v > high or (v == 0 and not zero_ok):
        low = ">= 0" if zero_ok else "> 0"
        raise SettingError(f"value {value[:64]!r} for {key}: must be {low} and <= {high:g} ({what})")
    return v


def parse(key: str, value: str) -> tuple[Any, str]:
    """(typed value, canonical text) of `value` for `key`, or SettingError naming both."""
    err = key_error(key)
    if err:
        raise SettingError(err)
    enum: type[StrEnum] | None = {"strategy": Strategy, "queue_order": QueueOrder}.get(key)
    if enum is not None:
        try:
            e = enum(value)
        except ValueError:
            choices = ", ".join(m.value for m in enum)
            raise SettingError(f"value {value[:64]!r} for {key}: one of {choices}") from None
        return e, e.value
    if key == "aging_rate":
        v = _number(key, value, True, MAX_AGING_RATE, "priority points per second waited")
    else:
        v = _number(key, value, False, MAX_SECONDS, "seconds")
    return v, repr(v)


state_extension("settings", dict, lambda d: dict(sorted(d.items())), dict, optional=True)


def overrides(state: ClusterState) -> dict[str, str]:
    """The replicated overrides (key -> canonical text)."""
    d: dict[str, str] = state.ext["settings"]
    return d


def effective(state: ClusterState, base: Settings) -> Settings:
    """`base` (cluster.toml) with the replicated overrides applied. Caller holds the lock."""
    o = overrides(state)
    if not o:
        return base
    return replace(base, **{k: parse(k, v)[0] for k, v in o.items()})


def _apply_set(state: ClusterState, cmd: SetSetting) -> Result:
    """Value: the canonical text stored ("" after a reset)."""
    table = overrides(state)
    if not cmd.value:
        err = key_error(cmd.key)
        if err:
            return Result(Code.INVALID, None, err)
        table.pop(cmd.key, None)
        return ok("")
    try:
        _, text = parse(cmd.key, cmd.value)
    except SettingError as e:
        return Result(Code.INVALID, None, str(e))
    table[cmd.key] = text
    return ok(text)


HANDLERS: dict[type, Handler] = {SetSetting: _apply_set}
