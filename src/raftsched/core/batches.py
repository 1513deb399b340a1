"""Large submissions in bounded Raft entries, accepted all or nothing. Pure.

Applying one entry must take a few milliseconds at most (the Raft tick thread
applies it; heartbeats and lease grants wait meanwhile), so a submission of more
than `PART` jobs is proposed as several entries, yet stays one request to its
client, under one request id:

1. `StageJobs` x parts: each part is stored aside (not visible, not placed);
2. `CommitJobs`: the decision point. All parts staged and the whole submission
   valid (ids, idempotency keys): accepted; else the staged parts are dropped and
   the refusal is the request's result. Nothing of a refused batch is ever visible;
3. `PublishJobs` x parts: the accepted jobs are created, one bounded part per entry.

Every command carries a request id derived from the submission's, so a retry
after a leader change re-proposes only what is missing (the rest are deduplicated).
A leader finishes publishing committed batches whose client went away, and aborts
batches left uncommitted for `ABANDON_AFTER` seconds (`leader_work`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from raftsched.core import codec
from raftsched.core.commands import AbortJobs, CommitJobs, PublishJobs, StageJobs, SubmitJobs
from raftsched.core.jobs import check_submit, create_jobs
from raftsched.core.state import ClusterState, Code, Handler, Result, ok, state_extension

PART = 256  # jobs per staged part (one Raft entry applies in a few milliseconds)
ABANDON_AFTER = 120.0  # seconds an uncommitted batch waits for its commit
REPUBLISH_AFTER = 5.0  # seconds after its commit a leader finishes a batch itself


@dataclass
class Batch:
    ts: float  # leader time of its first staged part
    parts: int
    staged: dict[int, SubmitJobs] = field(default_factory=dict)
    committed_at: float = 0.0  # 0: not committed
    # after the commit: per part, the matched (existing) job ids by position
    existing: dict[int, dict[int, str]] = field(default_factory=dict)


def _batches(state: ClusterState) -> dict[str, Batch]:
    return state.ext["batches"]  # type: ignore[no-any-return]


def _dump(bs: dict[str, Batch]) -> dict[str, Any]:
    return {bid: {"ts": b.ts, "parts": b.parts, "committed_at": b.committed_at,
                  "staged": [[i, codec.to_wire(sub)] for i, sub in sorted(b.staged.items())],
                  "existing": [[i, sorted(e.items())] for i, e in sorted(b.existing.items())]}
            for bid, b in bs.items()}


def _load(d: dict[str, Any]) -> dict[str, Batch]:
    return {bid: Batch(w["ts"], w["parts"],
                       {i: codec.from_wire(SubmitJobs, sub) for i, sub in w["staged"]},
                       w["committed_at"], {i: dict((int(k), v) for k, v in e) for i, e in w["existing"]})
            for bid, w in d.items()}


def _summary(bs: dict[str, Batch]) -> dict[str, Any]:
    """What the digest hashes: the shape of every batch (not its specs: kept small)."""
    return {bid: [b.ts, b.parts, b.committed_at,
                  [[i, len(sub.jobs), sub.jobs[0][0], sub.jobs[-1][0]] for i, sub in sorted(b.staged.items())]]
            for bid, b in bs.items()}


state_extension("batches", dict, _dump, _load, _summary)


def _stage(state: ClusterState, cmd: StageJobs) -> Result:
    if not 0 <= cmd.part < cmd.parts or not cmd.sub.jobs or len(cmd.sub.jobs) > PART:
        return Result(Code.INVALID, None, f"part {cmd.part} of {cmd.parts} with "
                      f"{len(cmd.sub.jobs)} jobs: parts hold 1 to {PART} jobs")
    bs = _batches(state)
    b = bs.get(cmd.batch)
    if b is None:
        b = bs[cmd.batch] = Batch(cmd.ts, cmd.parts)
    if b.parts != cmd.parts:
        return Result(Code.INVALID, None, f"batch {cmd.batch} has {b.parts} parts, not {cmd.parts}")
    if b.committed_at:
        return ok(cmd.part)  # a late duplicate: the batch was decided already
    b.staged[cmd.part] = cmd.sub
    return ok(cmd.part)


def _commit(state: ClusterState, cmd: CommitJobs) -> Result:
    bs = _batches(state)
    b = bs.get(cmd.batch)
    if b is None:
        return Result(Code.PRECONDITION, None, f"batch {cmd.batch} has no staged parts")
    missing = [i for i in range(b.parts) if i not in b.staged]
    if missing or b.parts != cmd.parts:
        return Result(Code.PRECONDITION, None,
                      f"batch {cmd.batch} is incomplete: parts {missing[:10]} not staged")
    jobs = tuple(j for i in range(b.parts) for j in b.staged[i].jobs)
    keyed = any(b.staged[i].keys for i in range(b.parts))
    keys = tuple(k for i in range(b.parts)
                 for k in (b.staged[i].keys or ("",) * len(b.staged[i].jobs))) if keyed else ()
    checked = check_submit(state, cmd.ts, jobs, keys, cmd.key_retention_s)
    if isinstance(checked, Result):
        del bs[cmd.batch]  # refused whole: nothing of it was ever visible
        return checked
    b.committed_at = cmd.ts
    ids = [jid for jid, _ in jobs]
    start = 0
    for i in range(b.parts):
        n = len(b.staged[i].jobs)
        b.existing[i] = {k - start: v for k, v in checked.items() if start <= k < start + n}
        start += n
    for k, v in checked.items():
        ids[k] = v
    return ok(tuple(ids))


def _publish(state: ClusterState, cmd: PublishJobs) -> Result:
    bs = _batches(state)
    b = bs.get(cmd.batch)
    if b is None or cmd.part not in b.staged:
        return ok(0)  # published already (or never committed: nothing to do)
    if not b.committed_at:
        return Result(Code.PRECONDITION, None, f"batch {cmd.batch} is not committed")
    sub = b.staged.pop(cmd.part)
    create_jobs(state, cmd.ts, sub.jobs, sub.keys, b.existing.pop(cmd.part, {}), sub.by)
    if not b.staged:
        del bs[cmd.batch]
    return ok(len(sub.jobs))


def _abort(state: ClusterState, cmd: AbortJobs) -> Result:
    bs = _batches(state)
    b = bs.get(cmd.batch)
    if b is None or b.committed_at:
        return ok(False)
    del bs[cmd.batch]
    return ok(True)


HANDLERS: dict[type, Handler] = {
    StageJobs: _stage,
    CommitJobs: _commit,
    PublishJobs: _publish,
    AbortJobs: _abort,
}


def split(jobs: tuple[tuple[str, Any], ...], keys: tuple[str, ...], by: str = "") -> list[SubmitJobs]:
    """A submission's parts (each a SubmitJobs without request id or time); `by`: the
    submitting token's name."""
    return [SubmitJobs("", 0.0, jobs[i:i + PART], keys[i:i + PART] if keys else (), by=by)
            for i in range(0, len(jobs), PART)]


def leader_work(state: ClusterState, now: float, rid: str) -> list[PublishJobs | AbortJobs]:
    """What a leader proposes for batches their client left behind: the missing parts
    of committed batches, and aborts of batches uncommitted for too long."""
    out: list[PublishJobs | AbortJobs] = []
    for bid, b in _batches(state).items():
        if b.committed_at and now - b.committed_at > REPUBLISH_AFTER:
            out += [PublishJobs(f"{rid}/{bid}/{i}", now, bid, i) for i in sorted(b.staged)]
        elif not b.committed_at and now - b.ts > ABANDON_AFTER:
            out.append(AbortJobs(f"{rid}/{bid}", now, bid))
    return out


def weight(cmd: Any) -> int:
    """How many jobs applying `cmd` touches, roughly (bounds the jobs per Raft entry)."""
    if isinstance(cmd, StageJobs):
        return 1  # stored as-is
    if isinstance(cmd, PublishJobs):
        return PART
    n = getattr(cmd, "jobs", None) or getattr(cmd, "items", None)
    return len(n) if isinstance(n, tuple) else 1
