"""ListJobs paging (rpc/public.py): walking the pages, from the first-page fast path
or from a copy of the table, gives every matching job once, in submission order."""

from __future__ import annotations

import pytest

from raftsched.core.model import JobState
from raftsched.rpc import public
from tests.unit.fsm_helpers import assign, cluster, spec, submit


@pytest.mark.parametrize("states", [set(), {JobState.PENDING}, {JobState.ASSIGNED}])
@pytest.mark.parametrize("scan_limit", [10, 20_000])
def test_pages_cover_every_match_once(states: set[JobState], scan_limit: int,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(public, "FIRST_PAGE_SCAN", scan_limit)
    s = cluster("n1", cpu=10**6)
    ids = submit(s, *[spec() for _ in range(57)])
    for jid in ids[::3]:
        assign(s, jid, "n1")
    want = [j.id for j in s.jobs.values() if not states or j.state in states]
    total = sum(s.counts.get(x, 0) for x in states) if states else len(s.jobs)
    got: list[str] = []
    after = 0
    while True:
        first = public._first_page(s.jobs, states, 10) if not after else None
        table = first if first is not None else list(s.jobs.values())
        page = public.list_page(table, states, "", after, 10, total)
        assert page.total == len(want)
        got += [j.id for j in page.jobs]
        if not page.next_page_token:
            break
        after = int(page.next_page_token)
    assert got == want


def _walk(s, states, size: int, newest: bool, **filters) -> tuple[list[str], int]:
    """Every page of a listing, from the first-page fast path as the servicer takes it."""
    got: list[str] = []
    after = 0
    simple = not filters
    total = None
    while True:
        first = public._first_page(s.jobs, states, size, newest) if not after and simple else None
        table = first if first is not None else (
            list(reversed(s.jobs.values())) if newest else list(s.jobs.values()))
        page = public.list_page(table, states, "", after, size, total, newest=newest, **filters)
        got += [j.id for j in page.jobs]
        if not page.next_page_token:
            return got, page.total
        assert page.next_page_token.startswith("d") == newest
        after = int(page.next_page_token.removeprefix("d"))


@pytest.mark.parametrize("scan_limit", [10, 20_000])
@pytest.mark.parametrize("states", [set(), {JobState.ASSIGNED}])
def test_newest_first_pages_cover_every_match_once(scan_limit: int, states: set[JobState],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(public, "FIRST_PAGE_SCAN", scan_limit)
    s = cluster("n1", cpu=10**6)
    ids = submit(s, *[spec() for _ in range(57)])
    for jid in ids[::4]:
        assign(s, jid, "n1")
    want = [j.id for j in reversed(s.jobs.values()) if not states or j.state in states]
    got, total = _walk(s, states, 10, True)
    assert got == want and total == len(want)


def test_name_and_since_filters() -> None:
    import dataclasses

    s = cluster("n1", cpu=10**6)
    early = submit(s, *[dataclasses.replace(spec(), name=f"build-{i}") for i in range(5)], ts=10.0)
    late = submit(s, *[dataclasses.replace(spec(), name=n) for n in ("build-x", "deploy", "")],
                  ts=20.0)
    assert _walk(s, set(), 2, False, name="deploy") == ([late[1]], 1)
    assert _walk(s, set(), 2, True, name="build-*") == ([late[0], *reversed(early)], 6)
    assert _walk(s, set(), 2, False, since=15.0) == (late, 3)
    assert _walk(s, set(), 2, True, name="build-?", since=15.0) == ([late[0]], 1)
    assert _walk(s, set(), 2, False, name="nothing*") == ([], 0)
