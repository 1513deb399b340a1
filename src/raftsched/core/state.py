"""The replicated state: ClusterState with its derived indexes, snapshot and digest;
the Result of applying a command. Pure and deterministic.

Commands change it only through `core.apply.apply`. Extension points filled by
`core.workflows` when `core.apply` imports it: reactions to a job change
(`on_put`) and extra replicated state (`state_extension`).
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from raftsched.core import codec
from raftsched.core.digest import MOD, Tracker, Work, pair_hash
from raftsched.core.evolve import replace
from raftsched.core.model import (
    ACTIVE_STATES,
    HISTORY_LIMIT,
    TERMINAL_STATES,
    Job,
    JobState,
    Node,
    NodeUsage,
    Transition,
)
from raftsched.core.snapshot import Captured

OUTPUT_TAIL_LIMIT = 4096


class Code(StrEnum):
    OK = "OK"
    NOT_FOUND = "NOT_FOUND"
    INVALID = "INVALID"
    PRECONDITION = "PRECONDITION"
    EXHAUSTED = "EXHAUSTED"  # a namespace quota would be exceeded
    DENIED = "DENIED"  # the namespace does not allow it (e.g. a run_as user)


@dataclass(frozen=True, slots=True)
class Result:
    code: Code
    value: Any = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code is Code.OK


@dataclass(slots=True)
class NamespaceUsage:
    """Derived: what a namespace's unfinished jobs request, and how many are PENDING."""

    cpu_millis: int = 0
    memory_mib: int = 0
    pending: int = 0


def ok(value: Any = None) -> Result:
    return Result(Code.OK, value)


