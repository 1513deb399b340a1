"""Apply committed entries in time-bounded slices (issue 12).

pysyncobj applies every committed entry at once inside its tick, before the leader
sends its next append_entries and before the node reads its sockets. When a burst
commits together (a 10,000-job submission is about 80 entries of 256 jobs, each a
few milliseconds to apply on every replica), that one tick ran for hundreds of
milliseconds: the leader's heartbeats to its followers stopped for as long, and
their election timers (0.3-0.6 s) ran out under load. Here a tick applies for at
most `BUDGET` seconds (always at least one entry), then goes on with the tick
(append_entries out, messages in); the next ticks apply the rest without waiting
in poll (SafeSyncObj._onTick). Entries are applied in order, exactly once, with
the same callbacks as pysyncobj's own loop (`SyncObj.__applyLogEntries`).
"""

from __future__ import annotations

import logging
from typing import Any

import pysyncobj.syncobj as _ps
from pysyncobj.config import FAIL_REASON
from pysyncobj.syncobj import SyncObj, SyncObjExceptionWrongVer

logger = logging.getLogger(__name__)

if not hasattr(SyncObj, "_SyncObj__applyLogEntries"):
    raise ImportError("applyslice: pysyncobj internals changed (_SyncObj__applyLogEntries missing)")

BUDGET = 0.02  # seconds of applying per tick
CHUNK = 64  # entries read from the journal at a time


def apply_slice(so: Any, budget: float = BUDGET) -> bool:
    """Apply committed entries for at most `budget` seconds. Returns whether the leader
    should send append_entries now (pysyncobj's contract: it applied something and
    batching is off)."""
    applied = so._SyncObj__raftLastApplied
    commit = so._SyncObj__raftCommitIndex
    if commit <= applied:
        return False
    deadline = _ps.monotonicTime() + budget  # looked up each time: tests drive the clock
    waiting = so._SyncObj__commandsWaitingCommit
    while so._SyncObj__raftLastApplied < commit:
        first = so._SyncObj__raftLastApplied + 1
        entries = so._SyncObj__getEntries(first, min(CHUNK, commit - first + 1))
        if not entries:
            break
        for entry in entries:
            try:
                term_id = entry[2]
                subscribers = waiting.pop(entry[1], [])
                res = so._SyncObj__doApplyCommand(entry[0])
                for subscribe_term, callback in subscribers:
                    if subscribe_term == term_id:
                        callback(res, FAIL_REASON.SUCCESS)
                    else:
                        callback(None, FAIL_REASON.DISCARDED)
                so._SyncObj__raftLastApplied += 1
            except SyncObjExceptionWrongVer as e:  # as pysyncobj: logged, not applied
                logger.error("request to switch to unsupported code version (self version: %d, "
                             "requested version: %d)", so._SyncObj__selfCodeVersion, e.ver)
                return not so._SyncObj__conf.appendEntriesUseBatch
            if _ps.monotonicTime() > deadline:
                return not so._SyncObj__conf.appendEntriesUseBatch
    return not so._SyncObj__conf.appendEntriesUseBatch


def backlog(so: Any) -> bool:
    """Committed entries wait to be applied (the next tick should not wait in poll)."""
    return bool(so._SyncObj__raftLastApplied < so._SyncObj__raftCommitIndex)


class SlicedApply:
    """Mixin of SafeSyncObj: its apply loop is `apply_slice`."""

    #: set to False to apply every committed entry in one tick (pysyncobj's behaviour)
    _rs_apply_slices = True

    def _SyncObj__applyLogEntries(self) -> bool:
        if not self._rs_apply_slices:
            return bool(super()._SyncObj__applyLogEntries())  # type: ignore[misc]
        return apply_slice(self)
