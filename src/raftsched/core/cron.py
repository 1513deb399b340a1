"""Cron arithmetic: next fire times of a schedule. Pure: no clock, no I/O.

Expressions (parsed by croniter):
  * five fields `minute hour day-of-month month day-of-week`;
  * six fields `second minute hour day-of-month month day-of-week` (seconds FIRST,
    as in Quartz/Spring);
  * aliases `@yearly @annually @monthly @weekly @daily @midnight @hourly`.

Every schedule has an IANA timezone (zoneinfo). The expression is matched
against the wall clock of that zone, and each matching wall time becomes one
instant (epoch seconds). Daylight-saving rules, one defined way each:

  * spring forward (a gap: wall times that never happen, e.g. 02:00-02:59 in
    Europe/Berlin on the last Sunday of March): every matching wall time in the
    gap fires ONCE, at the first valid instant after the gap (the transition
    instant itself, 03:00 local in Berlin). Several matches in one gap, or a
    gap match plus a match at the gap's end, still give one fire.
  * fall back (a repeat: wall times that happen twice): a matching wall time
    fires ONCE, at its FIRST occurrence (the one before the clocks go back).
    The second pass through the repeated wall times fires nothing, so an
    every-15-minutes schedule has a one-hour hole in absolute time there.

Time is always an explicit argument (`after`), never read from a clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadDateError, CroniterError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_EXPR_LEN = 256
# Searching further than this for the next match means "never" (croniter's own
# limit is in years between matches; 29 February fires every 4-8 years).
MAX_YEARS = 10


class CronError(ValueError):
    """A cron expression, timezone or date range that cannot be used."""


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed expression: normalised croniter text and whether it has seconds."""

    text: str  # as given by the user
    fields: str  # normalised, aliases expanded
    seconds: bool


def parse(expr: str) -> Cron:
    """Parse and validate an expression; raises CronError naming the problem."""
    text = expr.strip()
    if not text:
        raise CronError("cron expression is empty: give five fields 'min hour dom month dow', "
                        "six with a leading seconds field, or an alias like @hourly")
    if len(text) > MAX_EXPR_LEN:
        raise CronError(f"cron expression is longer than {MAX_EXPR_LEN} characters")
    if text.startswith("@"):
        fields = ALIASES.get(text.lower())
        if fields is None:
            raise CronError(f"unknown cron alias {text!r}; known: {', '.join(sorted(ALIASES))}")
        return Cron(text, fields, False)
    parts = text.split()
    if len(parts) not in (5, 6):
        raise CronError(
            f"cron expression {text!r} has {len(parts)} fields; need 5 "
            "('min hour dom month dow') or 6 ('sec min hour dom month dow')"
        )
    fields = " ".join(parts)
    seconds = len(parts) == 6
    try:
        ok = croniter.is_valid(fields, second_at_beginning=seconds)
    except Exception:  # pragma: no cover - croniter raising instead of False
        ok = False
    if not ok:
        names = ["second"] if seconds else []
        names += ["minute", "hour", "day-of-month", "month", "day-of-week"]
        bad = _first_bad_field(parts, names, seconds)
        raise CronError(f"cron expression {text!r} is malformed{bad}")
    return Cron(text, fields, seconds)


def _first_bad_field(parts: list[str], names: list[str], seconds: bool) -> str:
    for i, (p, n) in enumerate(zip(parts, names, strict=True)):
        probe = ["*"] * len(parts)
        probe[i] = p
        try:
            if not croniter.is_valid(" ".join(probe), second_at_beginning=seconds):
                return f": field {i + 1} ({n}) {p!r} is not valid"
        except Exception:
            return f": field {i + 1} ({n}) {p!r} is not valid"
    return ""


def zone(name: str) -> ZoneInfo:
    if not name:
        raise CronError("timezone is empty: give an IANA name such as UTC or Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(f"unknown timezone {name!r}: give an IANA name such as UTC, "
                        "Europe/Berlin or America/New_York") from None


# ---- wall clock <-> instants ------------------------------------------------------


