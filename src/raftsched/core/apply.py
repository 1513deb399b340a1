"""Applying commands: the only way the replicated state changes. Pure and deterministic.

`apply(state, cmd)` never reads a clock, random numbers or the network: time and
ids arrive inside the command. A rejection is returned as a `Result`, never
raised, so every replica takes the same path. Each command's request id is
remembered (bounded table): a command whose id was already applied returns the
first result and changes nothing (Raft thesis §6.3, client sessions).

One explicit dispatch table, `HANDLERS`, merged from the job lifecycle handlers
(`jobs.py`), the node handlers (`nodes.py`), the dead-letter queue (`dlq.py`) and the templates/schedules/workflows
handlers (`workflows.py`).
"""

from __future__ import annotations

import json

from raftsched.core import acl, batches, dlq, jobs, members, nodes, nodeupdate, runas, settings, workflows
from raftsched.core.commands import Command, GcJobs
from raftsched.core.snapshot import result_to_wire
from raftsched.core.state import (
    ClusterState,
    Code,
    Handler,
    Result,
    ok,
    result_from_wire,
)

DEDUP_CAPACITY = 100_000


def _apply_gc(state: ClusterState, cmd: GcJobs) -> Result:
    """Forget every terminal job finished before the cutoff. The set removed is
    defined by that predicate alone, so every replica removes the same jobs."""
    gone = state.finished_before(cmd.cutoff)
    for job in gone:
        state.forget(job)
    return ok(len(gone))


def _merge(*tables: dict[type, Handler]) -> dict[type, Handler]:
    out: dict[type, Handler] = {}
    for t in tables:
        dup = out.keys() & t.keys()
        if dup:
            raise TypeError(f"commands with two handlers: {sorted(c.__name__ for c in dup)}")
        out.update(t)
    return out


HANDLERS: dict[type, Handler] = _merge({GcJobs: _apply_gc}, jobs.HANDLERS, nodes.HANDLERS,
                                       batches.HANDLERS, dlq.HANDLERS, workflows.HANDLERS,
                                       acl.HANDLERS, runas.HANDLERS, nodeupdate.HANDLERS,
                                       settings.HANDLERS, members.HANDLERS)


def apply(state: ClusterState, cmd: Command) -> Result:
    """Apply one command. Returns its result; a repeated request id returns the first."""
    fp = getattr(cmd, "fp", "")
    seen = state.dedup.get(cmd.rid)
    if seen is not None:
        if fp and state.fingerprints.get(cmd.rid, fp) != fp:
            return Result(Code.INVALID, None, reused_message(cmd.rid))
        return seen
    handler = HANDLERS.get(type(cmd))
    if handler is None:
        res = Result(Code.INVALID, None, f"unknown command {type(cmd).__name__}")
    else:
        res = handler(state, cmd)
    # Normalise to the wire shape so a result read back from a snapshot is identical.
    res = result_from_wire(json.loads(json.dumps(result_to_wire(res))))
    state.dedup[cmd.rid] = res
    state.dig.dedup_added(cmd.rid, res)
    if len(state.dedup) > DEDUP_CAPACITY:
        state.dig.dedup_removed(*state.dedup.popitem(last=False))
    if fp:
        state.fingerprint_added(cmd.rid, fp)
        if len(state.fingerprints) > DEDUP_CAPACITY:
            state.fingerprint_removed(*state.fingerprints.popitem(last=False))
    return res


def reused_message(rid: str) -> str:
    return (f"request_id {rid[:64]!r} was already used for a different request; "
            "use a new request_id for a new request")
