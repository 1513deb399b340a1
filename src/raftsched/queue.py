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

from raftsched.fsm import ClusterState
from raftsched.model import ACTIVE_STATES, Job


class QueueOrder(StrEnum):
    PRIORITY = "priority"
    FIFO = "fifo"


def effective_priority(job: Job, now: float, aging_rate: float) -> float:
    waited = max(0.0, now - max(job.submitted_at, job.not_before))
    return job.spec.priority + aging_rate * waited


def sequence_heads(state: ClusterState) -> set[str]:
    """Per sequence key, the oldest non-terminal job if no job of the key is active."""
    heads: set[str] = set()
    for members in state.sequences.values():
        if any(state.jobs[j].state in ACTIVE_STATES for j in members):
            continue
        heads.add(min(members.items(), key=lambda kv: kv[1])[0])
    return heads


def runnable(
    state: ClusterState,
    now: float,
    order: QueueOrder = QueueOrder.PRIORITY,
    aging_rate: float = 0.0,
    limit: int = 2000,
) -> list[Job]:
    """Up to `limit` pending jobs that may be placed now, best first."""
    heads = sequence_heads(state) if state.sequences else set()
    jobs = []
    for jid in state.pending:
        job = state.jobs[jid]
        if job.not_before > now:
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
