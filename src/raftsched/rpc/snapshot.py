"""Cluster.SaveSnapshot: a backup of this node's applied state at one Raft index.

The state is captured under the replica lock (`ClusterState.capture`: reference copies
of its tables, O(1) per entry at C speed, plus the small extension dumps), then
encoded in a worker thread of the expensive-read limiter (`rpc.limits`): the
versioned snapshot dict as JSON, one small `json.dumps` per table entry so the GIL
is handed back every few milliseconds, compressed with gzip as it goes, and the
replica digest at that index computed from the same copy. The payload is streamed
in chunks of at most `CHUNK` bytes; the first carries what it covers
(`SnapshotInfo`), the last its length and sha256. With `consistent` the call first
waits (ReadIndex) until this node applied every write acknowledged before it.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc

from raftsched.config import ClusterConfig
from raftsched.core import codec
from raftsched.core.snapshot import Captured
from raftsched.ports import RaftStatus, ReplicaView
from raftsched.rpc.freshness import Freshness
from raftsched.rpc.limits import ReadLimiter
from raftsched.v1 import cluster_pb2

CHUNK = 1 << 20
ENCODING = "json+gzip"
_BATCH = 256  # table entries per json.dumps call
_SEP = (",", ":")


def _json_pieces(d: dict[str, Any]) -> Iterator[str]:
    """`json.dumps(d)` (compact) in small pieces: a long list item by item, in batches."""
    yield "{"
    for i, (key, value) in enumerate(d.items()):
        yield ("," if i else "") + json.dumps(key) + ":"
        if isinstance(value, list) and len(value) > _BATCH:
            yield "["
            for start in range(0, len(value), _BATCH):
                part = json.dumps(value[start:start + _BATCH], separators=_SEP)
                yield ("," if start else "") + part[1:-1]
            yield "]"
        else:
            yield json.dumps(value, separators=_SEP)
    yield "}"


def encode(cap: Captured) -> tuple[list[bytes], int, str]:
    """The payload of a capture (gzip of its snapshot dict as JSON) in chunks of at most
    CHUNK bytes, its length and hex sha256. O(state): run it in a worker thread."""
    gz = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    sha = hashlib.sha256()
    out: list[bytes] = []
    buf = bytearray()
    total = 0

    def emit(data: bytes) -> None:
        nonlocal total
        buf.extend(data)
        while len(buf) >= CHUNK:
            out.append(bytes(buf[:CHUNK]))
            del buf[:CHUNK]
        sha.update(data)
        total += len(data)

    pending: list[str] = []
    size = 0
    for piece in _json_pieces(cap.to_dict()):
        pending.append(piece)
        size += len(piece)
        if size >= CHUNK:
            emit(gz.compress("".join(pending).encode()))
            pending, size = [], 0
    emit(gz.compress("".join(pending).encode()))
    emit(gz.flush())
    if buf:
        out.append(bytes(buf))
    return out, total, sha.hexdigest()


class SnapshotSaver:
    def __init__(self, cfg: ClusterConfig, me_id: str, replica: ReplicaView, raft: RaftStatus,
                 reads: ReadLimiter, freshness: Freshness | None) -> None:
        self.cfg = cfg
        self.me_id = me_id
        self.replica = replica
        self.raft = raft
        self.reads = reads
        self.freshness = freshness

    def _take(self) -> tuple[cluster_pb2.SnapshotInfo, list[bytes], int, str]:
        with self.replica.lock:
            cap = self.replica.state.capture()
            term = self.raft.term()
        created = time.time()
        chunks, length, sha = encode(cap)
        info = cluster_pb2.SnapshotInfo(
            applied_index=cap.applied_index, term=term, node_id=self.me_id,
            cluster_name=self.cfg.name, node_ids=[n.id for n in self.cfg.nodes],
            state_digest=cap.digest(), job_count=len(cap.jobs), created_at=created,
            encoding=ENCODING, state_version=codec.STATE_VERSION)
        return info, chunks, length, sha

    async def stream(self, request: cluster_pb2.SaveSnapshotRequest,
                     context: grpc.aio.ServicerContext) -> AsyncIterator[cluster_pb2.SnapshotChunk]:
        if request.consistent:
            if self.freshness is None:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    "consistent: this node cannot serve consistent reads")
            else:
                await self.freshness.barrier(context)
        info, chunks, length, sha = await self.reads.run(context, "SaveSnapshot", self._take)
        for i, data in enumerate(chunks):
            msg = cluster_pb2.SnapshotChunk(data=data)
            if i == 0:
                msg.info.CopyFrom(info)
            if i == len(chunks) - 1:
                msg.payload_sha256 = sha
                msg.payload_bytes = length
            yield msg
