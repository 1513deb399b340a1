"""Deterministic tests for raftsched.raftsafe (no sockets, no tick thread).

A follower SafeSyncObj (autoTick=False) gets append_entries messages injected
through a fake transport, exactly as pysyncobj's TCP transport would deliver
them, and is ticked by hand so committed entries are applied to a consumer.
"""

from __future__ import annotations

import logging
import os

import pytest
from pysyncobj import SyncObjConf, SyncObjConsumer, replicated
from pysyncobj import pickle as ps_pickle
from pysyncobj.journal import FileJournal
from pysyncobj.node import TCPNode
from pysyncobj.syncobj import _COMMAND_TYPE, _bchr
from pysyncobj.transport import Transport

from raftsched.replica import raftsafe
from raftsched.replica.raftsafe import SafeSyncObj

LEADER = TCPNode("127.0.0.1:2")
TRUNCATE_MSG = "truncating already-applied"


class FakeTransport(Transport):
    """Records what the node sends; messages are injected with deliver()."""

    def __init__(self, syncObj, selfNode, otherNodes):
        super().__init__(syncObj, selfNode, otherNodes)
        self.sent: list[dict] = []
        self.fsyncs_at_send: list[int] = []
        self.fsync_counter = None

    def send(self, node, message):
        self.sent.append(message)
        self.fsyncs_at_send.append(self.fsync_counter() if self.fsync_counter else 0)
        return True

    def deliver(self, message):
        self._onMessageReceived(LEADER, message)

    def replies(self):
        return [m for m in self.sent if m["type"] == "next_node_idx"]


class Recorder(SyncObjConsumer):
    def __init__(self):
        super().__init__()
        self.applied: list[int] = []

    @replicated
    def record(self, x):
        self.applied.append(x)


class UnsafeSyncObj(SafeSyncObj):
    raftsafe_enabled = False  # plain pysyncobj append_entries handling


def make_follower(tmp_path=None, cls=SafeSyncObj, fsync="never"):
    conf = SyncObjConf(autoTick=False,
                       journalFile=str(tmp_path / "journal.bin") if tmp_path else None)
    rec = Recorder()
    obj = cls("127.0.0.1:1", ["127.0.0.1:2", "127.0.0.1:3"], conf, consumers=[rec],
              transportClass=FakeTransport, fsync=fsync)
    return obj, rec, obj._SyncObj__transport


def entry(obj, rec, idx, term, value=None):
    fid = obj._methodToID[(id(rec), obj._getFuncName((id(rec), "record")))]
    cmd = _bchr(_COMMAND_TYPE.REGULAR) + ps_pickle.dumps((fid, (idx if value is None else value,)))
    return (cmd, idx, term)


def ae(term, prev_idx, prev_term, entries, commit):
    return {"type": "append_entries", "term": term, "commit_index": commit,
            "entries": list(entries), "prevLogIdx": prev_idx, "prevLogTerm": prev_term}


def log_of(obj):
    log = obj._SyncObj__raftLog
    return [(e[1], e[2]) for e in log[:]]


def fill(obj, rec, tr, last, term=1, commit=1):
    """Replicate entries 2..last (term `term`) in two batches, commit `commit`, apply."""
    mid = (2 + last) // 2
    tr.deliver(ae(term, 1, 0, [entry(obj, rec, i, term) for i in range(2, mid + 1)], 1))
    tr.deliver(ae(term, mid, term, [entry(obj, rec, i, term) for i in range(mid + 1, last + 1)],
                  commit))
    obj.doTick(0)


