"""Templates, schedules and workflows: plain data (their commands are in `commands`).

Pure: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from raftsched.core.model import JobSpec


class Misfire(StrEnum):
    """What to do with instants missed while no leader could fire them."""

    SKIP = "skip"  # drop every missed instant
    RUN_ONCE = "run_once"  # run the latest missed instant (within the deadline) once
    RUN_ALL = "run_all"  # run every missed instant within the deadline, oldest first


class Concurrency(StrEnum):
    """What to do when an instant is due while the previous run has not finished."""

    ALLOW = "allow"  # start another run
    FORBID = "forbid"  # skip this instant
    REPLACE = "replace"  # cancel the previous run if it has not started, else like forbid


@dataclass(frozen=True, slots=True)
class Template:
    """A named job spec (and an optional default schedule for `cron add --template`)."""

    name: str
    spec: JobSpec
    cron: str = ""
    timezone: str = ""
    description: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    version: int = 0


@dataclass(frozen=True, slots=True)
class Schedule:
    id: str
    cron: str
    spec: JobSpec
    timezone: str = "UTC"
    template: str = ""  # name of the template the spec was copied from, if any
    start: float | None = None  # no fire before this instant
    end: float | None = None  # no fire after this instant
    misfire: Misfire = Misfire.SKIP
    misfire_threshold_s: float = 1.0  # later than this, an instant counts as missed
    misfire_deadline_s: float = 3600.0  # run_once/run_all: older missed instants are dropped
    concurrency: Concurrency = Concurrency.ALLOW
    paused: bool = False
    created_at: float = 0.0
    # the latest scheduled instant fired or deliberately skipped: an instant <= it
    # is never fired again (also across failover: this is replicated state)
    last_fired: float = 0.0
    last_job_id: str = ""
    runs: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class Workflow:
    id: str
    name: str
    job_ids: tuple[str, ...]  # in a topological order
    submitted_at: float
    cancelled: bool = False


def run_job_id(schedule_id: str, instant: float) -> str:
    """The job id of a schedule's run for one scheduled instant."""
    return f"{schedule_id}-{int(instant)}"


def workflow_job_id(workflow_id: str, name: str) -> str:
    return f"{workflow_id}-{name}"


def plan_misfires(due: list[float], now: float, misfire: Misfire, threshold: float,
                  deadline: float) -> list[float]:
    """Which of the due instants (sorted) to fire at `now`, by the misfire policy.

    An instant at most `threshold` seconds late is on time and always fires.
    Later ones were missed: skip drops them, run_once fires the latest one no
    older than `deadline`, run_all fires every one no older than `deadline`.
    """
    on_time = [t for t in due if now - t <= threshold]
    late = [t for t in due if now - t > threshold and now - t <= deadline]
    if misfire is Misfire.SKIP:
        return on_time
    if misfire is Misfire.RUN_ONCE:
        return late[-1:] + on_time
    return late + on_time
