"""A follower installing a snapshot from its leader (replica/durable.py): the snapshot
is verified and durable before the follower acknowledges it, log entries after the
snapshot's last included entry are kept (Raft section 7), and a damaged snapshot
makes a node refuse to start, naming the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pysyncobj import SyncObjConf

from raftsched.replica import durable
from raftsched.replica.durable import SnapshotError, check_snapshot, write_snapshot
from raftsched.replica.raftsafe import SafeSyncObj
from tests.unit.test_raftsafe import FakeTransport, Recorder, entry, fill, log_of

pytestmark = pytest.mark.timeout(60)


def follower(d: Path, fsync: str = "always"):
    conf = SyncObjConf(autoTick=False, journalFile=str(d / "journal.bin"),
                       fullDumpFile=str(d / "snapshot.bin"))
    rec = Recorder()
    obj = SafeSyncObj("127.0.0.1:1", ["127.0.0.1:2", "127.0.0.1:3"], conf, consumers=[rec],
                      transportClass=FakeTransport, fsync=fsync)
    return obj, rec, obj._SyncObj__transport


def snapshot_message(obj, rec, tmp: Path, last: int, term: int, applied: list[int]) -> dict:
    """What a leader sends: its snapshot file's bytes in one transmission."""
    data = ([{}, {"applied": applied}], entry(obj, rec, last, term), entry(obj, rec, last - 1, term),
            set())
    path = str(tmp / "leader-snapshot")
    write_snapshot(path, data, last, term)
    blob = Path(path).read_bytes()
    return {"type": "append_entries", "term": term, "commit_index": last,
            "serialized": (blob, True, True)}


def test_install_keeps_the_log_after_the_snapshot_and_is_durable_before_the_ack(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node = tmp_path / "node"
    node.mkdir()
    obj, rec, tr = follower(node)
    fill(obj, rec, tr, last=20, commit=10)
    assert rec.applied == list(range(2, 11))
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(durable.os, "fsync", spy)
    tr.fsync_counter = lambda: sum(1 for p in synced if "snapshot" in p)
    tr.deliver(snapshot_message(obj, rec, tmp_path, last=12, term=1, applied=list(range(2, 13))))
    obj.doTick(0)
    # entries 13..20 were held with matching terms: kept, not re-fetched
    assert log_of(obj) == [(i, 1) for i in range(11, 21)]
    assert rec.applied[:11] == list(range(2, 13))
    assert check_snapshot(str(node / "snapshot.bin")) == (12, 1)
    acks = [i for i, m in enumerate(tr.sent) if m["type"] == "next_node_idx" and m.get("success")]
    assert acks and tr.fsyncs_at_send[acks[-1]] >= 1, "acknowledged before the snapshot was fsynced"
    obj._doDestroy()
    # a restart finds the same pair: the snapshot plus the kept suffix
    obj2, _, _ = follower(node)
    obj2.doTick(0)
    assert log_of(obj2)[0] == (11, 1) and log_of(obj2)[-1] == (20, 1)
    obj2._doDestroy()


def test_install_of_a_snapshot_the_log_does_not_match_replaces_the_log(tmp_path: Path) -> None:
    node = tmp_path / "node"
    node.mkdir()
    obj, rec, tr = follower(node)
    fill(obj, rec, tr, last=8, commit=4)
    tr.deliver(snapshot_message(obj, rec, tmp_path, last=30, term=2, applied=list(range(2, 31))))
    obj.doTick(0)
    assert log_of(obj) == [(29, 2), (30, 2)]
    assert rec.applied == list(range(2, 31))
    obj._doDestroy()


def test_a_damaged_snapshot_refuses_the_start_naming_the_file(tmp_path: Path) -> None:
    node = tmp_path / "node"
    node.mkdir()
    obj, rec, tr = follower(node)
    tr.deliver(snapshot_message(obj, rec, tmp_path, last=12, term=1, applied=[1, 2, 3]))
    obj.doTick(0)
    obj._doDestroy()
    snap = node / "snapshot.bin"
    blob = bytearray(snap.read_bytes())
    blob[-5] ^= 0xFF
    snap.write_bytes(bytes(blob))
    with pytest.raises(SnapshotError, match=str(snap)):
        follower(node)
    snap.write_bytes(bytes(blob[: len(blob) // 2]))  # torn
    with pytest.raises(SnapshotError, match="damaged"):
        follower(node)