class ClusterState:
    """All replicated state. Fields marked derived are rebuilt from `jobs` on restore."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.nodes: dict[str, Node] = {}
        self.next_seq = 1
        self.fencing = 0  # last fencing token handed out; only grows
        self.applied_index = 0  # Raft index of the last entry applied
        self.dedup: OrderedDict[str, Result] = OrderedDict()
        # request id -> fingerprint of the client request it was first used for
        self.fingerprints: OrderedDict[str, str] = OrderedDict()
        self.fingerprint_sum = 0  # sum of their hashes (mod 2**128): kept for the digest
        # idempotency key -> (job id, submit ts), oldest first; pruned by command ts
        self.idem: OrderedDict[str, tuple[str, float]] = OrderedDict()
        # derived
        # sequence key -> {job id: seq} of its non-terminal jobs
        self.sequences: dict[str, dict[str, int]] = {}
        self.usage: dict[str, NodeUsage] = {}
        self.pending: dict[str, tuple[int, int]] = {}  # job id -> (-priority, seq)
        # terminal jobs by (finished_at, id), lazily cleaned: lets GcJobs find old ones fast
        self._finished: list[tuple[float, str]] = []
        self.counts: Counter[JobState] = Counter()
        # namespace -> requests of its unfinished jobs and its number of PENDING jobs (quotas)
        self.ns_usage: dict[str, NamespaceUsage] = {}
        # transient: job versions written by the entry being applied (for watchers)
        self.changes: list[Job] = []
        # what changed since the last digest (see core.digest); not replicated itself
        self.dig = Tracker()
        # replicated state owned by extension modules (see `state_extension`)
        self.ext: dict[str, Any] = {name: e[0]() for name, e in _STATE_EXT.items()}

    # ---- derived bookkeeping ----------------------------------------------------

    def _usage(self, node_id: str) -> NodeUsage:
        u = self.usage.get(node_id)
        if u is None:
            u = self.usage[node_id] = NodeUsage()
        return u

    def put(self, old: Job | None, new: Job, ts: float | None = None, *, history: bool = True) -> None:
        """Store a new version of a job: history, derived indexes and change feed.

        `ts` is the command's leader time. A change of state or attempt adds a
        step to the job's history (unless history=False: the caller did it).
        """
        if (history and ts is not None
                and (old is None or old.state is not new.state or old.attempt != new.attempt)):
            step = Transition(ts, new.state, new.node_id, new.attempt, new.fencing_token, new.reason)
            hist = new.history + (step,)
            if len(hist) > HISTORY_LIMIT:
                hist = hist[:1] + hist[-(HISTORY_LIMIT - 1):]
            new = replace(new, history=hist)
        self.dig.job(self.jobs.get(new.id), new)
        self._put(old, new)
        self.changes.append(new)
        for hook in _PUT_HOOKS:
            hook(self, old, new, ts)

    def delete(self, job: Job) -> None:
        """Remove a terminal job entirely (dead-letter purge)."""
        if job.state not in TERMINAL_STATES:
            raise ValueError(f"job {job.id} is {job.state.value}; only terminal jobs are deleted")
        self._unindex(job)
        self.dig.job(self.jobs.pop(job.id), None)

    def _ns(self, job: Job, sign: int) -> None:
        if job.state in TERMINAL_STATES:
            return
        u = self.ns_usage.get(job.spec.namespace)
        if u is None:
            u = self.ns_usage[job.spec.namespace] = NamespaceUsage()
        u.cpu_millis += sign * job.spec.resources.cpu_millis
        u.memory_mib += sign * job.spec.resources.memory_mib
        u.pending += sign * (job.state is JobState.PENDING)

    def _unindex(self, old: Job) -> None:
        self.counts[old.state] -= 1
        self._ns(old, -1)
        if old.state is JobState.PENDING:
            del self.pending[old.id]
        elif old.state in ACTIVE_STATES:
            u = self._usage(old.node_id)
            u.cpu_millis -= old.spec.resources.cpu_millis
            u.memory_mib -= old.spec.resources.memory_mib
            u.jobs.discard(old.id)
        key = old.spec.sequence_key
        if key and old.state not in TERMINAL_STATES:
            members = self.sequences[key]
            del members[old.id]
            if not members:
                del self.sequences[key]

    def _put(self, old: Job | None, new: Job) -> None:
        """Replace a job and keep the derived indexes in step."""
        if old is not None:
            self._unindex(old)
        self.counts[new.state] += 1
        self._ns(new, 1)
        if new.state in TERMINAL_STATES and (old is None or old.state not in TERMINAL_STATES):
            heapq.heappush(self._finished, (new.finished_at, new.id))
        if new.state is JobState.PENDING:
            self.pending[new.id] = (-new.spec.priority, new.seq)
        elif new.state in ACTIVE_STATES:
            u = self._usage(new.node_id)
            u.cpu_millis += new.spec.resources.cpu_millis
            u.memory_mib += new.spec.resources.memory_mib
            u.jobs.add(new.id)
        if new.spec.sequence_key and new.state not in TERMINAL_STATES:
            self.sequences.setdefault(new.spec.sequence_key, {})[new.id] = new.seq
        self.jobs[new.id] = new

    def rebuild_derived(self) -> None:
        self.usage = {nid: NodeUsage() for nid in self.nodes}
        self.pending = {}
        self._finished = []
        self.counts = Counter()
        self.sequences = {}
        self.ns_usage = {}
        for job in list(self.jobs.values()):
            self._put(None, job)
        # _put adds to jobs again: same object, harmless

    def forget(self, job: Job) -> None:
        """Remove a terminal job from the state (garbage collection)."""
        self.delete(job)

    def has_finished_before(self, cutoff: float) -> bool:
        return bool(self._finished) and self._finished[0][0] < cutoff

    def finished_before(self, cutoff: float) -> list[Job]:
        """Terminal jobs that finished before `cutoff` (pops them off the index)."""
        out = []
        heap = self._finished
        while heap and heap[0][0] < cutoff:
            ts, jid = heapq.heappop(heap)
            job = self.jobs.get(jid)
            if job is not None and job.state in TERMINAL_STATES and job.finished_at == ts:
                out.append(job)
        return out

    # ---- queries (pure, used by placement and the API) ----------------------------

    def allocated(self, node_id: str) -> NodeUsage:
        return self.usage.get(node_id) or NodeUsage()

    def active_on(self, node_id: str) -> list[Job]:
        u = self.usage.get(node_id)
        if u is None:
            return []
        return [self.jobs[j] for j in sorted(u.jobs)]

    # ---- snapshot ---------------------------------------------------------------

    def capture(self) -> Captured:
        """This state's parts at its applied index (core.snapshot): call under the replica
        lock; the dict and digest are computed from the copy anywhere, off the lock."""
        return Captured(
            {"version": codec.STATE_VERSION, "next_seq": self.next_seq, "fencing": self.fencing,
             "applied_index": self.applied_index},
            list(self.nodes.values()), list(self.jobs.values()), list(self.dedup.items()),
            list(self.idem.items()), list(self.fingerprints.items()),
            {name: v for name, (_init, dump, _load) in _STATE_EXT.items()
             if (v := dump(self.ext[name])) or name not in _OPTIONAL},
            self.digest_small(),
        )

    def to_dict(self) -> dict[str, Any]:
        return self.capture().to_dict()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClusterState:
        if d.get("version") != codec.STATE_VERSION:
            raise codec.CodecError(f"unsupported state version {d.get('version')!r}")
        s = cls()
        s.next_seq = d["next_seq"]
        s.fencing = d["fencing"]
        s.applied_index = d["applied_index"]
        for w in d["nodes"]:
            n = codec.from_wire(Node, w)
            s.nodes[n.id] = n
        for w in d["jobs"]:
            j = codec.from_wire(Job, w)
            s.jobs[j.id] = j
        s.dedup = OrderedDict((rid, result_from_wire(r)) for rid, r in d["dedup"])
        for name, (init, _dump, load) in _STATE_EXT.items():
            s.ext[name] = load(d[name]) if name in d else init()
        s.idem = OrderedDict((k, (jid, ts)) for k, jid, ts in d.get("idem", []))
        s.fingerprints = OrderedDict((rid, fp) for rid, fp in d.get("fingerprints", []))
        s.fingerprint_sum = sum(pair_hash(b"f", rid, fp) for rid, fp in s.fingerprints.items()) % MOD
        s.rebuild_derived()
        return s

    def fingerprint_added(self, rid: str, fp: str) -> None:
        """A request's fingerprint (a reused request id with another request is refused)."""
        old = self.fingerprints.get(rid)
        if old is not None:
            self.fingerprint_removed(rid, old)
        self.fingerprints[rid] = fp
        self.fingerprint_sum = (self.fingerprint_sum + pair_hash(b"f", rid, fp)) % MOD

    def fingerprint_removed(self, rid: str, fp: str) -> None:
        self.fingerprints.pop(rid, None)
        self.fingerprint_sum = (self.fingerprint_sum - pair_hash(b"f", rid, fp)) % MOD

    def digest_small(self) -> dict[str, Any]:
        """The parts of the digest hashed whole each time (small: no jobs, dedup, keys;
        request fingerprints as the sum of their hashes, kept at apply)."""
        d = {
            "version": codec.STATE_VERSION,
            "next_seq": self.next_seq,
            "fencing": self.fencing,
            "applied_index": self.applied_index,
            "nodes": [codec.to_wire(self.nodes[k]) for k in sorted(self.nodes)],
            "fingerprints": f"{self.fingerprint_sum:032x}",
        }
        for name, (_init, dump, _load) in _STATE_EXT.items():
            v = _SUMMARY.get(name, dump)(self.ext[name])
            if v or name not in _OPTIONAL:
                d[name] = v
        return d

    def digest_work(self) -> Work:
        """Inputs of the digest at this applied index (cheap; call under the replica
        lock, then `compute()` anywhere and `dig.settle()` the sums)."""
        return self.dig.take(self.jobs, self.dedup, self.idem, self.digest_small())

    def digest(self) -> str:
        """Order-independent digest (core.digest): equal digests mean equal replicas."""
        work = self.digest_work()
        try:
            sums, hexd = work.compute()
        except BaseException:
            self.dig.abandon()
            raise
        self.dig.settle(sums)
        return hexd

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClusterState):
            return NotImplemented
        return self.digest() == other.digest()

    __hash__ = None  # type: ignore[assignment]


