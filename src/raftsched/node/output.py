"""A job's stdout/stderr: read from a pipe by the node's event loop into the
attempt's file, up to a per-stream cap. Past the cap a truncation marker is
written once and the rest is read and discarded (the job is never blocked or
killed for printing too much); the last TAIL_BYTES of the stream are kept in
memory for the report. Output files of ended attempts are deleted oldest first
once the node's retention (total bytes, or file count) is exceeded.

A stream's file is created at its first byte: most jobs print nothing, and creating
two files per attempt was a fifth of a node's time running no-op jobs (a create in a
large directory costs up to ~0.6 ms here). Retention remembers the attempts that
printed nothing, so readers can tell "empty" from "no longer kept".
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections import deque
from pathlib import Path
from typing import BinaryIO

TAIL_BYTES = 4096
READ_CHUNK = 1 << 20
READS_PER_WAKEUP = 8  # bound the work of one event-loop callback
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def marker(cap: int) -> bytes:
    return f"\n[raftsched: output truncated at the cap of {cap} bytes; the rest is discarded]\n".encode()


class OutputSink:
    """One stream of one attempt. `child_fd` goes to the job; the node keeps the rest."""

    def __init__(self, loop: asyncio.AbstractEventLoop, path: Path, cap: int) -> None:
        self.loop = loop
        self.path = path
        self.cap = cap  # 0: unlimited
        self.written = 0
        self.discarded = 0
        self.tail = b""
        self.file: BinaryIO | None = None  # created at the first byte (see the module doc)
        self.unwritable = ""  # why the file could not be created
        self.fd, self.child_fd = os.pipe2(os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # fewer wakeups for chatty jobs
            fcntl.fcntl(self.fd, F_SETPIPE_SZ, PIPE_SIZE)
        os.set_blocking(self.fd, False)
        self._open = True
        loop.add_reader(self.fd, self._readable)

    def child_started(self) -> None:
        """The job holds its copy of the write end now; drop ours so EOF can come."""
        if self.child_fd >= 0:
            os.close(self.child_fd)
            self.child_fd = -1

    def _readable(self) -> None:
        for _ in range(READS_PER_WAKEUP):
            if not self._read_once():
                return

    def _read_once(self) -> bool:
        try:
            chunk = os.read(self.fd, READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            chunk = b""
        if not chunk:
            self._stop_reading()
            return False
        self._take(chunk)
        return True

    def _write(self, data: bytes) -> None:
        if self.file is None:
            if self.unwritable:
                return
            try:
                self.file = open(self.path, "wb", buffering=0)  # noqa: SIM115 - closed in close()
            except OSError as e:  # the job runs on; its output reaches the report's tail only
                self.unwritable = f"[raftsched: cannot create {self.path.name}: {e.strerror}]\n"
                self.tail = (self.tail + self.unwritable.encode())[-TAIL_BYTES:]
                return
        self.file.write(data)

    def _take(self, chunk: bytes) -> None:
        keep = chunk if not self.cap else chunk[: max(0, self.cap - self.written)]
        if keep:
            self._write(keep)
            self.written += len(keep)
        if len(keep) < len(chunk):
            if not self.discarded:
                self._write(marker(self.cap))
            self.discarded += len(chunk) - len(keep)
        self.tail = (self.tail + chunk)[-TAIL_BYTES:]

    def _stop_reading(self) -> None:
        if self._open:
            self._open = False
            self.loop.remove_reader(self.fd)

    def close(self) -> str:
        """Read what is left without blocking, close, and return the tail."""
        self.child_started()
        if self._open:
            while self._read_once():
                pass
        self._stop_reading()
        with contextlib.suppress(OSError):
            os.close(self.fd)
        if self.discarded:
            self._write(f"[raftsched: {self.discarded} bytes discarded]\n".encode())
        if self.file is not None:
            self.file.close()
        return self.tail.decode("utf-8", "replace")

    def size(self) -> int:
        return self.written + (len(marker(self.cap)) + 64 if self.discarded else 0)


class Retention:
    """Deletes output files of ended attempts, oldest first, beyond a total size or count."""

    def __init__(self, max_bytes: int, max_files: int) -> None:
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.kept: deque[tuple[tuple[Path, ...], int]] = deque()
        self.total = 0
        self.empty: set[tuple[Path, ...]] = set()  # kept attempts that printed nothing

    def add(self, paths: tuple[Path, ...], size: int) -> None:
        self.kept.append((paths, size))
        self.total += size
        if not size:
            self.empty.add(paths)
        while len(self.kept) > self.max_files or (
                len(self.kept) > 1 and self.max_bytes and self.total > self.max_bytes):
            old, n = self.kept.popleft()
            self.total -= n
            self.empty.discard(old)
            for p in old:
                p.unlink(missing_ok=True)
