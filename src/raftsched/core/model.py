"""Plain data of the scheduler: jobs, nodes, resources. Pure: no I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class JobState(StrEnum):
    PENDING = "PENDING"
    ASSIGNED = "ASSIGNED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    # -- workflows (issue 5) --
    WAITING = "WAITING"  # blocked on workflow dependencies; not in the placement queue
    UPSTREAM_FAILED = "UPSTREAM_FAILED"  # terminal: an ancestor ended without success
    # -- retries and cancel (issue 4) --
    TIMED_OUT = "TIMED_OUT"  # final attempt hit its timeout (no retry policy)
    DEAD = "DEAD"  # retry policy exhausted: dead-lettered, see `raftsched dlq`
    CANCELLING = "CANCELLING"  # cancel asked while running: the node is killing it


TERMINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT, JobState.DEAD,
     JobState.UPSTREAM_FAILED}
)
# Active states hold capacity on their node. CANCELLING keeps it until the
# worker reports the process gone (or the node is declared down).
ACTIVE_STATES = frozenset({JobState.ASSIGNED, JobState.RUNNING, JobState.CANCELLING})

_ENDS = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.DEAD})

# The strict job state machine: every transition the fsm may make.
# ASSIGNED -> SUCCEEDED/FAILED covers a "finished" report that also implies "started".
# ASSIGNED/RUNNING -> PENDING is the return of work from a node that went down, or a
# failed attempt that will be retried (with a not-before time).
# DEAD -> PENDING is only `dlq retry` (explicit, fresh budget).
ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.ASSIGNED, JobState.CANCELLED}),
    JobState.ASSIGNED: _ENDS | {JobState.RUNNING, JobState.PENDING, JobState.CANCELLING},
    JobState.RUNNING: _ENDS | {JobState.PENDING, JobState.CANCELLING},
    JobState.CANCELLING: frozenset({JobState.CANCELLED, JobState.SUCCEEDED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    # -- workflows (issue 5) --
    JobState.WAITING: frozenset({JobState.PENDING, JobState.UPSTREAM_FAILED, JobState.CANCELLED}),
    JobState.UPSTREAM_FAILED: frozenset(),
    JobState.TIMED_OUT: frozenset(),
    JobState.DEAD: frozenset({JobState.PENDING}),
}


def transition_error(current: JobState, target: JobState) -> str | None:
    """None if current -> target is legal, else a reason naming both states."""
    if target in ALLOWED_TRANSITIONS[current]:
        return None
    if current in TERMINAL_STATES:
        return f"job is already {current.value} (terminal); it cannot become {target.value}"
    return f"illegal transition {current.value} -> {target.value}"


@dataclass(frozen=True, slots=True)
class Resources:
    cpu_millis: int = 0
    memory_mib: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu_millis + other.cpu_millis, self.memory_mib + other.memory_mib)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu_millis - other.cpu_millis, self.memory_mib - other.memory_mib)


DEFAULT_REQUEST = Resources(cpu_millis=100, memory_mib=64)
DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True, slots=True)
class ResourceLimits:
    """Hard limits of a job's processes, enforced by the node's cgroups (issue 16).

    0 means the default: memory and CPU default to the request (a job may not
    burst above what it asked for unless given a higher limit); pids defaults to
    the node's `pids_limit`. See docs/isolation.md.
    """

    memory_mib: int = 0
    cpu_millis: int = 0
    pids: int = 0

    def describe(self) -> str:
        def one(v: int, unit: str) -> str:
            return f"{v}{unit}" if v else "unlimited"

        return (f"memory {one(self.memory_mib, ' MiB')}, cpu {one(self.cpu_millis, 'm')}, "
                f"pids {one(self.pids, '')}")


OOM_KILLED = "OOM_KILLED"  # reason prefix and attempt outcome of a job the OOM killer stopped


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failed attempt is retried, and after what delay.

    `max_attempts` 0 means no policy: one attempt, ending FAILED or TIMED_OUT.
    With a policy, attempt n+1 waits min(max_delay_s, initial_delay_s *
    multiplier**(n-1)) scaled by a random factor in [1-jitter, 1+jitter]; after
    `max_attempts` failed attempts the job is DEAD. Lost nodes do not count.
    """

    max_attempts: int = 0
    initial_delay_s: float = 1.0
    multiplier: float = 2.0
    max_delay_s: float = 300.0
    jitter: float = 0.0


CONSTRAINT_OPS = ("eq", "ne", "in", "not_in", "exists", "not_exists")


@dataclass(frozen=True, slots=True)
class Constraint:
    """A condition on a node label. `in`/`not_in` take comma-separated values."""

    key: str
    op: str = "eq"
    value: str = ""

    def describe(self) -> str:
        sym = {"eq": "=", "ne": "!=", "in": " in ", "not_in": " not in "}.get(self.op)
        if sym is not None:
            return f"{self.key}{sym}{self.value}"
        return f"{'!' if self.op == 'not_exists' else ''}{self.key}"


