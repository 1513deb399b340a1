"""Crash-safe snapshots and compaction for pysyncobj 0.3.17.

pysyncobj writes a snapshot to `<file>.tmp` and renames it without fsync, rewrites
the journal in place when it compacts (clear, then re-append the kept entries), and
on a follower installing a snapshot drops every log entry, also those after the
snapshot. A power cut (or, for the in-place rewrite, a plain SIGKILL) at the wrong
moment leaves a node with neither the old log nor a complete snapshot.

Here, as in etcd and hashicorp/raft:

- **Snapshot files** carry a header (magic, last included index and term, payload
  length, sha256) and are written to a temp file, fsynced, renamed into place, and the
  directory fsynced, before pysyncobj is told the snapshot exists (and so before any
  log entry is dropped). `check_snapshot` verifies one; a node whose snapshot is
  torn or fails its checksum refuses to start, naming the file (never silently
  starting without its state). A follower writes a received snapshot the same way
  and verifies it before installing it.
- **Compaction** never rewrites the only copy: the entries kept are written to a new
  journal file, fsynced, renamed over the old one, directory fsynced; a crash at any
  point leaves the old journal or the new one, each consistent with a durable
  snapshot.
- **Snapshot install and restart keep the log suffix** (Raft section 7): when the log
  holds the snapshot's last included entry (same index and term), entries after it
  are kept; pysyncobj would drop them, and at a restart after a crash between the
  snapshot rename and the compaction it would drop committed entries.

`durable=False` (fsync = "never") keeps the renames but skips the fsyncs: safe
against a process kill, not against a machine crash.
"""

from __future__ import annotations

import contextlib
import ctypes
import gzip
import hashlib
import logging
import os
import signal
import struct
from typing import Any, BinaryIO

from pysyncobj import pickle as _pickle
from pysyncobj.journal import FIRST_RECORD_OFFSET, FileJournal, ResizableFile
from pysyncobj.serializer import Serializer

logger = logging.getLogger(__name__)

MAGIC = b"RSSNAP1\n"
_HEADER = struct.Struct("<8sQQQ32s")  # magic, last index, last term, payload length, sha256
GZIP_MAGIC = b"\x1f\x8b"


class SnapshotError(RuntimeError):
    """A snapshot file that is torn, truncated or fails its checksum."""


def fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: str, path: str, durable: bool) -> None:
    """Rename a complete (and, if durable, fsynced) temp file into place."""
    os.replace(tmp, path)
    if durable:
        fsync_dir(path)


class _Hashing:
    """A write-only file wrapper that counts and hashes what passes through."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.sha = hashlib.sha256()
        self.length = 0

    def write(self, b: bytes) -> int:
        self.sha.update(b)
        self.length += len(b)
        return self.f.write(b)

    def flush(self) -> None:
        self.f.flush()


def write_snapshot(path: str, data: Any, index: int, term: int, durable: bool = True) -> None:
    """Write pysyncobj's snapshot tuple `data` to `path` with a verified header."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"\0" * _HEADER.size)
        h = _Hashing(f)
        with gzip.GzipFile(fileobj=h, mode="wb", compresslevel=1) as g:  # type: ignore[arg-type]
            _pickle.dump(data, g)
        f.seek(0)
        f.write(_HEADER.pack(MAGIC, index, term, h.length, h.sha.digest()))
        f.flush()
        if durable:
            os.fsync(f.fileno())
    _publish(tmp, path, durable)


def check_snapshot(path: str) -> tuple[int, int] | None:
    """(last index, last term) of a valid snapshot; None for a legacy (headerless gzip)
    file, which carries no checksum. Raises SnapshotError for a damaged file."""
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
        if head[:2] == GZIP_MAGIC:
            return None
        if len(head) < _HEADER.size or head[:8] != MAGIC:
            raise SnapshotError(f"snapshot {path} is damaged: bad header ({len(head)} bytes)")
        _, index, term, length, digest = _HEADER.unpack(head)
        sha = hashlib.sha256()
        got = 0
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            got += len(chunk)
    if got != length or sha.digest() != digest:
        raise SnapshotError(f"snapshot {path} is damaged: {got} of {length} payload bytes, "
                            f"checksum {'ok' if sha.digest() == digest else 'mismatch'}")
    return index, term


def read_snapshot(path: str) -> Any:
    check_snapshot(path)
    with open(path, "rb") as f:
        if f.read(2) != GZIP_MAGIC:
            f.seek(_HEADER.size)
        else:
            f.seek(0)
        with gzip.GzipFile(fileobj=f) as g:
            return _pickle.load(g)


