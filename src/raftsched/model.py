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


TERMINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.UPSTREAM_FAILED}
)
ACTIVE_STATES = frozenset({JobState.ASSIGNED, JobState.RUNNING})

# The strict job state machine: every transition the fsm may make.
# ASSIGNED -> SUCCEEDED/FAILED covers a "finished" report that also implies "started".
# ASSIGNED/RUNNING -> PENDING is the return of work from a node that went down.
ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.ASSIGNED, JobState.CANCELLED}),
    JobState.ASSIGNED: frozenset(
        {JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.PENDING}
    ),
    JobState.RUNNING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.PENDING}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    # -- workflows (issue 5) --
    JobState.WAITING: frozenset({JobState.PENDING, JobState.UPSTREAM_FAILED, JobState.CANCELLED}),
    JobState.UPSTREAM_FAILED: frozenset(),
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


@dataclass(slots=True)
class NodeUsage:
    """Derived bookkeeping: requests of the active jobs placed on a node."""

    cpu_millis: int = 0
    memory_mib: int = 0
    jobs: set[str] = field(default_factory=set)

    def as_resources(self) -> Resources:
        return Resources(self.cpu_millis, self.memory_mib)
