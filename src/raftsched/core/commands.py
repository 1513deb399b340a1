"""Replicated commands. One frozen dataclass per command.

Every command carries `rid` (request id: applied at most once) and `ts` (the
leader's clock when it proposed the command): apply never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raftsched.core import codec
from raftsched.core.codec import command
from raftsched.core.members import AddMember, RemoveMember
from raftsched.core.model import JobSpec, Node
from raftsched.core.nodeops import DrainDeadline, DrainNode, SetEligibility
from raftsched.core.runas import SetRunAs
from raftsched.core.runtimeops import SetSetting, UpdateNode
from raftsched.core.workflow_types import Schedule, Template


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
    by: str = ""  # name of the submitting token
    fp: str = ""  # fingerprint of the client request (a request id reused differently is refused)


def _submit_to_wire(c: SubmitJobs) -> dict[str, Any]:
    # A batch usually repeats a few specs: each distinct spec is encoded once.
    index: dict[JobSpec, int] = {}
    refs = []
    for jid, spec in c.jobs:
        i = index.get(spec)
        if i is None:
            i = index[spec] = len(index)
        refs.append([jid, i])
    w: dict[str, Any] = {"rid": c.rid, "ts": c.ts, "specs": [codec.to_wire(s) for s in index], "jobs": refs}
    if c.keys:
        w["keys"] = list(c.keys)
    if c.key_retention_s:
        w["key_retention_s"] = c.key_retention_s
    for name in ("by", "fp"):
        if getattr(c, name):
            w[name] = getattr(c, name)
    return w


def _submit_from_wire(w: dict[str, Any]) -> SubmitJobs:
    if "specs" in w:
        specs = [codec.from_wire(JobSpec, s) for s in w["specs"]]
        jobs = tuple((jid, specs[i]) for jid, i in w["jobs"])
    else:  # the first format: every spec inline
        jobs = tuple((jid, codec.from_wire(JobSpec, s)) for jid, s in w["jobs"])
    return SubmitJobs(w["rid"], float(w["ts"]), jobs,
                      keys=tuple(w.get("keys", ())), key_retention_s=float(w.get("key_retention_s", 0.0)),
                      by=w.get("by", ""), fp=w.get("fp", ""))


codec.custom(SubmitJobs, _submit_to_wire, _submit_from_wire)


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
    isolation: str = ""  # the node's isolation mode and this attempt's limits (history)


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
    lost: bool = False  # killed because the node's lease expired: requeue, not a failure
    # When this attempt failed and the job's retry policy allows another: the
    # leader's not-before time (backoff with the leader's jitter). 0: fsm fallback.
    retry_at: float = 0.0
    oom_killed: bool = False  # the kernel's OOM killer stopped a process of the attempt
    result: str = ""  # Python task, exit code 0: the return value as JSON (issue 14)


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
    by: str = ""
    fp: str = ""


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


@command(8)
@dataclass(frozen=True, slots=True)
class GcJobs:
    """Forget terminal jobs that finished before `cutoff` (leader time - retention)."""

    rid: str
    ts: float
    cutoff: float



# ---- large submissions, staged in bounded parts (core.batches) ---------------------------


@command(9)
@dataclass(frozen=True, slots=True)
class StageJobs:
    """Part `part` of `parts` of a large submission: stored aside, not yet visible."""

    rid: str
    ts: float
    batch: str  # the submission's request id
    part: int
    parts: int
    sub: SubmitJobs  # this part's (job id, spec) pairs and idempotency keys


@command(10)
@dataclass(frozen=True, slots=True)
class CommitJobs:
    """All parts staged: accept the whole submission or refuse it whole."""

    rid: str
    ts: float
    batch: str
    parts: int
    key_retention_s: float = 0.0


@command(11)
@dataclass(frozen=True, slots=True)
class PublishJobs:
    """Create the jobs of one part of a committed submission."""

    rid: str
    ts: float
    batch: str
    part: int


@command(12)
@dataclass(frozen=True, slots=True)
class AbortJobs:
    """Drop an uncommitted submission (its client gave up)."""

    rid: str
    ts: float
    batch: str


@command(20)
@dataclass(frozen=True, slots=True)
class RetryDead:
    """`dlq retry`: a DEAD job goes back to PENDING with a fresh retry budget."""

    rid: str
    ts: float
    job_id: str
    fp: str = ""


@command(21)
@dataclass(frozen=True, slots=True)
class PurgeDead:
    """`dlq purge`: delete DEAD jobs (the given ones, or all when empty)."""

    rid: str
    ts: float
    job_ids: tuple[str, ...] = ()
    fp: str = ""


# ---- templates, schedules, workflows (tags 40-59) ----------------------------------------


@command(40)
@dataclass(frozen=True, slots=True)
class PutTemplate:
    rid: str
    ts: float
    template: Template
    mode: str = "create"  # create (must not exist) | update (must exist)
    fp: str = ""


@command(41)
@dataclass(frozen=True, slots=True)
class DeleteTemplate:
    rid: str
    ts: float
    name: str
    fp: str = ""


@command(42)
@dataclass(frozen=True, slots=True)
class AddSchedule:
    rid: str
    ts: float
    schedule: Schedule
    fp: str = ""


@command(43)
@dataclass(frozen=True, slots=True)
class SetSchedulePaused:
    rid: str
    ts: float
    schedule_id: str
    paused: bool
    fp: str = ""


@command(44)
@dataclass(frozen=True, slots=True)
class DeleteSchedule:
    rid: str
    ts: float
    schedule_id: str
    fp: str = ""


@command(45)
@dataclass(frozen=True, slots=True)
class FireSchedule:
    """Fire `fire` (sorted instants) and mark every instant <= `through` as done."""

    rid: str
    ts: float
    schedule_id: str
    fire: tuple[float, ...]
    through: float
    skipped: int = 0  # due instants the misfire policy dropped


@command(46)
@dataclass(frozen=True, slots=True)
class RunScheduleNow:
    rid: str
    ts: float
    schedule_id: str
    job_id: str
    fp: str = ""


@dataclass(frozen=True, slots=True)
class WorkflowJob:
    job_id: str
    spec: JobSpec
    depends_on: tuple[str, ...] = ()  # job ids of this workflow


@command(47)
@dataclass(frozen=True, slots=True)
class SubmitWorkflow:
    rid: str
    ts: float
    workflow_id: str
    name: str
    jobs: tuple[WorkflowJob, ...]
    fp: str = ""


@command(48)
@dataclass(frozen=True, slots=True)
class CancelWorkflow:
    rid: str
    ts: float
    workflow_id: str
    fp: str = ""


# ---- access control (tags 80-99) ----------------------------------------------------


@command(80)
@dataclass(frozen=True, slots=True)
class AclBootstrap:
    """The first management token (admin of every namespace); refused once bootstrapped."""

    rid: str
    ts: float
    name: str
    secret_hash: str  # sha256 hex of the token: the secret itself is never replicated
    fp: str = ""


@command(81)
@dataclass(frozen=True, slots=True)
class CreateToken:
    rid: str
    ts: float
    name: str
    secret_hash: str
    role: str
    namespaces: tuple[str, ...]
    by: str = ""
    fp: str = ""


@command(82)
@dataclass(frozen=True, slots=True)
class RevokeToken:
    rid: str
    ts: float
    name: str
    by: str = ""
    fp: str = ""


@command(83)
@dataclass(frozen=True, slots=True)
class SetQuota:
    """Limits of one namespace (0 = unlimited)."""

    rid: str
    ts: float
    namespace: str
    max_cpu_millis: int = 0
    max_memory_mib: int = 0
    max_pending: int = 0
    by: str = ""
    fp: str = ""


Command = (
    SubmitJobs | StageJobs | CommitJobs | PublishJobs | AbortJobs
    | Assign | JobsStarted | JobsFinished | CancelJob | NodeUp | NodeDown | GcJobs | RetryDead | PurgeDead
    | PutTemplate | DeleteTemplate | AddSchedule | SetSchedulePaused | DeleteSchedule | FireSchedule
    | RunScheduleNow | SubmitWorkflow | CancelWorkflow | AclBootstrap | CreateToken | RevokeToken
    | SetQuota | SetRunAs | DrainNode | SetEligibility | DrainDeadline | SetSetting | UpdateNode
    | AddMember | RemoveMember
)
