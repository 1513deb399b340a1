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
