"""pysyncobj's FileJournal made durable on demand (the fsync modes of `raftsafe`):
SafeSyncObj swaps the live journal's class to `DurableFileJournal` (same object and
mmap), which tracks what is dirty and flushes it with fsync when asked.

The meta file (currentTerm, votedFor, commitIndex) is rewritten (temp file, fsync,
rename, directory fsync) synchronously only when the term or vote changes. A new
commitIndex alone is written lazily, from the one-second timer, after the entries
it covers are durable: Raft keeps commitIndex volatile, and a restarted node that
reads an older one only waits for the leader to tell it again (pysyncobj's own
FileJournal saves it the same way). Before, every tick that advanced the commit
index paid two fsyncs and a rename for it: most of the fsync cost of "always".

Durability (``fsync=`` on SafeSyncObj, needs ``conf.journalFile``):

* ``"never"``: pysyncobj as-is; the journal is an mmap that is never msync'ed
  and the .meta file is renamed into place without fsync.  Survives a process
  kill (dirty pages live in the page cache) but not a machine/OS crash or
  power loss, where acknowledged and even committed entries may vanish.
* ``"always"`` (the default of a cluster config): journal entries are made
  durable (os.fsync of the mapped file) before every acknowledgement: before a follower
  sends next_node_idx, and at the start of each tick, before the leader counts its
  own log when advancing the commit index; one fsync covers every entry written
  since the last. The meta (currentTerm, votedFor) is written to a temp file,
  fsynced, renamed and the directory fsynced whenever currentTerm/votedFor change
  (i.e. before a vote is requested or granted). commitIndex, volatile in Raft, is
  saved with the meta lazily (one-second timer, after the entries it covers).
  Survives machine crashes, of a majority too: nothing acknowledged is lost.
* ``"batch"``: currentTerm/votedFor are made durable synchronously (rare; this
  prevents double votes); entries and commitIndex are flushed from the tick loop
  once ``fsync_batch_interval`` (0.05 s) has passed since the last flush.
  Survives a process kill; a machine crash may lose the acknowledged entries of
  the last interval plus one tick, so a committed entry is lost only if a
  majority crashes within that window.
"""

from __future__ import annotations

import os
import threading
import time

from pysyncobj import pickle as _pickle
from pysyncobj.journal import FileJournal

from raftsched.replica.durable import compact_journal, fsync_dir


class DurableFileJournal(FileJournal):
    """FileJournal tracking dirtiness, made durable on demand (set via __class__)."""

    def _rs_setup(self, mode: str, interval: float) -> None:
        self._rs_mode = mode
        self._rs_interval = interval
        self._rs_dirty = True  # anything written before the swap
        self._rs_meta_dirty = True  # term/vote changed: written before the next message
        self._rs_commit_dirty = False  # commitIndex changed: written from the timer
        self._rs_last_sync = float("-inf")
        self._rs_syncs = 0
        # The node's first rs_sync (SafeSyncObj.__init__, main thread) can run while
        # pysyncobj's tick thread, already started, syncs too: both wrote and renamed
        # the same meta .tmp file and one start failed with FileNotFoundError.
        self._rs_lock = threading.Lock()

    def add(self, command, idx, term):
        super().add(command, idx, term)
        self._rs_dirty = True

    def clear(self):  # deleteEntriesTo is clear() + add()
        super().clear()
        self._rs_dirty = True

    def deleteEntriesFrom(self, entryFrom):
        super().deleteEntriesFrom(entryFrom)
        self._rs_dirty = True

    def setRaftCommitIndex(self, raftCommitIndex):
        if self._FileJournal__meta.get("raftCommitIndex") != raftCommitIndex:
            super().setRaftCommitIndex(raftCommitIndex)
            self._rs_commit_dirty = True

    def deleteEntriesTo(self, entryTo):
        # compaction: a new journal file renamed into place, never an in-place rewrite
        compact_journal(self, entryTo, durable=self._rs_mode != "never")
        if self._rs_mode != "never":
            self._rs_dirty = False

    def setCurrentTerm(self, term, votedForNodeId):
        if self._rs_mode == "never":
            return FileJournal.setCurrentTerm(self, term, votedForNodeId)
        self._FileJournal__meta["currentTerm"] = term
        self._FileJournal__meta["votedForNodeId"] = votedForNodeId
        self._rs_meta_dirty = True
        # Both modes: term/vote durable before any message that reflects them.
        self.rs_sync(force_entries=self._rs_mode == "always")

    def onOneSecondTimer(self):
        if self._rs_mode == "never":
            return FileJournal.onOneSecondTimer(self)
        if self._rs_commit_dirty:
            self._rs_meta_dirty = True  # after the entries, in the same rs_sync
        self.rs_sync()

    def rs_sync(self, force_entries: bool = True) -> bool:
        """Make dirty state durable; returns True if anything was written."""
        with self._rs_lock:
            return self._rs_sync(force_entries)

    def _rs_sync(self, force_entries: bool) -> bool:
        wrote = False
        if self._rs_dirty and force_entries:
            # fsync of the mapped file alone: pages written through a shared mapping are
            # the file's dirty page-cache pages, and Linux's msync(MS_SYNC) is itself
            # vfs_fsync_range of the file (mm/msync.c). CPython's mmap.flush() (msync)
            # keeps the GIL for the whole disk write, stalling the node's event loop and
            # Raft tick (12% of the leader's GIL time at 64 submissions in flight);
            # os.fsync releases it.
            rfile = self._FileJournal__journalFile
            os.fsync(rfile._ResizableFile__f.fileno())
            self._rs_dirty = False
            self._rs_last_sync = time.monotonic()
            wrote = True
        if self._rs_meta_dirty:
            self._rs_store_meta()
            wrote = True
        self._rs_syncs += wrote
        return wrote

    def rs_maybe_sync(self) -> None:
        due = self._rs_mode == "always" or (
            time.monotonic() - self._rs_last_sync >= self._rs_interval)
        if due and (self._rs_dirty or self._rs_meta_dirty):
            self.rs_sync()

    def _rs_store_meta(self) -> None:
        path = self._FileJournal__metaStorer.getPath()
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(_pickle.dumps(self._FileJournal__meta))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path)
        self._FileJournal__metaSaved = True
        self._rs_meta_dirty = self._rs_commit_dirty = False