STALE = {
    # leader re-sends an old batch from an older nextIndex
    "resent_batch": lambda o, r: ae(1, 1, 0, [entry(o, r, 2, 1), entry(o, r, 3, 1)], 6),
    # heartbeat from an older nextIndex
    "stale_heartbeat": lambda o, r: ae(1, 3, 1, [], 6),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stale", sorted(STALE))
def test_stale_append_entries_keeps_applied_entries(stale, caplog):
    caplog.set_level(logging.INFO)
    obj, rec, tr = make_follower()
    fill(obj, rec, tr, last=11, commit=6)
    assert rec.applied == [2, 3, 4, 5, 6] and obj.raftLastApplied == 6
    before = log_of(obj)

    tr.deliver(STALE[stale](obj, rec))

    assert log_of(obj) == before  # nothing truncated
    assert not [r for r in caplog.records if TRUNCATE_MSG in r.getMessage()]
    reply = tr.replies()[-1]
    # the follower's whole log carries the leader's term -> it all matches
    assert reply["success"] and reply["next_node_idx"] == 12
    stats = obj.raftsafe_stats()
    assert stats["stale_entries_dropped"] == (2 if stale == "resent_batch" else 0)
    assert stats["messages_rewritten"] == 1
    tr.deliver(ae(1, 11, 1, [], 11))
    obj.doTick(0)
    assert rec.applied == list(range(2, 12))  # each entry applied exactly once


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stale", sorted(STALE))
def test_unfixed_pysyncobj_truncates_applied_entries(stale, caplog):
    """Proves the reproduction can fail: without interception pysyncobj truncates."""
    caplog.set_level(logging.INFO)
    obj, rec, tr = make_follower(cls=UnsafeSyncObj)
    fill(obj, rec, tr, last=11, commit=6)
    tr.deliver(STALE[stale](obj, rec))
    assert log_of(obj)[-1][0] == 3  # entries 4..11 gone, 4..6 were applied
    assert obj.raftLastApplied == 6 > log_of(obj)[-1][0]
    assert [r for r in caplog.records if TRUNCATE_MSG in r.getMessage()]
    assert obj.raftsafe_stats()["stale_entries_dropped"] == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("prefix_dup", [False, True])
def test_conflict_above_commit_truncates(prefix_dup):
    obj, rec, tr = make_follower()
    fill(obj, rec, tr, last=6, commit=3)
    assert rec.applied == [2, 3]
    new = [entry(obj, rec, 5, 2, 50), entry(obj, rec, 6, 2, 60)]
    if prefix_dup:
        tr.deliver(ae(2, 3, 1, [entry(obj, rec, 4, 1), *new], 3))
    else:
        tr.deliver(ae(2, 4, 1, new, 3))
    assert log_of(obj)[3:] == [(4, 1), (5, 2), (6, 2)]
    stats = obj.raftsafe_stats()
    assert stats["conflicts_truncated"] == 1 and stats["truncations_refused"] == 0
    assert stats["stale_entries_dropped"] == (1 if prefix_dup else 0)
    assert tr.replies()[-1] == {"type": "next_node_idx", "next_node_idx": 7,
                                "reset": False, "success": True, "term": 2}
    tr.deliver(ae(2, 6, 2, [], 6))
    obj.doTick(0)
    assert rec.applied == [2, 3, 4, 50, 60]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cidx", [2, 3])
def test_conflict_at_or_below_commit_is_refused(cidx, caplog):
    caplog.set_level(logging.INFO)
    obj, rec, tr = make_follower()
    fill(obj, rec, tr, last=6, commit=3)
    before, n_sent = log_of(obj), len(tr.sent)
    tr.deliver(ae(2, cidx - 1, 1 if cidx > 2 else 0, [entry(obj, rec, cidx, 2, 99)], 3))
    assert log_of(obj) == before
    assert len(tr.sent) == n_sent  # message dropped, no reply
    assert obj.raftsafe_stats()["truncations_refused"] == 1
    assert [r for r in caplog.records
            if r.levelno == logging.ERROR and "refusing to truncate" in r.getMessage()]
    assert rec.applied == [2, 3]


@pytest.mark.timeout(60)
def test_heartbeat_does_not_vouch_for_old_term_tail():
    """Entries of an older term past prevLogIdx are kept but neither acked nor committed."""
    obj, rec, tr = make_follower()
    fill(obj, rec, tr, last=6, commit=1)
    tr.deliver(ae(2, 3, 1, [], 6))  # new leader (term 2) knows the log only up to 3
    assert log_of(obj)[-1] == (6, 1)
    assert obj.raftCommitIndex == 3
    assert tr.replies()[-1]["next_node_idx"] == 4 and tr.replies()[-1]["success"]
    obj.doTick(0)
    assert rec.applied == [2, 3]


# -- durability ---------------------------------------------------------------

@pytest.fixture
def fsync_spy(monkeypatch):
    calls = []
    real = os.fsync

    def spy(fd):
        calls.append(fd)
        return real(fd)

    monkeypatch.setattr(raftsafe.os, "fsync", spy)
    return calls


def reopen(tmp_path):
    j = FileJournal(str(tmp_path / "journal.bin"))
    try:
        return [(e[1], e[2]) for e in j[:]], j.getCurrentTerm(), j.getRaftCommitIndex()
    finally:
        j._destroy()


@pytest.mark.timeout(60)
def test_fsync_always_syncs_before_ack_and_survives_reopen(tmp_path, fsync_spy):
    obj, rec, tr = make_follower(tmp_path, fsync="always")
    tr.fsync_counter = lambda: len(fsync_spy)
    n0 = len(fsync_spy)
    tr.deliver(ae(1, 1, 0, [entry(obj, rec, i, 1) for i in range(2, 6)], 1))
    reply_idx = tr.sent.index(tr.replies()[-1])
    assert tr.fsyncs_at_send[reply_idx] > n0  # durable before next_node_idx left
    tr.deliver(ae(1, 5, 1, [], 5))
    obj.doTick(0)
    assert obj.raftsafe_stats()["fsyncs"] >= 2
    obj._doDestroy()
    entries, term, commit = reopen(tmp_path)
    assert entries == [(1, 0), (2, 1), (3, 1), (4, 1), (5, 1)]
    assert (term, commit) == (1, 5)


@pytest.mark.timeout(60)
def test_fsync_batch_defers_entries_but_not_term(tmp_path, fsync_spy, monkeypatch):
    monkeypatch.setattr(SafeSyncObj, "fsync_batch_interval", 3600.0)
    obj, rec, tr = make_follower(tmp_path, fsync="batch")
    tr.fsync_counter = lambda: len(fsync_spy)
    obj.doTick(0)  # first tick: initial sync (interval measured from 0)
    n0 = len(fsync_spy)
    tr.deliver(ae(1, 1, 0, [entry(obj, rec, 2, 1)], 1))  # term 0 -> 1
    assert len(fsync_spy) == n0 + 2  # meta (term/vote): file + directory, entries deferred
    tr.deliver(ae(1, 2, 1, [entry(obj, rec, 3, 1)], 3))
    obj.doTick(0)
    assert len(fsync_spy) == n0 + 2  # interval not reached
    obj._rs_journal._rs_last_sync = float("-inf")  # pretend the interval elapsed
    obj.doTick(0)
    assert len(fsync_spy) > n0 + 2
    obj._doDestroy()
    entries, term, _ = reopen(tmp_path)
    assert entries[-1] == (3, 1) and term == 1


@pytest.mark.timeout(60)
def test_fsync_never_does_no_fsync(tmp_path, fsync_spy):
    """"never": no fsync at all; the journal only gains crash-safe compaction (a new
    file renamed into place instead of an in-place rewrite), see durable.py."""
    obj, rec, tr = make_follower(tmp_path, fsync="never")
    tr.deliver(ae(1, 1, 0, [entry(obj, rec, 2, 1)], 2))
    obj.doTick(0)
    assert fsync_spy == [] and obj._rs_journal is None
    assert isinstance(obj._SyncObj__raftLog, FileJournal)
    obj._doDestroy()
    assert reopen(tmp_path)[0] == [(1, 0), (2, 1)]


@pytest.mark.timeout(60)
def test_bad_fsync_arguments():
    with pytest.raises(ValueError):
        make_follower(fsync="sometimes")
    with pytest.raises(ValueError):
        make_follower(fsync="always")  # no journal file


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cls", [SafeSyncObj, UnsafeSyncObj])
def test_leader_keeps_next_index_monotonic_on_success(cls):
    obj, _rec, tr = make_follower(cls=cls)
    obj._SyncObj__onBecomeLeader()
    peer = LEADER  # here: a follower of this leader
    obj._SyncObj__raftNextIndex[peer] = 50  # entries up to 49 in flight
    term = obj.raftCurrentTerm
    tr.deliver({"type": "next_node_idx", "next_node_idx": 10, "reset": False, "success": True,
                "term": term})
    assert obj._SyncObj__raftMatchIndex[peer] == 9
    assert obj._SyncObj__raftNextIndex[peer] == (50 if cls is SafeSyncObj else 10)
    tr.deliver({"type": "next_node_idx", "next_node_idx": 5, "reset": True, "success": False,
                "term": term})
    assert obj._SyncObj__raftNextIndex[peer] == 5  # reset still rewinds
