"""Deterministic reproductions of the two ways a leader could commit - and so
acknowledge - an entry that only it holds (issue 20: an acknowledged batch vanished
under partitions). Both come from a follower's acknowledgement (next_node_idx) vouching
for log entries it does not share with the leader:

1. a reply to an append_entries of an *older term*, held in a TCP send queue while the
   link was cut and delivered once the same node leads again in a newer term
   (pysyncobj's replies carry no term);
2. a snapshot install that keeps the follower's log suffix (Raft section 7): pysyncobj
   commits and acknowledges that whole suffix, entries of an older term included.

Each test runs the scenario on the protected SafeSyncObj and, as proof that the
reproduction can fail, on the same class with that one protection switched off.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pysyncobj import SyncObjConf
from pysyncobj.node import TCPNode

from raftsched.replica.raftsafe import SafeSyncObj
from tests.unit.test_raftsafe import FakeTransport, Recorder, ae, entry, fill, log_of
from tests.unit.test_snapshot_install import snapshot_message

pytestmark = pytest.mark.timeout(60)

B = TCPNode("127.0.0.1:2")


class NoReplyTerms(SafeSyncObj):
    raftsafe_reply_terms = False  # pysyncobj: a reply of any term counts


class NoInstallGuard(SafeSyncObj):
    raftsafe_install_guard = False  # pysyncobj: a snapshot install vouches for the suffix


def node(cls: type[SafeSyncObj], d: Path | None = None):
    conf = SyncObjConf(autoTick=False, journalFile=str(d / "journal.bin") if d else None,
                       fullDumpFile=str(d / "snapshot.bin") if d else None)
    rec = Recorder()
    obj = cls("127.0.0.1:1", ["127.0.0.1:2", "127.0.0.1:3"], conf, consumers=[rec],
              transportClass=FakeTransport, fsync="never")
    return obj, rec, obj._SyncObj__transport


def lead(obj, term: int) -> int:
    """Make `obj` leader of `term`; returns the index of its no-op entry."""
    obj._SyncObj__setCurrentTerm(term, None)
    obj._SyncObj__onBecomeLeader()
    return log_of(obj)[-1][0]


@pytest.mark.parametrize("cls", [SafeSyncObj, NoReplyTerms])
def test_a_reply_from_an_older_term_does_not_commit_the_new_terms_entries(cls) -> None:
    obj, rec, tr = node(cls)
    # Term 5: this node led and sent entries up to 20; B held them and acknowledged -
    # but the reply was held up by a partition. Term 6: another leader's shorter log
    # replaced entries 11.. here; this node then won term 7 (log up to 11).
    fill(obj, rec, tr, last=10, term=1, commit=5)
    tr.deliver(ae(6, 10, 1, [entry(obj, rec, 11, 6)], 5))
    noop = lead(obj, 7)
    assert noop == 12
    for x in (100, 101):  # a client's write, appended at 13 and 14 in term 7
        rec.record(x, callback=lambda *a: None)
    obj.doTick(0)
    assert log_of(obj)[-1] == (14, 7)
    # Now B's reply from term 5 arrives: "I hold everything up to 20".
    stale = {"type": "next_node_idx", "next_node_idx": 21, "reset": False, "success": True}
    if cls is SafeSyncObj:
        stale["term"] = 5  # what a follower running this code stamps on it
    tr.deliver(stale)
    obj.doTick(0)
    if cls is SafeSyncObj:
        assert obj._SyncObj__raftMatchIndex[B] == 0
        assert obj.raftCommitIndex == 5 and 100 not in rec.applied
        assert obj.raftsafe_stats()["stale_replies_dropped"] == 1
    else:  # the loss: committed and applied (acknowledged) with only this node holding 13, 14
        assert obj._SyncObj__raftMatchIndex[B] == 20
        assert obj.raftCommitIndex == 14 and rec.applied[-2:] == [100, 101]
    obj._doDestroy()


def test_a_reply_of_the_current_term_still_counts() -> None:
    obj, rec, tr = node(SafeSyncObj)
    fill(obj, rec, tr, last=10, term=1, commit=5)
    noop = lead(obj, 2)
    tr.deliver({"type": "next_node_idx", "next_node_idx": noop + 1, "reset": False,
                "success": True, "term": 2})
    obj.doTick(0)
    assert obj.raftCommitIndex == noop
    assert obj.raftsafe_stats()["stale_replies_dropped"] == 0
    obj._doDestroy()


@pytest.mark.parametrize("cls", [SafeSyncObj, NoInstallGuard])
def test_a_snapshot_install_neither_commits_nor_acknowledges_an_old_suffix(
        cls, tmp_path: Path) -> None:
    d = tmp_path / "node"
    d.mkdir()
    obj, rec, tr = node(cls, d)
    # Entries 2..20 of term 1; only 2..10 committed. The leader of term 3 holds the
    # same log up to 12, then its own entries of term 3: 13..25 are committed there.
    fill(obj, rec, tr, last=20, term=1, commit=10)
    msg = snapshot_message(obj, rec, tmp_path, last=12, term=1, applied=list(range(2, 13)))
    msg["term"], msg["commit_index"] = 3, 25
    tr.deliver(msg)
    obj.doTick(0)
    assert log_of(obj)[-1] == (20, 1)  # the suffix is kept (Raft 7) until verified
    ack = [m for m in tr.sent if m["type"] == "next_node_idx" and m["success"]][-1]
    if cls is SafeSyncObj:
        assert ack["next_node_idx"] == 13  # vouches for the snapshot only
        assert rec.applied == list(range(2, 13))  # 13..20 of term 1 never applied
        # the leader's next append_entries replaces the suffix it does not share
        tr.deliver(ae(3, 12, 1, [entry(obj, rec, 13, 3, 1300)], 13))
        obj.doTick(0)
        assert log_of(obj)[-1] == (13, 3) and rec.applied[-1] == 1300
    else:  # the loss: 13..20 of term 1 applied, and acknowledged as the leader's log
        assert ack["next_node_idx"] == 21
        assert rec.applied[-8:] == list(range(13, 21))
    obj._doDestroy()