@dataclass(frozen=True, slots=True)
class PythonCall:
    """A Python task (issue 14): `target` is "package.module:function"; args and
    kwargs are JSON text (a list and an object). Empty target: not a Python task."""

    target: str = ""
    args_json: str = ""
    kwargs_json: str = ""


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What to run. `command` is an argv list; `shell` is used only with use_shell."""

    command: tuple[str, ...] = ()
    shell: str = ""
    use_shell: bool = False
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str = ""
    resources: Resources = DEFAULT_REQUEST
    priority: int = 0
    timeout_s: float = 0.0
    name: str = ""
    retry: RetryPolicy = RetryPolicy()
    constraints: tuple[Constraint, ...] = ()
    sequence_key: str = ""  # jobs with the same key run one at a time, in submission order
    limits: ResourceLimits = ResourceLimits()  # enforced limits (issue 16); 0 = from the request
    # The node pool the job asks for: it runs only on nodes labelled pool=<it>, and it
    # may use nodes dedicated to that pool (see `constraints.pool_refusal`).
    pool: str = ""
    namespace: str = DEFAULT_NAMESPACE  # the tenant the job belongs to (ACLs and quotas)
    run_as: str = ""  # user of the node the job runs as ("" = the node's own); see core.runas
    python: PythonCall = PythonCall()  # a Python task instead of a command (issue 14)

    def argv(self) -> list[str]:
        if self.use_shell:
            return ["/bin/sh", "-c", self.shell]
        return list(self.command)


@dataclass(frozen=True, slots=True)
class Transition:
    """One step of a job's life, kept in its history."""

    ts: float
    state: JobState
    node_id: str = ""
    attempt: int = 0
    token: int = 0
    reason: str = ""


HISTORY_LIMIT = 64
ATTEMPTS_LIMIT = 32


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """How one attempt ended. outcome: SUCCEEDED, FAILED, OOM_KILLED, TIMED_OUT, CANCELLED, LOST."""

    attempt: int
    node_id: str
    token: int
    assigned_at: float
    finished_at: float
    outcome: str
    started_at: float = 0.0
    exit_code: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    spec: JobSpec
    seq: int
    submitted_at: float
    state: JobState = JobState.PENDING
    attempt: int = 0
    node_id: str = ""
    fencing_token: int = 0
    assigned_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int | None = None
    reason: str = ""
    stdout_tail: str = ""
    stderr_tail: str = ""
    history: tuple[Transition, ...] = ()
    # -- workflows and schedules (issue 5) --
    workflow_id: str = ""  # the workflow this job belongs to
    depends_on: tuple[str, ...] = ()  # job ids that must all succeed first
    schedule_id: str = ""  # the schedule whose run this is
    scheduled_at: float = 0.0  # the scheduled instant of that run (epoch seconds)
    not_before: float = 0.0  # leader time before which a retry is not placed
    failures: int = 0  # failed attempts counted against the retry budget
    attempts: tuple[AttemptRecord, ...] = ()  # ended attempts, oldest first (bounded)
    cancel_requested_at: float = 0.0
    submitted_by: str = ""  # name of the token that submitted the job ("" without ACLs)
    cancelled_by: str = ""  # name of the token that asked to cancel it
    result: str = ""  # Python task: the succeeded attempt's return value, JSON (issue 14)
    # Leader time at which its node's drain deadline asked to stop this attempt (issue 15):
    # it is killed there and requeued without using the retry budget (core.nodes).
    evict_requested_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    grpc_address: str
    raft_address: str
    capacity: Resources
    labels: tuple[tuple[str, str], ...] = ()
    alive: bool = True
    since: float = 0.0  # leader time of the last up/down change
    incarnation: str = ""  # random id of the node process; changes when it restarts
    generation: int = 0  # bumped when the node goes down or comes back: fences late starts
    # Dedicated to this pool (its `pool` label): only jobs asking for it are placed here.
    dedicated: str = ""
    # Scheduling eligibility (issue 15, core.nodes): an ineligible node gets no new jobs.
    eligible: bool = True
    # Draining when > 0: leader time at which attempts still running here are stopped and
    # requeued. A drain also makes the node ineligible; `eligibility --enable` ends it.
    drain_deadline: float = 0.0
    # Runtime changes by an operator (issue 15, core.nodeupdate): labels set and removed,
    # capacity (0 = the node's own). They win over what the node registers with.
    label_overrides: tuple[tuple[str, str], ...] = ()
    labels_removed: tuple[str, ...] = ()
    cpu_override: int = 0
    memory_override: int = 0


@dataclass(slots=True)
class NodeUsage:
    """Derived bookkeeping: requests of the active jobs placed on a node."""

    cpu_millis: int = 0
    memory_mib: int = 0
    jobs: set[str] = field(default_factory=set)

    def as_resources(self) -> Resources:
        return Resources(self.cpu_millis, self.memory_mib)
