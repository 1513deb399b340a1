"""fsync "always": what is fsynced when (DurableFileJournal, SafeSyncObj).

Entries are fsynced on every sync; the meta file is rewritten synchronously only for
a term/vote change; a commitIndex change alone waits for the one-second timer and is
then written after the entries it covers (tests/unit/test_crash_consistency.py checks
every power-cut state of a running node). A leader fsyncs the entries it appends in
the same tick, right after sending them, so its fsync overlaps the followers'."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pysyncobj import SyncObjConf
from pysyncobj.journal import FileJournal, MetaStorer

import raftsched.replica.journal as journal
from raftsched.replica.raftsafe import SafeSyncObj
from tests.unit.test_raftsafe import FakeTransport, Recorder

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def ops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        seen.append("fsync " + Path(os.readlink(f"/proc/self/fd/{fd}")).name)
        real_fsync(fd)

    def replace(a: str, b: str) -> None:
        seen.append("rename " + Path(b).name)
        real_replace(a, b)

    monkeypatch.setattr(journal.os, "fsync", fsync)
    monkeypatch.setattr(journal.os, "replace", replace)
    return seen


def durable(path: Path) -> journal.DurableFileJournal:
    j = FileJournal(str(path))
    journal.DurableFileJournal._rs_setup(j, "always", 0.05)  # type: ignore[arg-type]
    j.__class__ = journal.DurableFileJournal
    j.rs_sync()
    return j  # type: ignore[return-value]


def test_commit_index_alone_is_saved_lazily_after_its_entries(tmp_path: Path, ops: list[str]) -> None:
    j = durable(tmp_path / "raft.journal")
    ops.clear()
    for i in range(1, 4):
        j.add(b"x", i, 1)
        j.setRaftCommitIndex(i)
        assert j.rs_sync()
    # three syncs: the journal fsynced each time, the meta file never
    assert ops == ["fsync raft.journal"] * 3
    assert MetaStorer(str(tmp_path / "raft.journal.meta")).getMeta().get("raftCommitIndex", 1) < 3
    j.add(b"y", 4, 1)
    j.setRaftCommitIndex(4)
    ops.clear()
    j.onOneSecondTimer()
    # the timer: entries first, then the meta with commitIndex 4
    assert ops == ["fsync raft.journal", "fsync raft.journal.meta.tmp", "rename raft.journal.meta",
                   f"fsync {tmp_path.name}"]
    assert MetaStorer(str(tmp_path / "raft.journal.meta")).getMeta()["raftCommitIndex"] == 4
    ops.clear()
    j.onOneSecondTimer()
    assert ops == []  # nothing dirty


def test_term_and_vote_are_durable_before_set_current_term_returns(tmp_path: Path, ops: list[str]) -> None:
    j = durable(tmp_path / "raft.journal")
    ops.clear()
    j.setCurrentTerm(7, "n2")
    assert "rename raft.journal.meta" in ops
    meta = MetaStorer(str(tmp_path / "raft.journal.meta")).getMeta()
    assert (meta["currentTerm"], meta["votedForNodeId"]) == (7, "n2")


def test_leader_fsyncs_its_new_entries_in_the_tick_that_appends_them(tmp_path: Path) -> None:
    conf = SyncObjConf(autoTick=False, journalFile=str(tmp_path / "journal.bin"))
    rec = Recorder()
    obj = SafeSyncObj("127.0.0.1:1", ["127.0.0.1:2", "127.0.0.1:3"], conf, consumers=[rec],
                      transportClass=FakeTransport, fsync="always")
    try:
        obj._SyncObj__setCurrentTerm(2, None)
        obj._SyncObj__onBecomeLeader()
        obj.doTick(0)
        j = obj._rs_journal
        last = obj._SyncObj__getCurrentLogIndex()
        syncs = j._rs_syncs
        rec.record(100, callback=lambda *a: None)
        obj.doTick(0)  # appends entry last + 1 (and sends it to the connected followers)
        assert obj._SyncObj__getCurrentLogIndex() == last + 1
        # durable here before any follower could answer, not at the next tick's start
        assert not j._rs_dirty and j._rs_syncs == syncs + 1
    finally:
        obj._doDestroy()
