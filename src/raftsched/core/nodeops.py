"""Commands of node operations (issue 15): drain and scheduling eligibility.

Their handlers and the leader's deadline decisions are in `core.nodes`. Tags 110-119.
"""

from __future__ import annotations

from dataclasses import dataclass

from raftsched.core.codec import command


@command(110)
@dataclass(frozen=True, slots=True)
class DrainNode:
    """No new jobs on the node from this entry on; attempts still running there at
    `deadline` (leader time = ts + the asked duration) are stopped and requeued.
    deadline <= ts (`--force`): they are stopped now."""

    rid: str
    ts: float
    node_id: str
    deadline: float
    by: str = ""
    fp: str = ""


@command(111)
@dataclass(frozen=True, slots=True)
class SetEligibility:
    """eligible=False: no new jobs on the node (running ones untouched). True: new jobs
    again, and a drain in progress ends (attempts already being stopped are requeued)."""

    rid: str
    ts: float
    node_id: str
    eligible: bool
    by: str = ""
    fp: str = ""


@command(112)
@dataclass(frozen=True, slots=True)
class DrainDeadline:
    """The leader saw the drain deadline pass: stop these attempts (job, attempt, fencing
    token) of the node, as it was at `generation`, and requeue them once stopped."""

    rid: str
    ts: float
    node_id: str
    generation: int
    attempts: tuple[tuple[str, int, int], ...]
