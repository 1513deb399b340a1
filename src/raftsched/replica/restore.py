"""Seed a fresh cluster's data directories from a backup (offline, nodes stopped).

Each node gets a `raft.snapshot` in the format its SafeSyncObj loads at startup
(`replica.durable`: checksummed header + gzip(pickle(...)) of pysyncobj's snapshot tuple
`(data, last entry, previous entry, cluster)`) and no journal. At start pysyncobj
creates an empty journal, loads the snapshot (`JobStateMachine._deserialize` gets the
state), puts the two entries in its log and sets its last applied index to the
backup's applied index; the log continues from there.

The two entries are NO_OPs of term 0 at indexes `index - 1` and `index`: a fresh
cluster starts at term 0, its first election makes term 1, so log terms stay
monotonic whatever term the old cluster had reached, and a NO_OP sent to a follower
that lacks it changes nothing. `data[0][0]` (pysyncobj's own attributes) is empty.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pysyncobj.node import TCPNode
from pysyncobj.syncobj import _COMMAND_TYPE

from raftsched.config import ClusterConfig
from raftsched.core import apply as _apply  # noqa: F401  (registers every state extension)
from raftsched.core.state import ClusterState
from raftsched.replica.durable import write_snapshot

SNAPSHOT = "raft.snapshot"
# and the member list a node saved (node/members.py): a restored cluster starts from its config's
RAFT_FILES = ("raft.journal", "raft.journal.meta", "raft.snapshot", "members.json")


class RestoreError(Exception):
    """A restore refused before anything was written (the message says why)."""


def raft_files(node_dir: Path) -> list[Path]:
    """Raft files in a node's data dir (journal, its meta, snapshot, their temp files)."""
    if not node_dir.is_dir():
        return []
    return sorted(p for p in node_dir.iterdir() if p.name.startswith(RAFT_FILES))


def snapshot_tuple(state: dict[str, Any], index: int, cfg: ClusterConfig) -> tuple[Any, ...]:
    no_op = bytes([_COMMAND_TYPE.NO_OP])
    cluster = {TCPNode(n.raft) for n in cfg.nodes}
    return ([{}, state], (no_op, index, 0), (no_op, index - 1, 0), cluster)


def check_targets(cfg: ClusterConfig, force: bool) -> list[Path]:
    """The node data dirs to seed; RestoreError if one holds Raft files and not `force`."""
    dirs = [cfg.node_data_dir(n.id) for n in cfg.nodes]
    if not force:
        used = [str(p) for d in dirs for p in raft_files(d)]
        if used:
            raise RestoreError(
                "target data directories are not empty (a restore seeds a FRESH cluster): "
                + ", ".join(used) + "; stop the nodes and pass --force to replace them")
    return dirs


def seed(cfg: ClusterConfig, state: dict[str, Any], index: int, digest: str,
         force: bool = False) -> list[Path]:
    """Write every node's snapshot of `state` (a backup's snapshot dict at Raft `index`
    with replica digest `digest`); returns the files written. Refuses (RestoreError,
    nothing written) when the state does not load, does not digest to `digest`, or a
    target holds Raft files and not `force`."""
    if index < 2:
        raise RestoreError(f"applied index {index}: a backup of an empty log has nothing to restore")
    try:
        loaded = ClusterState.from_dict(state)
    except Exception as e:
        raise RestoreError(f"the backup's state does not load: {e}") from None
    unknown = sorted(set(state) - set(loaded.to_dict()) - {"fingerprints"})
    if unknown:
        raise RestoreError(f"the backup holds state this raftsched does not know: {', '.join(unknown)}")
    if loaded.applied_index != index:
        raise RestoreError(f"the state's applied index {loaded.applied_index} is not {index}")
    got = loaded.digest()
    if got != digest:
        raise RestoreError(f"the backup's state digests to {got}, its header says {digest}")
    dirs = check_targets(cfg, force)
    restored = loaded.to_dict()
    # The old cluster's member list (addresses, after any `operator members` change) is not
    # this cluster's: the new cluster's config seeds its own (core/members.py).
    restored.pop("members", None)
    data = snapshot_tuple(restored, index, cfg)
    written = []
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        for p in raft_files(d):  # only with force (checked above)
            p.unlink()
        path = d / SNAPSHOT
        write_snapshot(str(path), data, index, 0, durable=cfg.fsync != "never")
        os.chmod(path, 0o600)
        written.append(path)
    return written
