"""Backups (docs/operations.md, "Backup and restore"): the capture of a state at one
index (core.snapshot), the streamed payload (rpc.snapshot.encode), the backup file
format with its checksum (client.backup) and the seeding of a fresh cluster's data
dirs (replica.restore)."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from raftsched import config as configmod
from raftsched.client import backup
from raftsched.core.state import ClusterState
from raftsched.dev.launcher import write_config
from raftsched.replica import restore
from raftsched.replica.durable import check_snapshot, read_snapshot
from raftsched.rpc import snapshot as rpcsnap
from tests.unit.fsm_helpers import cluster
from tests.unit.test_digest import OPS, _run


def _state(n_jobs: int = 5) -> ClusterState:
    s = cluster("n1", "n2", cpu=100_000)
    _run(s, ["submit", "keyed", "assign", "start", "finish"] * n_jobs, [])
    s.applied_index = 40
    return s


@settings(max_examples=40, deadline=None)
@given(OPS, OPS)
def test_a_capture_is_the_state_at_that_index(first: list[str], then: list[str]) -> None:
    s = cluster("n1", cpu=100_000)
    _run(s, first, [])
    expected_dict, expected_digest = s.to_dict(), s.digest()
    cap = s.capture()
    _run(s, then, [])  # the replica goes on applying after the capture
    assert cap.to_dict() == expected_dict
    assert cap.digest() == expected_digest
    # and it restores to a state with that digest after the JSON of a backup file
    assert ClusterState.from_dict(json.loads(json.dumps(cap.to_dict()))).digest() == expected_digest


def test_the_payload_is_the_snapshot_dict_in_bounded_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rpcsnap, "CHUNK", 512)
    monkeypatch.setattr(rpcsnap, "_BATCH", 3)  # lists dumped piecewise
    s = _state(20)
    chunks, length, sha = rpcsnap.encode(s.capture())
    assert len(chunks) > 2 and all(0 < len(c) <= 512 for c in chunks)
    payload = b"".join(chunks)
    assert len(payload) == length
    assert hashlib.sha256(payload).hexdigest() == sha
    assert json.loads(gzip.decompress(payload)) == json.loads(json.dumps(s.to_dict()))


def _write(path: Path, s: ClusterState, **over: Any) -> dict[str, Any]:
    chunks, length, sha = rpcsnap.encode(s.capture())
    header = {"cluster_name": "test", "node_ids": ["n1", "n2"], "node_id": "n2",
              "applied_index": s.applied_index, "term": 3, "created_at": 1700000000.5,
              "state_digest": s.digest(), "job_count": len(s.jobs), "state_version": 1,
              "encoding": "json+gzip", **over}
    return backup.save(path, header, iter(chunks), lambda: length, lambda: sha)


def test_file_round_trip_and_header_fields(tmp_path: Path) -> None:
    s = _state()
    f = tmp_path / "b.rsb"
    h = _write(f, s)
    assert (f.stat().st_mode & 0o777) == 0o600
    assert f.read_bytes().startswith(backup.MAGIC)
    assert set(h) == set(backup.HEADER_FIELDS)
    assert backup.verify(f) == h
    got, state = backup.load(f)
    assert got["applied_index"] == 40 and got["node_id"] == "n2" and got["term"] == 3
    assert got["job_count"] == len(s.jobs) and got["format_version"] == backup.FORMAT_VERSION
    assert ClusterState.from_dict(state).digest() == s.digest() == got["state_digest"]
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-7] + bytes([b[-7] ^ 1]) + b[-6:], "checksum mismatch"),
    (lambda b: b[:-100], "truncated or damaged"),
    (lambda b: b"NOT-A-BACKUP" + b[12:], "bad magic"),
    (lambda b: b.replace(b'"format_version": 1', b'"format_version": 9', 1), "format_version 9"),
    (lambda b: b.replace(b'"term":', b'"tern":', 1), "header lacks term"),
])
def test_a_damaged_file_is_refused_naming_the_fault(tmp_path: Path, damage: Any, message: str) -> None:
    f = tmp_path / "b.rsb"
    _write(f, _state())
    f.write_bytes(damage(f.read_bytes()))
    with pytest.raises(backup.BackupError, match=message):
        backup.verify(f)
    with pytest.raises(backup.BackupError, match=message):
        backup.load(f)


def test_a_damaged_transfer_leaves_no_file(tmp_path: Path) -> None:
    s = _state()
    chunks, length, _ = rpcsnap.encode(s.capture())
    f = tmp_path / "b.rsb"
    with pytest.raises(backup.BackupError, match="transfer damaged"):
        backup.save(f, {}, iter(chunks), lambda: length, lambda: "0" * 64)
    assert list(tmp_path.iterdir()) == []


def _cfg(tmp_path: Path) -> configmod.ClusterConfig:
    return configmod.load(write_config(tmp_path / "c", 3))


def test_restore_seeds_every_node_with_a_snapshot_pysyncobj_loads(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    s = _state()
    state = json.loads(json.dumps(s.to_dict()))  # as a backup file holds it
    written = restore.seed(cfg, state, 40, s.digest())
    assert written == [cfg.node_data_dir(n.id) / "raft.snapshot" for n in cfg.nodes]
    for p in written:
        assert check_snapshot(str(p)) == (40, 0)
        data, last, prev, nodes = read_snapshot(str(p))
        assert data[0] == {} and ClusterState.from_dict(data[1]).digest() == s.digest()
        assert (last[1], last[2], prev[1], prev[2]) == (40, 0, 39, 0)
        assert last[0] == prev[0] == b"\x01"  # NO_OPs: harmless if ever sent to a follower
        assert {n.address for n in nodes} == {n.raft for n in cfg.nodes}
        assert (p.parent.stat().st_mode & 0o777) == 0o700


def test_restore_refuses_used_dirs_and_a_state_that_does_not_digest(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    s = _state()
    state = s.to_dict()
    with pytest.raises(restore.RestoreError, match="header says"):
        restore.seed(cfg, state, 40, "0" * 64)
    with pytest.raises(restore.RestoreError, match="applied index"):
        restore.seed(cfg, state, 41, s.digest())
    with pytest.raises(restore.RestoreError, match="does not know: mystery"):
        restore.seed(cfg, {**state, "mystery": 1}, 40, s.digest())
    assert not [p for n in cfg.nodes for p in restore.raft_files(cfg.node_data_dir(n.id))]
    journal = cfg.node_data_dir("n2") / "raft.journal"
    journal.parent.mkdir(parents=True)
    journal.write_bytes(b"old log")
    with pytest.raises(restore.RestoreError, match=r"raft\.journal"):
        restore.seed(cfg, state, 40, s.digest())
    assert journal.read_bytes() == b"old log"
    assert not (cfg.node_data_dir("n1") / "raft.snapshot").exists()
    restore.seed(cfg, state, 40, s.digest(), force=True)
    assert not journal.exists()
    assert check_snapshot(str(cfg.node_data_dir("n2") / "raft.snapshot")) == (40, 0)

