"""What a node reports to the leader about an attempt: started, finished (and how).
Made by the executor (subprocess jobs) and the Python task pool; sent by worker.Reporter."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ReportKind(StrEnum):
    STARTED = "STARTED"
    FINISHED = "FINISHED"


@dataclass(frozen=True, slots=True)
class Report:
    job_id: str
    attempt: int
    token: int
    kind: ReportKind
    at: float
    exit_code: int | None = None
    timed_out: bool = False
    error: str = ""
    stdout_tail: str = ""
    stderr_tail: str = ""
    lost: bool = False
    oom_killed: bool = False
    isolation: str = ""  # STARTED: mode and enforced limits
    result: str = ""  # FINISHED Python task with exit code 0: the return value as JSON