def state_digest(d: dict[str, Any]) -> str:
    """Digest of a `ClusterState.to_dict()` result, independent of insertion order."""
    d = dict(d)
    d["nodes"] = sorted(d["nodes"], key=lambda w: w["id"])
    d["jobs"] = sorted(d["jobs"], key=lambda w: w["id"])
    blob = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


# Deterministic reactions to a job change, registered by extension modules
# (e.g. releasing workflow children when a parent succeeds). Called inside apply,
# after the new version is stored; a hook may itself call `state.put`.
PutHook = Callable[["ClusterState", Job | None, Job, float | None], None]
_PUT_HOOKS: list[PutHook] = []


def on_put(fn: PutHook) -> PutHook:
    _PUT_HOOKS.append(fn)
    return fn


# Replicated state of extension modules: name -> (init, dump, load). `dump` must
# give a canonical JSON value (e.g. a dict keyed by id); it goes into snapshots
# and the digest under `name`. A snapshot without the key loads `init()`.
_STATE_EXT: dict[str, tuple[Callable[[], Any], Callable[[Any], Any], Callable[[Any], Any]]] = {}


# name -> what the digest hashes of that state instead of its full dump (kept small:
# the digest's inputs are taken under the replica lock)
_SUMMARY: dict[str, Callable[[Any], Any]] = {}


# Extensions left out of snapshots and the digest while empty: a state that never used
# one digests as it did before the extension existed (backups of older versions restore,
# and old and new nodes agree on the digest during a rolling upgrade).
_OPTIONAL: set[str] = set()


def state_extension(name: str, init: Callable[[], Any], dump: Callable[[Any], Any],
                    load: Callable[[Any], Any], summary: Callable[[Any], Any] | None = None,
                    optional: bool = False) -> None:
    if name in _STATE_EXT or name in ClusterState().to_dict():
        raise TypeError(f"state extension {name!r} already registered")
    _STATE_EXT[name] = (init, dump, load)
    if optional:
        _OPTIONAL.add(name)
    if summary is not None:
        _SUMMARY[name] = summary


def result_from_wire(w: list[Any]) -> Result:
    value = w[1]
    if isinstance(value, list):
        value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return Result(Code(w[0]), value, w[2])


Handler = Callable[[ClusterState, Any], Result]


def check_report(state: ClusterState, job_id: str, attempt: int, token: int) -> Job | str:
    """The job a worker's report is about, or why the report is refused (stale, not active)."""
    job = state.jobs.get(job_id)
    if job is None:
        return f"job {job_id} not found"
    if job.attempt != attempt or job.fencing_token != token:
        return (
            f"stale report for job {job_id}: attempt {attempt} token {token}, "
            f"current attempt {job.attempt} token {job.fencing_token}"
        )
    if job.state not in ACTIVE_STATES:
        return f"job {job_id} is {job.state.value}; report refused"
    return job
