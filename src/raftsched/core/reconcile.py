"""Leader reconciliation decisions: pure functions returning what to propose or send.

- retry times stamped into failed attempts' reports (backoff with jitter),
- starts to re-send for ASSIGNED attempts their node has not confirmed,
- which of the attempts read earlier may still be sent to their node, and under
  which incarnation and generation (`startable`),
- on the worker: whether a start it receives is already stale in its own replica
  (`stale_start`),
- CANCELLING attempts to end because their node no longer runs them,
- schedule instants that are due (`ScheduleClock`).

The leader loop (node/leader.py) turns these into commands and gRPC calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Set

from raftsched.core import cron, retry
from raftsched.core.commands import FinishedItem, FireSchedule
from raftsched.core.evolve import replace
from raftsched.core.jobs import attempt_outcome
from raftsched.core.model import Job, JobState, Node
from raftsched.core.state import ClusterState
from raftsched.core.workflow_types import Misfire, Schedule, plan_misfires
from raftsched.core.workflows import MAX_FIRES_PER_COMMAND, schedules

# Missed instants scanned per schedule and step (a long outage of an
# every-second schedule is worked through over several steps).
MAX_SCAN = 10 * MAX_FIRES_PER_COMMAND

Reported = Mapping[str, Set[tuple[str, int]]]  # node -> (job, attempt) it last reported running


def active_jobs(state: ClusterState) -> list[Job]:
    """Jobs ASSIGNED, RUNNING or CANCELLING anywhere (caller holds the state lock)."""
    return [state.jobs[jid] for u in state.usage.values() for jid in u.jobs]


def stamp_retries(state: ClusterState, items: list[FinishedItem], now: float,
                  jitter: Callable[[], float]) -> list[FinishedItem]:
    """Put the leader's retry time (backoff with jitter) into failed attempts' reports,
    so every replica applies the same not-before time."""
    out = []
    for it in items:
        job = state.jobs.get(it.job_id)
        if (
            job is not None
            and job.attempt == it.attempt
            and job.state in (JobState.ASSIGNED, JobState.RUNNING)
            and attempt_outcome(it)[0] is not JobState.SUCCEEDED
            and retry.should_retry(job.spec.retry, job.failures + 1)
        ):
            delay = retry.backoff_delay(job.spec.retry, job.failures + 1, jitter())
            it = replace(it, retry_at=now + delay)
        out.append(it)
    return out


def unconfirmed_starts(state: ClusterState, reported: Reported, now: float,
                       resend_after: float) -> list[Job]:
    """ASSIGNED attempts their node has not confirmed for `resend_after` seconds:
    send their starts again (starts are idempotent on the worker)."""
    return [
        j for j in active_jobs(state)
        if j.state is JobState.ASSIGNED and not j.evict_requested_at
        and now - j.assigned_at > resend_after
        and (j.id, j.attempt) not in reported.get(j.node_id, ())
    ]


def startable(state: ClusterState, node_id: str, jobs: Iterable[Job]) -> tuple[Node | None, list[Job]]:
    """The node to send starts to, as the state has it now, and those of `jobs` (records
    read earlier) still ASSIGNED there at the same attempt and fencing token; (None, [])
    if the node is unknown or down. Caller holds the state lock.

    The worker fences a start by the incarnation and generation the request names. Every
    command that moves a node's generation (NodeDown, NodeUp of a restarted or returning
    node) returns its live attempts to PENDING in the same apply, and Assign refuses a
    down node: so an attempt still ASSIGNED to the node now was assigned in the node's
    current generation, and the request names the generation its attempts belong to.
    A record read before such a command (a job dispatched after its Assign, re-sent, or
    re-sent by a new leader) may name an attempt lost since: sent under the new
    generation, the restarted node would run it beside the attempt that replaces it."""
    node = state.nodes.get(node_id)
    if node is None or not node.alive:
        return None, []
    out = []
    for j in jobs:
        cur = state.jobs.get(j.id)
        if (cur is not None and cur.state is JobState.ASSIGNED and cur.node_id == node_id
                and not cur.evict_requested_at and (cur.attempt, cur.fencing_token) == (j.attempt, j.fencing_token)):
            out.append(cur)
    return node, out


def stale_start(state: ClusterState, node_id: str, job_id: str, attempt: int, token: int) -> str:
    """Why a start received by a node is stale as far as the node's own replica (a prefix
    of the leader's log) already knows, or "" if it may be current. Attempts only grow
    (Assign makes attempt+1) and an attempt that left ASSIGNED/RUNNING never returns, so
    an attempt this replica has seen end or superseded cannot be current at the leader.
    A replica that has not applied the job or its Assign yet cannot tell: "" then."""
    job = state.jobs.get(job_id)
    if job is None or job.attempt < attempt:
        return ""
    if job.attempt > attempt:
        return f"attempt {job.attempt} of the job exists"
    if job.fencing_token != token:
        return f"attempt {attempt} has token {job.fencing_token}, not {token}"
    if job.state not in (JobState.ASSIGNED, JobState.RUNNING):
        return f"attempt {attempt} is over: the job is {job.state.value}"
    if job.node_id != node_id:
        return f"attempt {attempt} is assigned to {job.node_id}"
    if job.evict_requested_at:
        return f"attempt {attempt} is being stopped: node {node_id} is drained"
    return ""


def cancelled_gone(state: ClusterState, reported: Reported, heard_at: Mapping[str, float],
                   slack: float) -> list[FinishedItem]:
    """End CANCELLING attempts their node no longer runs. The normal path is the
    worker's FINISHED report after the kill; this covers an attempt that never started
    there (start lost): once a heartbeat sent well after the cancel (wall time
    `heard_at[node]`) does not list it, it is over."""
    return [
        FinishedItem(j.id, j.attempt, j.fencing_token, None,
                     error="not running on its node when cancelled")
        for j in active_jobs(state)
        if j.state is JobState.CANCELLING
        and heard_at.get(j.node_id, 0.0) > j.cancel_requested_at + slack
        and (j.id, j.attempt) not in reported.get(j.node_id, ())
    ]


def active_schedules(state: ClusterState) -> list[Schedule]:
    """Schedules not paused (caller holds the state lock; schedules are immutable)."""
    return [s for s in schedules(state).values() if not s.paused]


class ScheduleClock:
    """Due instants of cron schedules. Holds only a cache of each schedule's next
    instant (computed from its replicated `last_fired`), so its answers depend on
    (state, now) alone."""

    def __init__(self) -> None:
        self._next: dict[str, tuple[float, float | None]] = {}
        self.unevaluable: dict[str, str] = {}  # schedule id -> cron error, first seen

    def _next_instant(self, s: Schedule) -> float | None:
        cached = self._next.get(s.id)
        if cached is not None and cached[0] == s.last_fired:
            return cached[1]
        try:
            got = cron.fires(cron.parse(s.cron), cron.zone(s.timezone), s.last_fired, 1,
                             start=s.start, end=s.end)
        except cron.CronError as e:
            self.unevaluable.setdefault(s.id, str(e))
            got = []
        nxt = got[0] if got else None
        self._next[s.id] = (s.last_fired, nxt)
        return nxt

    def due(self, s: Schedule, now: float) -> tuple[list[float], float, int] | None:
        """(instants to fire, through, instants dropped) if something is due, else None."""
        nxt = self._next_instant(s)
        if nxt is None or nxt > now:
            return None
        c, tz = cron.parse(s.cron), cron.zone(s.timezone)
        after = s.last_fired
        lookback = s.misfire_threshold_s if s.misfire is Misfire.SKIP else s.misfire_deadline_s
        horizon = now - lookback
        if nxt < horizon:
            after = max(after, horizon)  # older instants are dropped by every policy
        due = cron.fires(c, tz, after, MAX_SCAN, until=now, start=s.start, end=s.end)
        if not due:
            # everything due was older than the horizon: mark it done, fire nothing
            return [], horizon, 0
        fire = plan_misfires(due, now, s.misfire, s.misfire_threshold_s, s.misfire_deadline_s)
        kept = fire[-MAX_FIRES_PER_COMMAND:]
        return kept, due[-1], len(due) - len(kept)

    def fires(self, active: list[Schedule], now: float) -> list[FireSchedule]:
        """One FireSchedule per schedule in `active` with something due. The request id
        is derived from (schedule, through): a retry of the same proposal is deduplicated,
        and the state machine refuses instants <= last_fired (at most once)."""
        live = {s.id for s in active}
        for sid in [sid for sid in self._next if sid not in live]:
            del self._next[sid]
        out = []
        for s in active:
            got = self.due(s, now)
            if got is None:
                continue
            fire, through, dropped = got
            if through > s.last_fired:
                out.append(FireSchedule(f"fire:{s.id}:{through!r}", now, s.id, tuple(fire), through,
                                        skipped=dropped))
        return out