SNAPSHOT_CHILD_MAX_SECONDS = 900  # a snapshot child still running then is killed


def _bound_the_child(parent: int) -> None:
    """In the forked snapshot child: die with the node, and never outlive a bound.

    The child inherits every descriptor of the node, its Raft and gRPC listening
    sockets included. A node SIGKILLed while its child writes would leave the child
    holding those ports, and the restarted node could not bind them (seen in
    tests/chaos/test_compaction_kills.py); a child stuck after the fork (gRPC's threads
    restarted in the child, a lock copied while held) would hold them, and block every
    later compaction, for good. So: SIGKILL when the parent dies (prctl
    PR_SET_PDEATHSIG), and SIGALRM's default action after SNAPSHOT_CHILD_MAX_SECONDS."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the node died before the prctl took effect
        os._exit(1)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(SNAPSHOT_CHILD_MAX_SECONDS)


class DurableSerializer(Serializer):
    """pysyncobj's Serializer with the snapshot file format and write order above.
    Constructed by SyncObj.__init__ (see SafeSyncObj), so every snapshot it ever
    reads or writes goes through here."""

    durable = True

    def serialize(self, data: Any, id: Any) -> None:
        path = self._Serializer__fileName
        if path is None or self._Serializer__serializer is not None:
            return super().serialize(data, id)
        if self._Serializer__pid != 0:
            return None
        self._Serializer__currentID = id
        use_fork = self._Serializer__useFork
        if use_fork:
            parent = os.getpid()
            pid = os.fork()
            if pid != 0:
                self._Serializer__pid = pid
                return None
            _bound_the_child(parent)
        try:
            last = data[1]  # (command, index, term) of the last included entry
            write_snapshot(path, data, last[1], last[2], self.durable)
            ok = True
        except Exception:
            logger.exception("snapshot not written")
            ok = False
        if use_fork:
            os._exit(0 if ok else 1)
        self._Serializer__pid = -1 if ok else -2
        return None

    def deserialize(self) -> Any:
        cached = getattr(self, "_rs_cached", None)
        if cached is not None:
            self._rs_cached = None
            return cached
        path = self._Serializer__fileName
        if path is None or self._Serializer__deserializer is not None:
            return super().deserialize()
        return read_snapshot(path)

    def setTransmissionData(self, data: Any) -> bool:
        """A follower receiving a snapshot: verified and durable before it is installed
        (and so before the leader hears that it was)."""
        path = self._Serializer__fileName
        if path is None or data is None:
            return bool(super().setTransmissionData(data))
        chunk, is_first, is_last = data
        tmp = path + ".1.tmp"
        if is_first:
            if self._Serializer__incomingTransmissionFile is not None:
                self._Serializer__incomingTransmissionFile.close()
            self._Serializer__incomingTransmissionFile = open(tmp, "wb")  # noqa: SIM115 (spans calls)
        f = self._Serializer__incomingTransmissionFile
        if f is None:
            return False
        try:
            f.write(chunk)
            if not is_last:
                return False
            f.flush()
            if self.durable:
                os.fsync(f.fileno())
            f.close()
            self._Serializer__incomingTransmissionFile = None
            check_snapshot(tmp)
            _publish(tmp, path, self.durable)
            return True
        except (OSError, SnapshotError):
            logger.exception("received snapshot not installed")
            self._Serializer__incomingTransmissionFile = None
            return False


def _journal_bytes(entries: list[tuple[bytes, int, int]], header: bytes) -> tuple[bytes, int]:
    parts = []
    for command, idx, term in entries:
        rec = struct.pack("<QQ", idx, term) + command
        size = struct.pack("<I", len(rec))
        parts.append(size + rec + size)
    body = b"".join(parts)
    end = FIRST_RECORD_OFFSET + len(body)
    return header[: FIRST_RECORD_OFFSET - 4] + struct.pack("<I", end) + body, end


def compact_journal(journal: FileJournal, entry_to: int, durable: bool) -> None:
    """FileJournal.deleteEntriesTo without rewriting the only copy in place."""
    kept = list(journal._FileJournal__journal[entry_to:])
    old: ResizableFile = journal._FileJournal__journalFile
    path = old._ResizableFile__fileName
    blob, end = _journal_bytes(kept, journal._FileJournal__getDefaultHeader())
    tmp = path + ".compact"
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        if durable:
            os.fsync(f.fileno())
    _publish(tmp, path, durable)
    old._destroy()
    journal._FileJournal__journalFile = ResizableFile(path)
    journal._FileJournal__journal = kept
    journal._FileJournal__currentOffset = end
