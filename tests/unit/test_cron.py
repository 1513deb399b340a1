"""cron.py: parsing, aliases, seconds, never-firing schedules, and DST behaviour
checked against an independent brute-force oracle (minute by minute over real
instants) in three timezones."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftsched.core import cron
from raftsched.core.workflow_types import Misfire, plan_misfires

pytestmark = pytest.mark.timeout(120)

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]


def utc(*a: int) -> float:
    return datetime(*a, tzinfo=UTC).timestamp()


def local_iso(ts: list[float], tz: str) -> list[str]:
    z = cron.zone(tz)
    return [cron.iso(t, z) for t in ts]


# ---- parsing ------------------------------------------------------------------------


@pytest.mark.parametrize("expr,msg", [
    ("", "empty"),
    ("* * *", "has 3 fields"),
    ("61 * * * *", "field 1 (minute) '61'"),
    ("* 24 * * *", "field 2 (hour) '24'"),
    ("* * * 13 *", "field 4 (month) '13'"),
    ("70 * * * * *", "field 1 (second) '70'"),
    ("@every5m", "unknown cron alias"),
    ("a b c d e", "malformed"),
])
def test_malformed_expressions_name_the_problem(expr: str, msg: str) -> None:
    with pytest.raises(cron.CronError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        cron.parse(expr)


def test_unknown_timezone() -> None:
    with pytest.raises(cron.CronError, match="unknown timezone 'Mars/Olympus'"):
        cron.zone("Mars/Olympus")
    with pytest.raises(cron.CronError, match="timezone is empty"):
        cron.zone("")


def test_aliases_and_seconds_field() -> None:
    tz = cron.zone("UTC")
    t0 = utc(2026, 1, 1, 10, 20, 30)
    assert cron.fires(cron.parse("@hourly"), tz, t0, 2) == [utc(2026, 1, 1, 11), utc(2026, 1, 1, 12)]
    assert cron.fires(cron.parse("@daily"), tz, t0, 1) == [utc(2026, 1, 2)]
    assert cron.fires(cron.parse("@weekly"), tz, t0, 1) == [utc(2026, 1, 4)]  # a Sunday
    assert cron.fires(cron.parse("@monthly"), tz, t0, 1) == [utc(2026, 2, 1)]
    assert cron.fires(cron.parse("@yearly"), tz, t0, 1) == [utc(2027, 1, 1)]
    # six fields: the seconds field comes first
    assert cron.fires(cron.parse("15 * * * * *"), tz, t0, 2) == [t0 + 45, t0 + 105]
    assert cron.fires(cron.parse("*/20 * * * * *"), tz, t0, 3) == [t0 + 10, t0 + 30, t0 + 50]


def test_never_firing_schedules_are_refused() -> None:
    tz = cron.zone("UTC")
    now = utc(2026, 1, 1)
    with pytest.raises(cron.CronError, match="never matches a date"):
        cron.check_can_fire(cron.parse("0 0 30 2 *"), tz, now, None, None)
    with pytest.raises(cron.CronError, match="end is before start"):
        cron.check_can_fire(cron.parse("@hourly"), tz, now, now + 7200, now + 3600)
    with pytest.raises(cron.CronError, match="end is in the past"):
        cron.check_can_fire(cron.parse("@hourly"), tz, now, None, now - 10)
    # a window with no match: daily at midnight, window 01:00-23:00
    with pytest.raises(cron.CronError, match="before its end date"):
        cron.check_can_fire(cron.parse("@daily"), tz, now, now + 3600, now + 23 * 3600)
    # 29 February fires (rarely)
    assert cron.check_can_fire(cron.parse("0 0 29 2 *"), tz, now, None, None) == utc(2028, 2, 29)


def test_start_and_end_bound_fires() -> None:
    tz = cron.zone("UTC")
    t0 = utc(2026, 1, 1)
    got = cron.fires(cron.parse("@hourly"), tz, t0, 100, start=t0 + 3 * 3600, end=t0 + 5 * 3600)
    assert got == [t0 + 3 * 3600, t0 + 4 * 3600, t0 + 5 * 3600]


# ---- DST: the documented behaviour on concrete days --------------------------------------


def test_berlin_spring_forward_gap_fires_once_at_gap_end() -> None:
    tz = cron.zone("Europe/Berlin")
    after = datetime(2026, 3, 28, 12, 0, tzinfo=tz).timestamp()
    got = cron.fires(cron.parse("30 2 * * *"), tz, after, 3)
    # 02:30 does not exist on 29 March: fires at 03:00 CEST (the end of the gap)
    assert local_iso(got, "Europe/Berlin") == [
        "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]
    every15 = cron.fires(cron.parse("*/15 * * * *"), tz, datetime(2026, 3, 29, 1, 40, tzinfo=tz).timestamp(), 3)
    # 02:00, 02:15, 02:30, 02:45 and 03:00 collapse into one fire at 03:00
    assert local_iso(every15, "Europe/Berlin") == [
        "2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:15:00+02:00"]


def test_new_york_fall_back_repeat_fires_once_first_occurrence() -> None:
    tz = cron.zone("America/New_York")
    after = datetime(2026, 10, 31, 12, 0, tzinfo=tz).timestamp()
    got = cron.fires(cron.parse("30 1 * * *"), tz, after, 2)
    assert local_iso(got, "America/New_York") == [
        "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]  # not 01:30-05:00 on 1 Nov
    # started inside the second pass of the repeated hour: nothing more that day
    second_pass = utc(2026, 11, 1, 6, 10)  # 01:10 EST (second 01:10)
    assert cron.iso(second_pass, tz) == "2026-11-01T01:10:00-05:00"
    nxt = cron.next_fire(cron.parse("*/20 * * * *"), tz, second_pass)
    assert nxt is not None and cron.iso(nxt, tz) == "2026-11-01T02:00:00-05:00"


def test_lord_howe_half_hour_shift() -> None:
    tz = cron.zone("Australia/Lord_Howe")
    # 2026-10-04 02:00 -> 02:30 (+10:30 -> +11:00): 02:15 does not exist
    after = datetime(2026, 10, 3, 12, 0, tzinfo=tz).timestamp()
    got = cron.fires(cron.parse("15 2 * * *"), tz, after, 2)
    assert local_iso(got, "Australia/Lord_Howe") == [
        "2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"]


# ---- DST: property test against a brute-force oracle ---------------------------------


def _matches(wall: datetime, minutes: set[int], hours: set[int]) -> bool:
    return wall.minute in minutes and wall.hour in hours


def oracle(tz_name: str, minutes: set[int], hours: set[int], after: float, until: float) -> list[float]:
    """Fire instants in (after, until] by scanning every minute of real time.

    A wall time fires at its first occurrence (fold 0); the wall times a
    spring-forward skips fire once at the first instant after the gap.
    """
    tz = cron.zone(tz_name)
    out: list[float] = []
    t = (int(after) // 60 + 1) * 60
    prev_wall = datetime.fromtimestamp(t - 60, tz).replace(tzinfo=None)
    while t <= until:
        local = datetime.fromtimestamp(t, tz)
        wall = local.replace(tzinfo=None)
        fire = local.fold == 0 and _matches(wall, minutes, hours)
        # wall times skipped between the previous minute and this one (a gap)
        w = prev_wall + timedelta(minutes=1)
        while not fire and w < wall:
            fire = _matches(w, minutes, hours)
            w += timedelta(minutes=1)
        if fire:
            out.append(float(t))
        prev_wall = wall
        t += 60
    return out


TRANSITIONS = {  # (utc instant near a DST change) per zone, 2025-2027
    "Europe/Berlin": [utc(2025, 3, 30, 1), utc(2025, 10, 26, 1), utc(2026, 3, 29, 1), utc(2026, 10, 25, 1)],
    "America/New_York": [utc(2025, 3, 9, 7), utc(2025, 11, 2, 6), utc(2026, 3, 8, 7), utc(2026, 11, 1, 6)],
    "Australia/Lord_Howe": [utc(2025, 4, 5, 15), utc(2025, 10, 4, 15), utc(2026, 4, 4, 15),
                            utc(2026, 10, 3, 15)],
}


@settings(max_examples=60, deadline=None)
@given(
    tz_name=st.sampled_from(ZONES),
    which=st.integers(0, 3),
    offset_min=st.integers(-300, 180),
    minutes=st.sets(st.sampled_from([0, 1, 5, 10, 15, 20, 29, 30, 31, 45, 59]), min_size=1, max_size=4),
    hours=st.one_of(st.just(set(range(24))), st.sets(st.integers(0, 4), min_size=1, max_size=3)),
)
def test_next_fire_matches_oracle_across_dst(tz_name: str, which: int, offset_min: int,
                                             minutes: set[int], hours: set[int]) -> None:
    after = TRANSITIONS[tz_name][which] + offset_min * 60 + 7  # not on a minute boundary
    until = after + 8 * 3600
    expr = f"{','.join(map(str, sorted(minutes)))} {','.join(map(str, sorted(hours)))} * * *"
    tz = cron.zone(tz_name)
    got = cron.fires(cron.parse(expr), tz, after, 10_000, until=until)
    want = oracle(tz_name, minutes, hours, after, until)
    assert got == want, (expr, tz_name, local_iso(got, tz_name), local_iso(want, tz_name))
    # strictly increasing and each a whole minute: no instant twice
    assert all(b > a for a, b in itertools.pairwise(got))


@settings(max_examples=40, deadline=None)
@given(tz_name=st.sampled_from(ZONES), which=st.integers(0, 3), offset_s=st.integers(-7200, 7200))
def test_every_second_is_monotone_and_never_repeats(tz_name: str, which: int, offset_s: int) -> None:
    after = TRANSITIONS[tz_name][which] + offset_s
    tz = cron.zone(tz_name)
    got = cron.fires(cron.parse("*/30 * * * * *"), tz, after, 50)
    assert len(got) == 50 and got[0] > after
    assert all(b > a for a, b in itertools.pairwise(got))
    # each fire is a real wall time matching, or the end of a gap
    for t in got:
        local = datetime.fromtimestamp(t, tz)
        assert local.second in (0, 30) or local.fold == 0


# ---- misfire planning ---------------------------------------------------------------


def test_plan_misfires_policies() -> None:
    due = [100.0, 101.0, 102.0, 103.0, 104.0]
    now = 104.2  # 104 on time (threshold 1), 100..103 missed
    assert plan_misfires(due, now, Misfire.SKIP, 1.0, 60.0) == [104.0]
    assert plan_misfires(due, now, Misfire.RUN_ONCE, 1.0, 60.0) == [103.0, 104.0]
    assert plan_misfires(due, now, Misfire.RUN_ALL, 1.0, 60.0) == due
    # deadline 2.5 s: only 102 and 103 may still run
    assert plan_misfires(due, now, Misfire.RUN_ALL, 1.0, 2.5) == [102.0, 103.0, 104.0]
    assert plan_misfires(due, 110.0, Misfire.RUN_ONCE, 1.0, 60.0) == [104.0]
    assert plan_misfires(due, 110.0, Misfire.SKIP, 1.0, 60.0) == []
