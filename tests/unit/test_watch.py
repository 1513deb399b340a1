"""WatchHub: positions, resume, eviction, snapshot reset, filters; JobMetrics transitions."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from raftsched.core.model import Job, JobSpec, JobState, Transition
from raftsched.node.metrics import JobMetrics
from raftsched.replica.watch import ENTRY_END, JobFilter, TooOld, WatchHub


def job(i: int, state: JobState = JobState.PENDING, node: str = "", attempt: int = 0) -> Job:
    return Job(id=f"j{i}", spec=JobSpec(command=("true",)), seq=i, submitted_at=1.0, state=state,
               node_id=node, attempt=attempt)


def feed_all(hub: WatchHub, entries: list[list[Job]], start: int = 1) -> None:
    for k, changes in enumerate(entries):
        hub.feed(start + k, changes)


def read_all(hub: WatchHub, cursor: int) -> list:
    return hub.read(cursor, 10**9, hub.generation)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=30), st.data())
def test_resume_from_any_position_gives_exactly_the_rest(sizes: list[int], data) -> None:
    hub = WatchHub(capacity=10_000)
    entries = [[job(100 * k + i) for i in range(n)] for k, n in enumerate(sizes)]
    feed_all(hub, entries)
    everything = read_all(hub, hub.cursor_after((0, ENTRY_END)))
    assert [c.pos for c in everything] == sorted(c.pos for c in everything)
    assert len(everything) == sum(sizes)
    cut = data.draw(st.integers(min_value=0, max_value=len(everything)))
    # the last position a client saw: a change's own position, or a whole entry
    pos = everything[cut - 1].pos if cut else (0, ENTRY_END)
    rest = read_all(hub, hub.cursor_after(pos))
    assert everything[:cut] + rest == everything


def test_eviction_makes_old_positions_too_old() -> None:
    hub = WatchHub(capacity=10)
    feed_all(hub, [[job(k)] for k in range(25)])
    assert len(hub) <= 10
    with pytest.raises(TooOld, match="re-list"):
        hub.cursor_after((1, 0))
    kept = read_all(hub, hub.cursor_after(hub.floor))
    assert kept and kept[-1].pos == (25, 0)
    # a watcher whose cursor was evicted learns it
    with pytest.raises(TooOld, match="fell behind"):
        hub.read(0, 10, hub.generation)


def test_snapshot_reset_invalidates_live_cursors_and_old_positions() -> None:
    hub = WatchHub()
    feed_all(hub, [[job(1)], [job(2)]])
    gen = hub.generation
    hub.feed(50, [job(3)], reset=True)
    with pytest.raises(TooOld, match="snapshot"):
        hub.read(0, 10, gen)
    with pytest.raises(TooOld):
        hub.cursor_after((2, 0))
    assert [c.pos for c in read_all(hub, hub.cursor_after((49, ENTRY_END)))] == [(50, 0)]


def test_wait_wakes_on_feed() -> None:
    async def main() -> float:
        hub = WatchHub()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, hub.feed, 1, [job(1)])
        t0 = loop.time()
        await hub.wait(hub.end, timeout=5)
        return loop.time() - t0

    assert asyncio.run(main()) < 4


def test_idle_waiters_return_after_the_timeout_sharing_one_timer() -> None:
    async def main() -> int:
        hub = WatchHub()
        waiters = [asyncio.create_task(hub.wait(hub.end, timeout=0.05)) for _ in range(100)]
        await asyncio.sleep(0)
        pulses = 1 if hub._pulse is not None else 0
        # every idle waiter returns (bounded: a waiter that never woke fails here)
        await asyncio.wait_for(asyncio.gather(*waiters), 10)
        return pulses

    assert asyncio.run(main()) == 1


def test_a_waiter_of_named_jobs_wakes_only_for_them_a_reset_or_the_pulse() -> None:
    async def main() -> None:
        hub = WatchHub()
        named = asyncio.create_task(hub.wait(hub.end, timeout=60, ids={"j7", "missing"}))
        broad = asyncio.create_task(hub.wait(hub.end, timeout=60))
        await asyncio.sleep(0)
        hub.feed(1, [job(1), job(2)])  # other jobs: only the broad waiter wakes
        await asyncio.sleep(0.01)
        assert broad.done() and not named.done()
        hub.feed(2, [job(3), job(7)])
        assert await asyncio.wait_for(named, 5) is False  # j7 changed: read what came
        assert not hub._keyed and not hub._keyed_all  # unregistered when it returned
        # a snapshot install (reset) wakes every named waiter: its stream must re-check
        named = asyncio.create_task(hub.wait(hub.end, timeout=60, ids={"j9"}))
        await asyncio.sleep(0)
        hub.feed(10, [job(1)], reset=True)
        assert await asyncio.wait_for(named, 5) is False
        # and the shared pulse wakes it when nothing of its jobs changes
        if hub._pulse is not None:
            hub._pulse.cancel()
            hub._pulse = None
        named = asyncio.create_task(hub.wait(hub.end, timeout=0.05, ids={"j9"}))
        await asyncio.sleep(0)
        hub.feed(11, [job(2)])  # not its job: it may skip this change
        assert await asyncio.wait_for(named, 5) is True
        assert not hub._keyed
        # a change of its job after the pulse resolved it, before it ran: no skip
        named = asyncio.create_task(hub.wait(hub.end, timeout=60, ids={"j9"}))
        await asyncio.sleep(0)
        hub._on_pulse()
        hub.feed(12, [job(9)])
        assert await asyncio.wait_for(named, 5) is False

    asyncio.run(main())


def test_filter() -> None:
    j = job(1, JobState.RUNNING, node="n2", attempt=1)
    assert JobFilter()(j)
    assert JobFilter(job_ids={"j1"})(j) and not JobFilter(job_ids={"j2"})(j)
    assert JobFilter(states={"RUNNING"})(j) and not JobFilter(states={"PENDING"})(j)
    assert JobFilter(node_id="n2")(j) and not JobFilter(node_id="n1")(j)
    assert not JobFilter(workflow_id="wf")(j)  # jobs without a workflow never match one


def test_job_metrics_count_transitions_once() -> None:
    reg = CollectorRegistry()
    m = JobMetrics(reg)
    t = 100.0
    j = replace(job(1), submitted_at=t, history=(Transition(t, JobState.PENDING),))
    a = replace(j, state=JobState.ASSIGNED, attempt=1,
                history=j.history + (Transition(t + 1, JobState.ASSIGNED, "n1", 1),))
    r = replace(a, state=JobState.RUNNING, started_at=t + 2,
                history=a.history + (Transition(t + 2, JobState.RUNNING, "n1", 1),))
    s = replace(r, state=JobState.SUCCEEDED, finished_at=t + 5,
                history=r.history + (Transition(t + 5, JobState.SUCCEEDED, "n1", 1),))
    from raftsched.replica.watch import Change
    for k, version in enumerate([j, a, a, r, s]):  # `a` twice: a change without a transition
        m.observe([Change((k + 1, 0), version)])
    v = reg.get_sample_value
    assert v("raftsched_job_submissions_total") == 1
    assert v("raftsched_job_transitions_total", {"state": "ASSIGNED"}) == 1
    assert v("raftsched_job_completions_total", {"state": "SUCCEEDED"}) == 1
    assert v("raftsched_job_submit_to_start_seconds_sum") == pytest.approx(2.0)
    assert v("raftsched_job_run_seconds_sum") == pytest.approx(3.0)
    assert v("raftsched_job_run_seconds_count") == 1


def _entries(n_jobs: int, split: list[int]) -> list[list]:
    """A command log: submit, assign, start, finish n jobs; entries grouped by `split` sizes."""
    from raftsched.core.commands import (
        Assign,
        AssignItem,
        FinishedItem,
        JobsFinished,
        JobsStarted,
        NodeUp,
        StartedItem,
        SubmitJobs,
    )
    from raftsched.core.model import Node, Resources

    ids = [f"job{i}" for i in range(n_jobs)]
    cmds: list = [NodeUp("r0", 1.0, Node("n1", "a:1", "b:1", Resources(100_000, 100_000)))]
    cmds += [SubmitJobs(f"s{i}", 2.0 + i, ((jid, JobSpec(command=("true",))),)) for i, jid in enumerate(ids)]
    cmds.append(Assign("a", 50.0, tuple(AssignItem(j, "n1", 0) for j in ids)))
    cmds += [JobsStarted(f"st{i}", 60.0 + i, (StartedItem(j, 1, i + 1),)) for i, j in enumerate(ids)]
    cmds += [JobsFinished(f"f{i}", 70.0 + i, (FinishedItem(j, 1, i + 1, 0),)) for i, j in enumerate(ids)]
    out, k = [], 0
    for size in split:
        if k >= len(cmds):
            break
        out.append(cmds[k:k + size])
        k += size
    if k < len(cmds):
        out.append(cmds[k:])
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=8), st.lists(st.integers(min_value=1, max_value=5), max_size=20),
       st.data())
def test_positions_mean_the_same_on_every_replica(n_jobs: int, split: list[int], data) -> None:
    """Two replicas applying the same log give equal changes at equal positions, so a watcher
    resuming on the other replica gets exactly the rest of the stream."""
    from raftsched.core import apply as fsm

    log = _entries(n_jobs, split)
    hubs = []
    for _replica in range(2):
        state, hub = fsm.ClusterState(), WatchHub()
        for index, entry in enumerate(log, start=1):
            state.changes = []
            for cmd in entry:
                assert fsm.apply(state, cmd).ok
            hub.feed(index, state.changes)
        hubs.append(hub)
    a, b = (read_all(h, h.cursor_after((0, ENTRY_END))) for h in hubs)
    assert a == b
    per_job: dict[str, list[str]] = {}
    for c in a:
        per_job.setdefault(c.job.id, []).append(c.job.state.value)
    assert all(s == ["PENDING", "ASSIGNED", "RUNNING", "SUCCEEDED"] for s in per_job.values())
    cut = data.draw(st.integers(min_value=0, max_value=len(a)))
    pos = a[cut - 1].pos if cut else (0, ENTRY_END)
    assert a[:cut] + read_all(hubs[1], hubs[1].cursor_after(pos)) == a
