"""Replicated commands. One frozen dataclass per command.

Every command carries `rid` (request id: applied at most once) and `ts` (the
leader's clock when it proposed the command): apply never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from raftsched.codec import command
from raftsched.model import JobSpec, Node


@command(1)
@dataclass(frozen=True, slots=True)
class SubmitJobs:
    rid: str
    ts: float
    jobs: tuple[tuple[str, JobSpec], ...]  # (job id made by the leader, spec)
    # Idempotency keys, one per job ("" = none) or empty. A key seen within the
    # retention window returns the existing job instead of a new one.
    keys: tuple[str, ...] = ()
    key_retention_s: float = 0.0  # 0: fsm default


@dataclass(frozen=True, slots=True)
class AssignItem:
    job_id: str
    node_id: str
    attempt: int  # the job's current attempt: compare-and-swap guard


@command(2)
@dataclass(frozen=True, slots=True)
class Assign:
    rid: str
    ts: float
    items: tuple[AssignItem, ...]


@dataclass(frozen=True, slots=True)
class StartedItem:
    job_id: str
    attempt: int
    token: int


@command(3)
@dataclass(frozen=True, slots=True)
class JobsStarted:
    rid: str
    ts: float
    items: tuple[StartedItem, ...]


@dataclass(frozen=True, slots=True)
class FinishedItem:
    job_id: str
    attempt: int
    token: int
    exit_code: int | None  # None: the process never ran or was killed
    timed_out: bool = False
    error: str = ""  # could not start, or other failure reason
    stdout_tail: str = ""
    stderr_tail: str = ""
    # When this attempt failed and the job's retry policy allows another: the
    # leader's not-before time (backoff with the leader's jitter). 0: fsm fallback.
    retry_at: float = 0.0


@command(4)
@dataclass(frozen=True, slots=True)
class JobsFinished:
    rid: str
    ts: float
    items: tuple[FinishedItem, ...]


@command(5)
@dataclass(frozen=True, slots=True)
class CancelJob:
    rid: str
    ts: float
    job_id: str


@command(6)
@dataclass(frozen=True, slots=True)
class NodeUp:
    """Register a node or refresh its description; marks it alive."""

    rid: str
    ts: float
    node: Node


@command(7)
@dataclass(frozen=True, slots=True)
class NodeDown:
    """The leader saw no heartbeat within the TTL: return the node's work to PENDING."""

    rid: str
    ts: float
    node_id: str
    reason: str


@command(20)
@dataclass(frozen=True, slots=True)
class RetryDead:
    """`dlq retry`: a DEAD job goes back to PENDING with a fresh retry budget."""

    rid: str
    ts: float
    job_id: str


@command(21)
@dataclass(frozen=True, slots=True)
class PurgeDead:
    """`dlq purge`: delete DEAD jobs (the given ones, or all when empty)."""

    rid: str
    ts: float
    job_ids: tuple[str, ...] = ()


Command = SubmitJobs | Assign | JobsStarted | JobsFinished | CancelJob | NodeUp | NodeDown | RetryDead | PurgeDead
