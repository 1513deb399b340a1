"""Which pending jobs are runnable now, and in what order. Pure (`now` is the leader's).

A pending job is runnable when its retry time has come and, if it has a
sequence key, it is the head of its sequence with no other member active.

Order (cluster.toml `queue_order`):
  priority (default): effective priority first, then submission order. The
      effective priority is the job's priority plus `aging_rate` points per
      second it has waited (since submission, or since its retry time), so
      low-priority work rises and is not starved by a steady stream of
      high-priority work.
  fifo: submission order only.
"""

from __future__ import annotations

import heapq
from enum import StrEnum

from raftsched.core.model import ACTIVE_STATES, Job, JobState
from raftsched.core.state import ClusterState


class QueueOrder(StrEnum):
    PRIORITY = "priority"
    FIFO = "fifo"


def effective_priority(job: Job, now: float, aging_rate: float) -> float:
    waited = max(0.0, now - max(job.submitted_at, job.not_before))
    return job.spec.priority + aging_rate * waited


def sequence_heads(state: ClusterState) -> set[str]:
    """Per sequence key, the job that may start now (see `sequence_blocker`), if any."""
    heads: set[str] = set()
    for members in state.sequences.values():
        oldest = min(members.items(), key=lambda kv: kv[1])[0]
        if sequence_blocker(state, state.jobs[oldest]) is None:
            heads.add(oldest)
    return heads


def sequence_blocker(state: ClusterState, job: Job) -> str | None:
    """Why `job` may not start now because of its sequence key, or None.

    A job runs only when it is the oldest non-terminal job of its key and no
    other job of that key is active.
    """
    key = job.spec.sequence_key
    if not key:
        return None
    members = state.sequences.get(key, {})
    head = min(members.items(), key=lambda kv: kv[1], default=None)
    if head is not None and head[0] != job.id:
        return f"job {job.id} waits for job {head[0]} (sequence_key {key!r})"
    for jid in members:
        if jid != job.id and state.jobs[jid].state in ACTIVE_STATES:
            return f"job {job.id} waits for active job {jid} (sequence_key {key!r})"
    return None


def runnable(
    state: ClusterState,
    now: float,
    order: QueueOrder = QueueOrder.PRIORITY,
    aging_rate: float = 0.0,
    limit: int = 2000,
) -> list[Job]:
    """Up to `limit` pending jobs that may be placed now, best first."""
    heads = sequence_heads(state) if state.sequences else set()
    return runnable_of(state, list(state.pending), heads, now, order, aging_rate, limit)


def runnable_of(state: ClusterState, ids: list[str], heads: set[str], now: float,
                order: QueueOrder = QueueOrder.PRIORITY, aging_rate: float = 0.0,
                limit: int = 2000) -> list[Job]:
    """`runnable` over a copy of the pending ids and the sequence heads taken earlier:
    safe to run outside the state lock (jobs are immutable; one that is no longer
    PENDING is skipped, and Assign re-checks everything at apply)."""
    jobs = []
    for jid in ids:
        job = state.jobs.get(jid)
        if job is None or job.state is not JobState.PENDING or job.not_before > now:
            continue
        if job.spec.sequence_key and jid not in heads:
            continue
        jobs.append(job)
    return order_jobs(jobs, now, order, aging_rate, limit)


def order_jobs(jobs: list[Job], now: float, order: QueueOrder = QueueOrder.PRIORITY,
               aging_rate: float = 0.0, limit: int = 2000) -> list[Job]:
    """The best `limit` of these jobs, in placement order."""
    if order is QueueOrder.FIFO:
        return heapq.nsmallest(limit, jobs, key=lambda j: j.seq)
    return heapq.nsmallest(limit, jobs, key=lambda j: (-effective_priority(j, now, aging_rate), j.seq))


def next_wakeup(state: ClusterState, now: float) -> float | None:
    """The earliest future retry time of a pending job, if any."""
    times = [state.jobs[j].not_before for j in state.pending if state.jobs[j].not_before > now]
    return min(times, default=None)
