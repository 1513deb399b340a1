"""Committed entries are applied in time-bounded slices (replica/applyslice.py).

Real SafeSyncObj replicas on the simulated network and clock (raft_sim): applying
one entry costs 5 ms of the simulated clock. A leader with 150 committed entries to
apply used to do all of them in one tick (750 ms without sending a heartbeat);
now each tick applies for at most the budget, and every entry is still applied
once, in order, with its proposer called back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from raftsched.replica import applyslice
from tests.unit.raft_sim import SimNet, elected

COST = 0.005  # simulated seconds per applied entry
N = 150


def slow_apply(net: SimNet) -> None:
    for so in net.nodes.values():
        inner = so._SyncObj__doApplyCommand

        def timed(command: Any, inner: Callable[[Any], Any] = inner) -> Any:
            net.clock.t += COST
            return inner(command)

        so._SyncObj__doApplyCommand = timed


def committed_backlog(net: SimNet, leader: str) -> tuple[Any, list[tuple[Any, Any]]]:
    """N proposals on the leader, replicated and committed, none applied yet there."""
    so = net.nodes[leader]
    results: list[tuple[Any, Any]] = []
    for i in range(N):
        net.recs[leader].record(i, callback=lambda res, err: results.append((res, err)))
    start = so._SyncObj__raftLastApplied
    # pysyncobj appends proposals in its tick, and a leader applies in the tick that
    # sees the commit: tick the followers and deliver, then count the leader's commit
    for _ in range(200):
        for nid in net.ids:
            if nid != leader:
                net.nodes[nid].doTick(0)
        net.pump()
        so._SyncObj__applyLogEntries = lambda: False  # hold the leader's apply
        so.doTick(0)
        del so._SyncObj__applyLogEntries
        net.pump()
        if so._SyncObj__raftCommitIndex >= start + N:
            return so, results
    raise AssertionError("the proposals did not commit")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sliced", [True, False])
def test_a_tick_applies_for_at_most_its_budget(make_net: Callable[..., SimNet], sliced: bool) -> None:
    net = make_net()
    leader = elected(net)
    slow_apply(net)
    so, results = committed_backlog(net, leader)
    so._rs_apply_slices = sliced
    before = so._SyncObj__raftLastApplied
    t0 = net.clock.t
    so.doTick(0)
    applied = so._SyncObj__raftLastApplied - before
    if not sliced:  # pysyncobj's own loop: everything in one tick
        assert applied == N and net.clock.t - t0 >= N * COST - 1e-6
        return
    assert 1 <= applied <= applyslice.BUDGET / COST + 1
    assert applyslice.backlog(so)
    net.run_until(lambda: not applyslice.backlog(so), 10, "the backlog applied")
    # every entry once, in order, each proposer answered with success
    assert net.recs[leader].applied[-N:] == list(range(N))
    assert len(results) == N and all(err == 0 for _, err in results)
    net.run(1.0)
    for nid in net.ids:
        assert net.recs[nid].applied[-N:] == list(range(N))
