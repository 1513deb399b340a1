"""Backup files of the replicated state (`raftsched operator snapshot save|inspect|restore`).

A file is::

    RAFTSCHED-BACKUP\\n
    <header: one line of JSON, utf-8>\\n
    <payload: the state's versioned snapshot dict as JSON, gzip-compressed>

The header says what the payload covers (`HEADER_FIELDS`: format version, cluster name
and node ids, Raft applied index and term, the node it came from, when, the replica
digest at that index, job count, encoding) and carries the payload's length and
sha256. `verify` checks both; a file that fails is refused by inspect and restore.
`save` writes from a Cluster.SaveSnapshot stream: payload to a temp file, checked
against the server's length and sha256, then the whole file written and renamed
into place (a partial or corrupt transfer never leaves a file under the name).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MAGIC = b"RAFTSCHED-BACKUP\n"
FORMAT_VERSION = 1
MAX_HEADER = 64 * 1024
HEADER_FIELDS = ("format_version", "cluster_name", "node_ids", "node_id", "applied_index", "term",
                 "created_at", "state_digest", "job_count", "state_version", "encoding",
                 "payload_bytes", "payload_sha256")
ENCODING = "json+gzip"


class BackupError(Exception):
    """A backup file that cannot be used (the message names the file and what is wrong)."""


def _check_header(path: Path, h: Any) -> dict[str, Any]:
    if not isinstance(h, dict):
        raise BackupError(f"{path}: header is not a JSON object")
    missing = [f for f in HEADER_FIELDS if f not in h]
    if missing:
        raise BackupError(f"{path}: header lacks {', '.join(missing)}")
    if h["format_version"] != FORMAT_VERSION:
        raise BackupError(f"{path}: format_version {h['format_version']!r} is not supported "
                          f"(this raftsched reads {FORMAT_VERSION})")
    if h["encoding"] != ENCODING:
        raise BackupError(f"{path}: encoding {h['encoding']!r} is not supported ({ENCODING})")
    for f in ("applied_index", "term", "job_count", "payload_bytes", "state_version"):
        if not isinstance(h[f], int) or h[f] < 0:
            raise BackupError(f"{path}: header field {f} is not a non-negative integer")
    return h


def read_header(path: str | os.PathLike[str]) -> tuple[dict[str, Any], int]:
    """(header, offset of the payload); BackupError if the file is not a backup."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise BackupError(f"{p}: not a raftsched backup (bad magic)")
            line = f.readline(MAX_HEADER + 1)
    except OSError as e:
        raise BackupError(f"{p}: {e.strerror or e}") from None
    if not line.endswith(b"\n"):
        raise BackupError(f"{p}: header is truncated or longer than {MAX_HEADER} bytes")
    try:
        h = json.loads(line)
    except ValueError:
        raise BackupError(f"{p}: header is not valid JSON") from None
    return _check_header(p, h), len(MAGIC) + len(line)


def verify(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header of a file whose payload has the recorded length and sha256."""
    h, offset = read_header(path)
    sha = hashlib.sha256()
    got = 0
    with open(path, "rb") as f:
        f.seek(offset)
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            got += len(chunk)
    if got != h["payload_bytes"]:
        raise BackupError(f"{path}: payload is {got} bytes, the header says {h['payload_bytes']} "
                          "(truncated or damaged)")
    if sha.hexdigest() != h["payload_sha256"]:
        raise BackupError(f"{path}: checksum mismatch: payload sha256 {sha.hexdigest()}, the "
                          f"header says {h['payload_sha256']} (the file is damaged)")
    return h


def load(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, state dict) of a verified file."""
    h = verify(path)
    _, offset = read_header(path)
    with open(path, "rb") as f:
        f.seek(offset)
        try:
            with gzip.GzipFile(fileobj=f) as g:
                state = json.load(g)
        except (OSError, EOFError, ValueError) as e:
            raise BackupError(f"{path}: payload does not decode ({e})") from None
    if not isinstance(state, dict) or state.get("applied_index") != h["applied_index"]:
        raise BackupError(f"{path}: payload does not match its header (applied index)")
    return h, state


def _fsync_dir(p: Path) -> None:
    fd = os.open(p.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(path: str | os.PathLike[str], header: dict[str, Any], chunks: Iterable[bytes],
         expect_bytes: Any, expect_sha256: Any) -> dict[str, Any]:
    """Write a backup file from the payload `chunks`; `expect_*` are called after the last
    chunk and return the server's length and sha256, which the payload must match."""
    p = Path(path)
    part, tmp = p.with_name(p.name + ".payload.tmp"), p.with_name(p.name + ".tmp")
    try:
        sha = hashlib.sha256()
        n = 0
        with open(part, "wb") as f:
            for c in chunks:
                f.write(c)
                sha.update(c)
                n += len(c)
        if n != expect_bytes() or sha.hexdigest() != expect_sha256():
            raise BackupError(f"transfer damaged: got {n} bytes sha256 {sha.hexdigest()}, the "
                              f"server sent {expect_bytes()} bytes sha256 {expect_sha256()}")
        h = {**header, "format_version": FORMAT_VERSION, "payload_bytes": n,
             "payload_sha256": sha.hexdigest()}
        h = _check_header(p, h)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out, open(part, "rb") as src:
            out.write(MAGIC + json.dumps(h, sort_keys=True).encode() + b"\n")
            while chunk := src.read(1 << 20):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, p)
        _fsync_dir(p)
        return h
    finally:
        for leftover in (part, tmp):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
