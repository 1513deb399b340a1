"""Crash consistency of a node's files through compaction and snapshot install
(in the spirit of ALICE / CrashMonkey).

What it simulates. A single-node SafeSyncObj (fsync = "always", the tick driven by
hand, snapshots written in-process so every file operation is seen) appends values,
compacts its log several times and, in a second scenario, installs a snapshot sent by
a leader. Every fsync of a file (its bytes at that moment), every rename and every
directory fsync is recorded, with the acknowledgements in between. For each point k
of that sequence the on-disk states a power cut at k could leave are built:
- the directory as of its last fsync before k, each name with the bytes its inode
  had at its last fsync before k (never fsynced: empty);
- the same plus the renames issued since that directory fsync (in order);
- at sampled points also with every unsynced write persisted (the files' current
  bytes).
A node is started on each state and must come up (or refuse with SnapshotError
naming the file) with every value acknowledged before k.

What it does not simulate: reordering or tearing *within* the data written before an
fsync (the file system is trusted to persist an fsynced range whole), torn writes of
the journal's unsynced tail (pysyncobj's journal records carry no checksum; those
entries were never acknowledged), lost renames *before* a directory fsync that
succeeded, or media errors.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import pytest
from pysyncobj import FAIL_REASON, SyncObjConf, SyncObjConsumer, replicated
from pysyncobj.transport import Transport

import raftsched.replica.journal as journal
from raftsched.replica.durable import SnapshotError
from raftsched.replica.raftsafe import SafeSyncObj

pytestmark = pytest.mark.timeout(240)

FILES = ("journal", "journal.meta", "snapshot")


class Ledger(SyncObjConsumer):
    def __init__(self) -> None:
        super().__init__()
        self.values: list[int] = []

    @replicated
    def add(self, v: int) -> None:
        self.values.append(v)


class NoNet(Transport):
    """A single-node cluster needs no network."""

    def send(self, node, message):
        return True


def conf_for(d: Path, compact_every: int) -> SyncObjConf:
    return SyncObjConf(autoTick=False, journalFile=str(d / "journal"), fullDumpFile=str(d / "snapshot"),
                       useFork=False, logCompactionMinEntries=compact_every, logCompactionMinTime=10_000,
                       raftMinTimeout=0.004, raftMaxTimeout=0.008, appendEntriesPeriod=0.001,
                       connectionTimeout=1.0)


def start(d: Path, compact_every: int = 10_000) -> tuple[SafeSyncObj, Ledger]:
    ledger = Ledger()
    obj = SafeSyncObj("127.0.0.1:1", [], conf_for(d, compact_every), consumers=[ledger],
                      transportClass=NoNet, fsync="always")
    deadline = time.monotonic() + 5
    while not obj._isLeader() and time.monotonic() < deadline:
        obj.doTick(0)
        time.sleep(0.001)
    assert obj._isLeader()
    return obj, ledger


def settle(obj: SafeSyncObj) -> None:
    """Tick until everything in the log is committed and applied."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        obj.doTick(0)
        log = obj._SyncObj__raftLog
        if obj._SyncObj__raftLastApplied >= log[-1][1] and obj._SyncObj__raftCommitIndex >= log[-1][1]:
            return
        time.sleep(0.001)


