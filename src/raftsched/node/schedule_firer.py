"""Leader-side firing of schedules: one step of the leader loop.

Each tick, for every active schedule, the leader computes the instants due
since the schedule's replicated `last_fired` (bounded by the misfire
deadline), lets the misfire policy pick which to run, and proposes one
FireSchedule(schedule, fire=[...], through=latest due instant). The state
machine refuses instants <= last_fired and moves last_fired to `through`, so an
instant is fired at most once, also when a new leader takes over after a crash
with a proposal in flight. The request id is derived from (schedule, through):
a retry of the same proposal is deduplicated too.
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING

import structlog

from raftsched.core import cron
from raftsched.core.commands import FireSchedule
from raftsched.core.workflow_types import Misfire, Schedule, plan_misfires
from raftsched.core.workflows import MAX_FIRES_PER_COMMAND, schedules

if TYPE_CHECKING:
    from raftsched.node.runtime import NodeRuntime

log = structlog.get_logger("raftsched.schedules")

# Missed instants scanned per schedule and step (a long outage of an
# every-second schedule is worked through over several steps).
MAX_SCAN = 10 * MAX_FIRES_PER_COMMAND


class Firer:
    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt
        # schedule id -> (last_fired it was computed from, next instant or None)
        self._next: dict[str, tuple[float, float | None]] = {}
        self._bad: set[str] = set()

    def _next_instant(self, s: Schedule) -> float | None:
        cached = self._next.get(s.id)
        if cached is not None and cached[0] == s.last_fired:
            return cached[1]
        try:
            got = cron.fires(cron.parse(s.cron), cron.zone(s.timezone), s.last_fired, 1,
                             start=s.start, end=s.end)
        except cron.CronError as e:
            if s.id not in self._bad:
                self._bad.add(s.id)
                log.error("schedule cannot be evaluated", schedule=s.id, error=str(e))
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

    async def step(self) -> None:
        st = self.rt.sm.state
        with self.rt.sm.lock:
            active = [s for s in schedules(st).values() if not s.paused]
        live = {s.id for s in active}
        for sid in list(self._next):
            if sid not in live:
                del self._next[sid]
        now = time.time()
        for s in active:
            got = self.due(s, now)
            if got is None:
                continue
            fire, through, dropped = got
            if through <= s.last_fired:
                continue
            cmd = FireSchedule(f"fire:{s.id}:{through!r}", now, s.id, tuple(fire), through,
                               skipped=dropped)
            res = await self.rt.propose(cmd)  # type: ignore[arg-type]  # issue-5 commands are not in the core Command union
            if res.ok:
                created, refused = res.value
                log.info("schedule fired", schedule=s.id, jobs=list(created), refused=refused,
                         through=through)
            else:
                log.info("schedule fire refused", schedule=s.id, message=res.message)


_firers: weakref.WeakKeyDictionary[NodeRuntime, Firer] = weakref.WeakKeyDictionary()


async def fire_schedules(rt: NodeRuntime) -> None:
    """One leader-loop step: fire every schedule that is due."""
    f = _firers.get(rt)
    if f is None:
        f = _firers[rt] = Firer(rt)
    await f.step()