def _first_true(lo: int, hi: int, pred: Callable[[int], bool]) -> int:
    """Smallest integer t in (lo, hi] with pred(t), given pred(hi) and monotone pred."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _offset(t: float, tz: ZoneInfo) -> timedelta:
    off = datetime.fromtimestamp(t, tz).utcoffset()
    assert off is not None
    return off


def wall_to_instant(wall: datetime, tz: ZoneInfo) -> float:
    """The instant a naive local wall time fires at (see the module doc for DST)."""
    first = wall.replace(tzinfo=tz, fold=0)
    t0 = first.timestamp()
    back = datetime.fromtimestamp(t0, tz).replace(tzinfo=None)
    if back == wall:
        # A real wall time; for a repeated one fold=0 is its first occurrence.
        return t0
    # In a gap: fold=0 uses the offset before the transition (instant after the
    # gap), fold=1 the one after it (instant before the gap). The transition
    # lies between: the first instant carrying the later offset.
    t1 = wall.replace(tzinfo=tz, fold=1).timestamp()
    lo, hi = (int(min(t0, t1)) - 1, int(max(t0, t1)) + 1)
    after_off = _offset(hi, tz)
    return float(_first_true(lo, hi, lambda t: _offset(t, tz) == after_off))


def next_fire(cron: Cron, tz: ZoneInfo, after: float) -> float | None:
    """First fire instant strictly after `after`, or None if there is none in MAX_YEARS."""
    local = datetime.fromtimestamp(after, tz)
    start = local.replace(tzinfo=None, microsecond=0)
    if local.fold == 1:
        # `after` is in the second pass of a repeated hour: every wall time up to
        # the end of the repeat fired in the first pass. Start at the repeat's end.
        end = _first_true(int(after), int(after) + 2 * 86400,
                          lambda t: datetime.fromtimestamp(t, tz).fold == 0)
        start = datetime.fromtimestamp(end, tz).replace(tzinfo=None) - timedelta(seconds=1)
    limit = after + MAX_YEARS * 366 * 86400
    it = croniter(cron.fields, start, second_at_beginning=cron.seconds,
                  max_years_between_matches=MAX_YEARS)
    while True:
        try:
            wall: datetime = it.get_next(datetime)
        except (CroniterBadDateError, CroniterError, OverflowError, ValueError):
            return None
        t = wall_to_instant(wall, tz)
        if t > after:
            return t
        if t > limit:
            return None
        # A gap wall mapped to a transition already passed: skip the rest of the gap.
        tw = datetime.fromtimestamp(t, tz).replace(tzinfo=None)
        if tw > wall:
            it = croniter(cron.fields, tw - timedelta(seconds=1), second_at_beginning=cron.seconds,
                          max_years_between_matches=MAX_YEARS)


def fires(cron: Cron, tz: ZoneInfo, after: float, count: int, *, until: float | None = None,
          start: float | None = None, end: float | None = None) -> list[float]:
    """Up to `count` fire instants after `after`, within [start, end] and <= until."""
    out: list[float] = []
    t = after
    if start is not None and start - 1e-6 > t:
        t = start - 1e-6  # `start` itself may fire
    while len(out) < count:
        nxt = next_fire(cron, tz, t)
        if nxt is None or (end is not None and nxt > end) or (until is not None and nxt > until):
            break
        out.append(nxt)
        t = nxt
    return out


def check_can_fire(cron: Cron, tz: ZoneInfo, after: float, start: float | None,
                   end: float | None) -> float:
    """The first fire instant, or CronError saying why the schedule could never fire."""
    if start is not None and end is not None and end < start:
        raise CronError("end is before start: this schedule could never fire")
    if end is not None and end <= after:
        raise CronError("end is in the past: this schedule could never fire")
    first = fires(cron, tz, after, 1, start=start, end=end)
    if not first:
        where = " before its end date" if end is not None else f" within {MAX_YEARS} years"
        raise CronError(f"cron expression {cron.text!r} never matches a date{where}: "
                        "this schedule could never fire")
    return first[0]


def iso(t: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(t, tz).isoformat()


def parse_time(text: str, tz: ZoneInfo) -> float:
    """An ISO date/time (local to `tz` unless it has an offset) or epoch seconds."""
    s = text.strip()
    try:
        return float(s)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise CronError(f"time {text!r} is not ISO 8601 (e.g. 2026-03-29T02:30) "
                        "or epoch seconds") from None
    if dt.tzinfo is None:
        return wall_to_instant(dt, tz)
    return dt.astimezone(UTC).timestamp()


def preview(expr: str, tzname: str, after: float, count: int, start: float | None = None,
            end: float | None = None) -> tuple[list[float], list[str]]:
    """The next `count` fire times after `after` and their local ISO forms (a cron
    preview; nodes run it in a helper process: it is O(count) CPU work)."""
    tz = zone(tzname)
    times = fires(parse(expr), tz, after, count, start=start, end=end)
    return times, [iso(t, tz) for t in times]
