"""A copy of the replicated state at one applied index (a backup), taken cheaply under
the replica lock and turned into the snapshot dict and the digest anywhere else. Pure.

`ClusterState.capture()` copies the references of its tables (jobs, nodes, dedup,
idempotency keys: immutable values, so a list copy at C speed is a frozen view) and
dumps the small extension state; `Captured.to_dict()` is then exactly
`ClusterState.to_dict()` at that index, and `Captured.digest()` the replica digest
`ClusterStatus` reports at that index (a full `core.digest.Work`), both O(state) and
safe to run in a worker thread while the replica goes on applying.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raftsched.core import codec
from raftsched.core.digest import Sums, Work


def result_to_wire(r: Any) -> list[Any]:
    return [r.code.value, r.value, r.message]


@dataclass(frozen=True)
class Captured:
    scalars: dict[str, Any]  # version, next_seq, fencing, applied_index
    nodes: list[Any]
    jobs: list[Any]
    dedup: list[tuple[str, Any]]  # (request id, Result)
    idem: list[tuple[str, tuple[str, float]]]  # (key, (job id, ts))
    fingerprints: list[tuple[str, str]]
    ext: dict[str, Any]  # extension name -> its dump
    small: dict[str, Any]  # the digest's small parts at that index

    @property
    def applied_index(self) -> int:
        return int(self.scalars["applied_index"])

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.scalars)
        d["nodes"] = [codec.to_wire(n) for n in self.nodes]
        d["jobs"] = [codec.to_wire(j) for j in self.jobs]
        d["dedup"] = [[rid, result_to_wire(r)] for rid, r in self.dedup]
        d["idem"] = [[k, jid, ts] for k, (jid, ts) in self.idem]
        if self.fingerprints:
            d["fingerprints"] = [[rid, fp] for rid, fp in self.fingerprints]
        d.update(self.ext)
        return d

    def digest(self) -> str:
        """The replica digest at this index (what `raftsched nodes` shows)."""
        return Work(Sums(), True, self.jobs, self.dedup, [], self.idem, self.small).compute()[1]
