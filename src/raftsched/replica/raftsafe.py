"""Raft log-safety and journal-durability layer over pysyncobj 0.3.17.

Rule enforced (Raft paper, section 5.3, AppendEntries receiver rules 3 and 4):
on an append_entries whose prevLogIdx/prevLogTerm matches, a follower must
truncate its log only from the first entry that *conflicts* (same index,
different term) and must otherwise only append the entries it does not hold
yet.  pysyncobj instead deletes everything after prevLogIdx on every matching
append_entries.  Its leader rewinds nextIndex on every success reply while
newer append_entries are still in flight, so under load a follower keeps
receiving stale/re-sent messages with an old prevLogIdx and cuts off entries
it has already committed and applied ("truncating already-applied log
entries ...", a lastApplied beyond the log end, IndexError after compaction,
"raftCommitIndex exceeds journal end" after restart).

SafeSyncObj rewrites each append_entries before pysyncobj sees it:

* leading entries already held with the same (index, term) are dropped
  (``stale_entries_dropped``);
* a conflicting entry above max(commitIndex, lastApplied) lets pysyncobj truncate
  from that index (``conflicts_truncated``); a conflict at or below it would remove
  a committed entry, so the message is dropped and an error logged
  (``truncations_refused``) - committed entries are never removed;
* if nothing new remains, the message becomes a heartbeat anchored at the
  follower's last entry, so nothing is deleted; the success reply is patched to
  ``next_node_idx = M + 1`` and the leader commit index clamped to M, where M is
  the highest index provably shared with the leader: the last index covered by
  the message, or the follower's last index if that entry has the leader's term
  (only this leader creates entries of its term; Log Matching Property).  So the
  leader's matchIndex never exceeds what the follower holds (pysyncobj itself
  never lowers it).
* on the leader, a success next_node_idx no longer rewinds nextIndex below
  entries in flight (``next_index_rewinds_avoided``); "reset" replies still do.
* replies (next_node_idx) carry the follower's term, and a leader drops every reply
  not of its current term (``stale_replies_dropped``). pysyncobj's replies carry no
  term: a success reply to an older term's append_entries, held in a TCP queue across
  a partition and delivered once this node leads again, raised matchIndex over
  entries the follower no longer held, so the leader committed and acknowledged
  entries only it had (the lost batch of issue 20; tests/unit/test_stale_replies.py).

Durability (``fsync=`` on SafeSyncObj: always | batch | never): see `journal`.
Snapshots and compaction (every mode; fsyncs only when not "never"): see
`durable` — checksummed snapshots written temp + fsync + rename + directory fsync,
compaction into a new journal file, and the log suffix kept after a snapshot
install or a restart (Raft section 7).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import pysyncobj.syncobj as _syncobj_module
from pysyncobj import SyncObj
from pysyncobj import pickle as _pickle
from pysyncobj.journal import FileJournal
from pysyncobj.node import TCPNode
from pysyncobj.transport import TCPTransport

from raftsched.replica import applyslice
from raftsched.replica.checkquorum import SENT_KEY, CheckQuorum
from raftsched.replica.durable import (
    DurableSerializer,
    check_snapshot,
    fsync_dir,
)
from raftsched.replica.journal import DurableFileJournal
from raftsched.replica.prevote import PreVote

logger = logging.getLogger(__name__)

FSYNC_MODES = ("always", "batch", "never")

# Name-mangled pysyncobj internals this module hooks; fail loudly if they move.
for _name in ("_SyncObj__onMessageReceived", "_SyncObj__sendNextNodeIdx",
              "_SyncObj__loadDumpFile", "_SyncObj__deleteEntriesTo"):
    if not hasattr(SyncObj, _name):
        raise ImportError(f"raftsafe: pysyncobj internals changed ({_name} missing)")


_PYSYNCOBJ_SERIALIZER = _syncobj_module.Serializer



class SafeSyncObj(applyslice.SlicedApply, SyncObj):
    """SyncObj whose followers never truncate committed/applied log entries."""

    #: set to False (class or instance) to get plain pysyncobj behaviour
    raftsafe_enabled = True
    #: set to False to accept next_node_idx replies of any term (pysyncobj's behaviour)
    raftsafe_reply_terms = True
    #: set to False to let snapshot chunks commit and acknowledge the kept log suffix
    raftsafe_install_guard = True
    #: flush period for fsync="batch", seconds
    fsync_batch_interval = 0.05

    def __init__(self, selfNode, otherNodes, conf=None, consumers=None, nodeClass=TCPNode,
                 transport=None, transportClass=TCPTransport, *, fsync: str = "never",
                 pre_vote: bool = True, check_quorum: bool = True):
        if fsync not in FSYNC_MODES:
            raise ValueError(f"fsync must be one of {FSYNC_MODES}, got {fsync!r}")
        if fsync != "never" and (conf is None or conf.journalFile is None):
            raise ValueError(f"fsync={fsync!r} needs conf.journalFile")
        # Set before SyncObj.__init__: the tick thread starts inside it, and
        # attributes present then are excluded from pysyncobj's snapshots.
        self._rs_fsync = fsync
        self._rs_journal = None
        # called with each tick's overrun beyond its wait (seconds): Raft tick lag
        self._rs_tick_observer: Callable[[float], None] | None = None
        self._rs_reply_next = None
        self._rs_installing = False  # handling a snapshot chunk from the leader
        self._rs_installed: int | None = None  # last index of the snapshot just installed
        # pre-vote and leader stickiness (see `prevote`); set before the tick thread starts
        self._rs_prevote: PreVote | None = None
        self._rs_want_prevote = pre_vote
        # check-quorum and per-peer contact times (see `checkquorum`); made on the first tick
        self._rs_checkquorum: CheckQuorum | None = None
        self._rs_want_checkquorum = check_quorum
        self._rs_echo: float | None = None  # leader's send stamp of the append_entries being handled
        self._rs_stats = dict.fromkeys(
            ("stale_entries_dropped", "conflicts_truncated", "truncations_refused",
             "messages_rewritten", "next_index_rewinds_avoided", "stale_replies_dropped",
             "install_acks_clamped"), 0)
        if conf is not None and conf.fullDumpFile and os.path.exists(conf.fullDumpFile):
            check_snapshot(conf.fullDumpFile)  # a damaged snapshot: refuse to start
        serializer = type("Serializer", (DurableSerializer,), {"durable": fsync != "never"})
        # SyncObj.__init__ builds its Serializer (and starts the tick thread, which may
        # load the snapshot at once): ours must be the one it builds.
        _syncobj_module.Serializer = serializer
        try:
            super().__init__(selfNode, otherNodes, conf, consumers, nodeClass, transport,
                             transportClass)
        finally:
            _syncobj_module.Serializer = _PYSYNCOBJ_SERIALIZER
        journal = self._SyncObj__raftLog
        if fsync != "never" and type(journal) is not FileJournal:
            raise TypeError(f"fsync={fsync!r} needs pysyncobj's FileJournal")
        if type(journal) is FileJournal:
            # Swap the live journal's class (same object and mmap); starts dirty.
            DurableFileJournal._rs_setup(journal, fsync, self.fsync_batch_interval)
            journal.__class__ = DurableFileJournal
            if fsync != "never":
                self._rs_journal = journal
                # A journal (or meta) file just created must survive a power cut with
                # its directory entry: fsync it and the directory once at start.
                journal.rs_sync()
                fsync_dir(conf.journalFile)

    def raftsafe_stats(self) -> dict[str, int]:
        stats = dict(self._rs_stats)
        stats["fsyncs"] = self._rs_journal._rs_syncs if self._rs_journal is not None else 0
        prevote = self._rs_prevote
        if prevote is not None:
            stats.update(prevote.stats)
        checkquorum = self._rs_checkquorum
        if checkquorum is not None:
            stats.update(checkquorum.stats)
        return stats

    def rs_checkquorum(self) -> CheckQuorum | None:
        """The leader's per-peer contact clock (None before the first tick)."""
        return self._rs_checkquorum

    # -- durability hooks -------------------------------------------------
    def _onTick(self, timeToWait=0.0):
        journal = self._rs_journal
        if journal is not None and (journal._rs_dirty or journal._rs_meta_dirty):
            # "always": the leader's own entries are durable before it counts
            # itself in the commit computation at the start of the tick.
            journal.rs_maybe_sync()
        prevote = self._rs_prevote
        if prevote is None and self._rs_want_prevote:
            # made on the tick thread's first tick: SyncObj's internals exist by then
            prevote = self._rs_prevote = PreVote(self)
        if prevote is not None:
            prevote.before_tick()
        checkquorum = self._rs_checkquorum
        if checkquorum is None:
            # first tick: start the clock, stamp the append_entries this node sends
            checkquorum = self._rs_checkquorum = CheckQuorum.install(self, self._rs_want_checkquorum)
        checkquorum.before_tick()
        if self._rs_apply_slices and applyslice.backlog(self):
            timeToWait = 0.0  # committed entries wait: apply the next slice without waiting
        started = time.monotonic()
        super()._onTick(timeToWait)
        observer = self._rs_tick_observer
        if observer is not None:
            observer(time.monotonic() - started - timeToWait)

    def _checkCommandsToApply(self):
        super()._checkCommandsToApply()
        journal = self._rs_journal
        if self._rs_fsync == "always" and journal is not None and journal._rs_dirty:
            # The leader has just appended this tick's commands and sent them: its own
            # fsync now overlaps the followers' (network + fsync) instead of following
            # their acknowledgement at the start of the next tick (still checked there).
            journal.rs_sync()

    def _SyncObj__sendNextNodeIdx(self, node, reset=False, nextNodeIdx=None, success=False):
        if success and self._rs_reply_next is not None:
            nextNodeIdx = self._rs_reply_next
        if success and self._rs_installed is not None:
            nextNodeIdx = self._rs_installed + 1  # the snapshot, not the kept suffix
            self._rs_stats["install_acks_clamped"] += 1
        if self._rs_fsync == "always":
            self._rs_journal.rs_sync()  # entries durable before they are acknowledged
        if nextNodeIdx is None:
            nextNodeIdx = self._SyncObj__getCurrentLogIndex() + 1
        # pysyncobj's reply carries no term; ours does (see _rs_stale_reply), and the
        # leader's send stamp of the append_entries it answers (see checkquorum).
        reply = {"type": "next_node_idx", "next_node_idx": nextNodeIdx, "reset": reset,
                 "success": success, "term": self._SyncObj__raftCurrentTerm}
        if self._rs_echo is not None:
            reply[SENT_KEY] = self._rs_echo
        self._SyncObj__transport.send(node, reply)

    def _rs_stale_reply(self, message) -> bool:
        """A next_node_idx reply that does not answer an append_entries of this leader's
        current term. pysyncobj's replies carry no term, so a success reply sent to this
        node while it led an older term (held up in a TCP send queue by a partition, then
        delivered after the heal) would set matchIndex for entries the follower may no
        longer hold, and let this leader commit and acknowledge entries of its new term
        that only it has: an acknowledged write lost at the next leader change. It would
        also count as fresh contact from that follower (leases, check-quorum)."""
        if message.get("term") == self._SyncObj__raftCurrentTerm:
            return False
        self._rs_stats["stale_replies_dropped"] += 1
        return True

    # -- snapshot install / restart: keep the log after the snapshot (Raft 7) --
    def _SyncObj__loadDumpFile(self, clearJournal):
        serializer = self._SyncObj__serializer
        try:
            data = serializer.deserialize()
        except Exception:
            logger.exception("raftsafe: snapshot not loaded")
            return
        serializer._rs_cached = data  # pysyncobj's loader reads it once more
        log = self._SyncObj__raftLog
        prev, last = data[2], data[1]  # the snapshot's last two included entries
        if len(log) >= 2:
            first = log[0][1]
            i, j = prev[1] - first, last[1] - first
            if i >= 0 and j < len(log) and log[i][1:] == prev[1:] and log[j][1:] == last[1:]:
                # The log holds the snapshot's last entries: drop only what the snapshot
                # covers, keep what follows; pysyncobj then finds log[0:2] == data[2], data[1].
                if i > 0:
                    self._SyncObj__deleteEntriesTo(prev[1])
                clearJournal = False
        SyncObj._SyncObj__loadDumpFile(self, clearJournal)
        if self._rs_installing:
            self._rs_installed = last[1]

    # -- append_entries filtering ------------------------------------------
    def _SyncObj__onMessageReceived(self, node, message):
        prevote = self._rs_prevote
        if prevote is not None and isinstance(message, dict) and prevote.on_message(node, message):
            return
        if isinstance(message, dict) and message.get("type") == "append_entries":
            sent = message.get(SENT_KEY)
            self._rs_echo = sent if isinstance(sent, float) else None
            if self._rs_checkquorum is not None:
                self._rs_checkquorum.on_append_entries(message)
            try:
                self._rs_on_message(node, message)
            finally:
                self._rs_echo = None
            return
        self._rs_on_message(node, message)

    def _rs_on_message(self, node, message):
        if (self.raftsafe_enabled and self.raftsafe_install_guard
                and message.get("type") == "append_entries" and "prevLogIdx" not in message
                and message.get("serialized") is not None):
            self._rs_snapshot_chunk(node, message)
            return
        if (self.raftsafe_enabled and message.get("type") == "append_entries"
                and "prevLogIdx" in message):
            message = self._rs_filter(message)
            if message is None:
                return
            self._rs_reply_next = message.pop("_rs_reply_next", None)
            try:
                SyncObj._SyncObj__onMessageReceived(self, node, message)
            finally:
                self._rs_reply_next = None
            return
        if (self.raftsafe_enabled and message.get("type") == "next_node_idx"
                and self.raftsafe_reply_terms and self._rs_stale_reply(message)):
            return
        checkquorum = self._rs_checkquorum
        if checkquorum is not None and message.get("type") == "next_node_idx":
            checkquorum.on_reply(node, message)
        if (self.raftsafe_enabled and message.get("type") == "next_node_idx"
                and message.get("success") and not message.get("reset")):
            # Leader: keep nextIndex monotonic on success (see module docstring).
            next_index = self._SyncObj__raftNextIndex
            before = next_index.get(node)
            SyncObj._SyncObj__onMessageReceived(self, node, message)
            after = next_index.get(node)
            if before is not None and after is not None and after < before:
                next_index[node] = before
                self._rs_stats["next_index_rewinds_avoided"] += 1
            return
        SyncObj._SyncObj__onMessageReceived(self, node, message)

    def _rs_snapshot_chunk(self, node, message):
        """A chunk of the leader's snapshot. pysyncobj raises the commit index on every
        chunk to min(leader commit, own last index) and, once the snapshot is loaded,
        acknowledges its whole log (next = own last index + 1). With the log suffix kept
        after the snapshot (Raft 7), that suffix may hold entries of an older term that
        the leader does not have: the follower would apply entries never committed and
        vouch for them, so the leader would count it for entries of its own term at those
        indexes and acknowledge writes only the leader holds. So a chunk never raises the
        commit index, and the acknowledgement covers the snapshot alone; the next
        append_entries verifies the suffix (kept if it matches, truncated if not)."""
        if message["term"] >= self._SyncObj__raftCurrentTerm:
            message = dict(message)
            message["commit_index"] = min(message["commit_index"], self._SyncObj__raftCommitIndex)
        self._rs_installing = True
        try:
            SyncObj._SyncObj__onMessageReceived(self, node, message)
        finally:
            self._rs_installing = False
            self._rs_installed = None

    def _rs_filter(self, msg):
        """Return the message to hand to pysyncobj, or None to drop it."""
        if msg["term"] < self._SyncObj__raftCurrentTerm:
            return msg  # ignored by pysyncobj anyway
        transmission = msg.get("transmission")
        if transmission is not None:
            if transmission != "finish":
                return msg
            try:  # reassemble the chunked entry so it can be checked like others
                entry = _pickle.loads(self._SyncObj__recvTransmission + msg["data"])
            except Exception:
                return msg
            self._SyncObj__recvTransmission = ""
            msg = {k: v for k, v in msg.items() if k not in ("transmission", "data")}
            msg["entries"] = [entry]
        log = self._SyncObj__raftLog
        first, last = log[0][1], log[-1][1]
        prev_idx, prev_term = msg["prevLogIdx"], msg["prevLogTerm"]
        if prev_idx is None or prev_idx < first or prev_idx > last \
                or log[prev_idx - first][2] != prev_term:
            return msg  # pysyncobj rejects it without deleting anything
        entries = list(msg.get("entries") or ())
        if any(e[1] != prev_idx + 1 + i for i, e in enumerate(entries)):
            logger.error("raftsafe: dropping append_entries with non-contiguous entries")
            return None
        verified = prev_idx + len(entries)  # the message vouches for log[..verified]
        skip = 0
        while skip < len(entries) and entries[skip][1] <= last:
            if log[entries[skip][1] - first][2] != entries[skip][2]:
                break
            skip += 1
        if skip:
            self._rs_stats["stale_entries_dropped"] += skip
        rest = entries[skip:]
        if rest and rest[0][1] <= last:  # conflict: same index, different term
            cidx = rest[0][1]
            committed = max(self._SyncObj__raftCommitIndex, self._SyncObj__raftLastApplied)
            if cidx <= committed:
                self._rs_stats["truncations_refused"] += 1
                logger.error(
                    "raftsafe: refusing to truncate committed log entry %d (term %d, leader "
                    "term %d, commit %d); append_entries dropped", cidx,
                    log[cidx - first][2], rest[0][2], committed)
                return None
            self._rs_stats["conflicts_truncated"] += 1
        if not skip and (rest or prev_idx == last):
            return msg  # unchanged: pysyncobj's handling is already correct
        self._rs_stats["messages_rewritten"] += 1
        msg = dict(msg)
        new_prev = prev_idx + skip
        if rest:
            # pysyncobj deletes after new_prev (only conflicting entries) and appends
            msg["prevLogIdx"], msg["prevLogTerm"] = new_prev, log[new_prev - first][2]
            msg["entries"] = rest
            return msg
        # Nothing new: heartbeat anchored at our last entry so nothing is deleted.
        match = last if log[-1][2] == msg["term"] else verified
        msg["prevLogIdx"], msg["prevLogTerm"] = last, log[-1][2]
        msg["entries"] = []
        msg["commit_index"] = min(msg["commit_index"], match)
        msg["_rs_reply_next"] = match + 1
        return msg
