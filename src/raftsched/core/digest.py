"""An order-independent state digest, kept current at O(1) per change. Pure.

The digest of a replica is sha256 over its small parts (counters, nodes,
extension state, applied index) plus three multiset hashes: the sum, modulo
2**128, of a 128-bit blake2b hash of the canonical encoding of every job, of every
applied-request (dedup) entry and of every idempotency key entry. A sum can be
updated by subtracting the hash of an old version and adding the new one, so
replicas that hold the same jobs have the same sum whatever order they got them
in, and a state restored from a snapshot digests exactly like the one that wrote it.

Apply only records what changed (`Tracker.job`, `dedup_add`, ...: a dict or list
operation, no hashing). The hashing happens in `Work.compute`, which a node runs
off its Raft and event-loop threads: `Tracker.take` (under the replica lock, cheap:
it swaps out the change log) captures everything a digest at this applied index
needs; `compute` is pure over immutable values; `Tracker.settle` stores the new
sums. Takes must not overlap (the caller serializes take -> compute -> settle).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from raftsched.core import codec

MOD = 1 << 128
_SEP = (",", ":")


def _h(kind: bytes, wire: Any) -> int:
    blob = json.dumps(wire, sort_keys=True, separators=_SEP).encode()
    return int.from_bytes(hashlib.blake2b(kind + blob, digest_size=16).digest(), "big")


def job_hash(job: Any) -> int:
    return _h(b"j", codec.to_wire(job))


def pair_hash(kind: bytes, key: str, value: Any) -> int:
    return _h(kind, [key, value])


@dataclass
class Sums:
    jobs: int = 0
    dedup: int = 0
    idem: int = 0


def _res(r: Any) -> Any:
    return [r.code.value, r.value, r.message]


@dataclass
class Work:
    """Everything one digest needs, captured at one applied index. `compute` is pure.
    Full: `jobs`, `dedup`, `idem` hold every entry; else only what changed."""

    base: Sums
    full: bool
    jobs: Any  # full: list of jobs; else {id: [version in base, current or None]}
    dedup_add: list[tuple[str, Any]]  # (request id, Result)
    dedup_del: list[tuple[str, Any]]
    idem: Any  # full: list of (key, value); else {key: [value in base or None, current or None]}
    small: dict[str, Any]

    def compute(self) -> tuple[Sums, str]:
        s = Sums() if self.full else Sums(self.base.jobs, self.base.dedup, self.base.idem)
        j, d, i = s.jobs, s.dedup, s.idem
        if self.full:
            for job in self.jobs:
                j += job_hash(job)
            for key, v in self.idem:
                i += pair_hash(b"i", key, v)
        else:
            for old, new in self.jobs.values():
                if old is not None:
                    j -= job_hash(old)
                if new is not None:
                    j += job_hash(new)
            for key, (old_v, new_v) in self.idem.items():
                if old_v is not None:
                    i -= pair_hash(b"i", key, old_v)
                if new_v is not None:
                    i += pair_hash(b"i", key, new_v)
        for rid, res in self.dedup_add:
            d += pair_hash(b"d", rid, _res(res))
        for rid, res in self.dedup_del:
            d -= pair_hash(b"d", rid, _res(res))
        sums = Sums(j % MOD, d % MOD, i % MOD)
        doc = dict(self.small, jobs=f"{sums.jobs:032x}", dedup=f"{sums.dedup:032x}",
                   idem=f"{sums.idem:032x}")
        blob = json.dumps(doc, sort_keys=True, separators=_SEP).encode()
        return sums, hashlib.sha256(blob).hexdigest()


@dataclass
class Tracker:
    """The change log since the last digest (O(1) per change), and the sums as of then."""

    sums: Sums = field(default_factory=Sums)
    full: bool = True  # the next digest hashes everything (fresh or restored state)
    jobs: dict[str, list[Any]] = field(default_factory=dict)  # id -> [version in sums, latest]
    dedup_add: list[tuple[str, Any]] = field(default_factory=list)
    dedup_del: list[tuple[str, Any]] = field(default_factory=list)
    idem: dict[str, list[Any]] = field(default_factory=dict)  # key -> [value in sums, latest]
    taken: bool = False

    def job(self, old: Any, new: Any) -> None:
        if self.full:
            return
        rec = self.jobs.get(new.id if new is not None else old.id)
        if rec is None:
            self.jobs[new.id if new is not None else old.id] = [old, new]
        else:
            rec[1] = new

    def dedup_added(self, rid: str, res: Any) -> None:
        if not self.full:
            self.dedup_add.append((rid, res))

    def dedup_removed(self, rid: str, res: Any) -> None:
        if not self.full:
            self.dedup_del.append((rid, res))

    def idem_changed(self, key: str, old: Any, new: Any) -> None:
        if self.full:
            return
        rec = self.idem.get(key)
        if rec is None:
            self.idem[key] = [old, new]
        else:
            rec[1] = new

    def take(self, jobs: dict[str, Any], dedup: dict[str, Any], idem: dict[str, Any],
             small: dict[str, Any]) -> Work:
        """Capture a digest's inputs. Call under the replica lock: it only swaps out the
        change log (or, for a full digest, copies the three tables at C speed)."""
        if self.taken:
            raise RuntimeError("a digest is already being computed")
        self.taken = True
        if self.full:
            work = Work(Sums(), True, list(jobs.values()), list(dedup.items()), [],
                        list(idem.items()), small)
        else:
            work = Work(self.sums, False, self.jobs, self.dedup_add, self.dedup_del, self.idem,
                        small)
        self.full = False
        self.jobs, self.idem = {}, {}
        self.dedup_add, self.dedup_del = [], []
        return work

    def settle(self, sums: Sums) -> None:
        self.sums = sums
        self.taken = False

    def abandon(self) -> None:
        """The computation failed: hash everything next time."""
        self.full = True
        self.taken = False
        self.jobs, self.idem = {}, {}
        self.dedup_add, self.dedup_del = [], []