class Trace:
    """Records fsyncs (with the file's bytes), renames and directory fsyncs in `root`."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.ops: list[tuple] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd: int) -> None:
            real_fsync(fd)
            path = os.readlink(f"/proc/self/fd/{fd}")
            if Path(path) == root:
                self.ops.append(("dirsync", {p.name: p.stat().st_ino for p in root.iterdir()}))
            elif Path(path).parent == root:
                self.ops.append(("fsync", os.fstat(fd).st_ino, Path(path).read_bytes()))

        def replace(src, dst) -> None:
            real_replace(src, dst)
            if Path(dst).parent == root:
                self.ops.append(("rename", Path(src).name, Path(dst).name, os.stat(dst).st_ino))

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    def mark(self, kind: str, value: object = None) -> None:
        self.ops.append((kind, value, self.volatile()))

    def volatile(self) -> dict[str, tuple[int, bytes]]:
        """The directory as the running process sees it (page cache)."""
        return {p.name: (p.stat().st_ino, p.read_bytes()) for p in self.root.iterdir() if p.is_file()}


def disk_states(trace: Trace, k: int, with_volatile: bool):
    """The states a power cut just before op k can leave (see the module docstring)."""
    durable_ns: dict[str, int] = {}  # name -> inode, as of the last directory fsync
    renames_since: list[tuple[str, str, int]] = []
    synced: dict[int, bytes] = {}
    volatile = None
    for op in trace.ops[:k]:
        if op[0] == "fsync":
            synced[op[1]] = op[2]
        elif op[0] == "rename":
            renames_since.append(op[1:])
        elif op[0] == "dirsync":
            durable_ns, renames_since = dict(op[1]), []
        else:
            volatile = op[2]
    yield "synced", {name: synced.get(ino, b"") for name, ino in durable_ns.items()}
    if renames_since:
        ns = dict(durable_ns)
        for src, dst, ino in renames_since:
            ns.pop(src, None)
            ns[dst] = ino
        yield "synced+renames", {name: synced.get(ino, b"") for name, ino in ns.items()}
    if with_volatile and volatile is not None:
        yield "everything", {name: data for name, (_, data) in volatile.items()}


def acked_before(trace: Trace, k: int) -> set[int]:
    return {op[1] for op in trace.ops[:k] if op[0] == "ack"}


def check_all_cuts(trace: Trace, scratch: Path, sample: float) -> int:
    rng = random.Random(7)
    checked = 0
    cut_points = [k for k, op in enumerate(trace.ops) if op[0] in ("fsync", "rename", "dirsync")]
    for k in cut_points + [len(trace.ops)]:
        for variant, files in disk_states(trace, k, rng.random() < sample):
            d = scratch / f"cut{k}-{variant}"
            d.mkdir()
            for name, data in files.items():
                if name in FILES:
                    (d / name).write_bytes(data)
            want = acked_before(trace, k)
            try:
                obj, ledger = start(d)
            except SnapshotError as e:
                assert "snapshot" in str(e) and str(d) in str(e)
                continue
            try:
                settle(obj)
                missing = want - set(ledger.values)
                assert not missing, f"cut at op {k} ({variant}): acknowledged values lost: {sorted(missing)[:10]}"
            finally:
                obj._doDestroy()
            shutil.rmtree(d)
            checked += 1
    return checked


def test_power_cut_at_any_point_of_compaction_loses_no_acknowledged_entry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node = tmp_path / "node"
    node.mkdir()
    trace = Trace(node, monkeypatch)
    obj, ledger = start(node, compact_every=12)
    trace.mark("started")

    def ack(v: int):
        def cb(_res, err) -> None:
            if err == FAIL_REASON.SUCCESS:
                trace.mark("ack", v)
        return cb

    for v in range(60):
        ledger.add(v, callback=ack(v))
        obj.doTick(0)
        if v % 3 == 0:
            obj.doTick(0)
    settle(obj)
    compactions = sum(1 for op in trace.ops if op[0] == "rename" and op[2] == "journal")
    snapshots = sum(1 for op in trace.ops if op[0] == "rename" and op[2] == "snapshot")
    obj._doDestroy()
    assert compactions >= 3 and snapshots >= 3, (compactions, snapshots)
    assert len(acked_before(trace, len(trace.ops))) == 60
    checked = check_all_cuts(trace, tmp_path, sample=0.2)
    assert checked > 50


class Killed(BaseException):
    """The process dies here (SIGKILL): nothing after this point runs."""


def test_process_killed_at_any_step_of_compaction_loses_no_acknowledged_entry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL, simulated deterministically: the run is stopped at the n-th file
    operation (journal write, fsync, rename) made while compacting or snapshotting,
    for every n; the directory as the page cache holds it then is restarted."""
    from pysyncobj.journal import ResizableFile

    from raftsched.replica import durable

    budget = {"left": -1, "counted": 0, "active": 0}

    def counting(fn):
        def wrapper(*a, **kw):
            if budget["active"]:
                budget["counted"] += 1
                if budget["left"] == 0:
                    raise Killed
                budget["left"] -= 1
            return fn(*a, **kw)
        return wrapper

    def compaction_step(fn):
        def wrapper(*a, **kw):
            budget["active"] += 1
            try:
                return fn(*a, **kw)
            finally:
                budget["active"] -= 1
        return wrapper

    monkeypatch.setattr(ResizableFile, "write", counting(ResizableFile.write))
    monkeypatch.setattr(os, "fsync", counting(os.fsync))
    monkeypatch.setattr(os, "replace", counting(os.replace))
    monkeypatch.setattr(journal.DurableFileJournal, "deleteEntriesTo",
                        compaction_step(journal.DurableFileJournal.deleteEntriesTo))
    monkeypatch.setattr(durable.DurableSerializer, "serialize",
                        compaction_step(durable.DurableSerializer.serialize))

    def run(d: Path, kill_at: int) -> tuple[set[int], bool]:
        budget.update(left=kill_at, counted=0, active=0)
        acked: set[int] = set()
        obj, ledger = start(d, compact_every=8)
        try:
            for v in range(30):
                ledger.add(v, callback=lambda _r, err, v=v: err == FAIL_REASON.SUCCESS and acked.add(v))
                obj.doTick(0)
            budget["left"] = -1
            settle(obj)
            return acked, False
        except Killed:
            return acked, True
        finally:
            budget.update(left=-1, active=0)
            obj._doDestroy()

    kills = 0
    for n in range(10_000):
        d = tmp_path / f"run{n}"
        d.mkdir()
        acked, killed = run(d, n)
        if not killed:
            assert n > 10, "compaction made too few file operations to be exercised"
            break
        kills += 1
        obj, ledger = start(d)
        try:
            settle(obj)
            missing = acked - set(ledger.values)
            assert not missing, f"killed at compaction step {n}: acknowledged values lost {sorted(missing)}"
        finally:
            obj._doDestroy()
        shutil.rmtree(d)
    assert kills > 10
