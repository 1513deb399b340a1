"""The leader declares a node down only while it is still silent.

The leader loop decides which nodes are down in one pass, then proposes one NodeDown
after another, each awaited until committed: under load that took about a second each
(test_200_jobs_through_a_follower at load 11: all three nodes silent for 6 s, NodeDown
n1, n3, n2 proposed from 38.75 to 39.89). Meanwhile the heartbeat of a node further
down the list was answered with a lease, a start was accepted under it, and the job ran
to its end; the stale NodeDown then returned the job to PENDING and it ran again on
another node (two "E" ledger lines). A heartbeat answered after the decision must
cancel it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from raftsched.core import apply as fsm
from raftsched.core.commands import Assign, AssignItem, NodeDown, NodeUp
from raftsched.core.model import JobState
from tests.unit.test_dispatch import Harness, Proposer, node, submit

pytestmark = pytest.mark.timeout(30)


class HeartbeatDuringNodeDown(Proposer):
    """While NodeDown(`during`) is being committed, `beat` heartbeats (on the control
    port's thread, in the node): the leader records it and answers with a lease."""

    def __init__(self, h: Harness, during: str, beat: str) -> None:
        super().__init__(h.replica)
        self.h, self.during, self.beat = h, during, beat
        self.beat_lease = -1.0  # the lease `beat` got
        self.down_leases: dict[str, float] = {}  # node -> its lease while its NodeDown is in flight
        self.downs: list[str] = []

    async def propose(self, cmd: Any, timeout: float = 5.0) -> fsm.Result:
        if isinstance(cmd, NodeDown):
            self.downs.append(cmd.node_id)
            if cmd.node_id == self.during:
                leader = self.h.leader
                leader.heartbeat(node(self.beat, "a"), [])
                self.beat_lease = leader.lease_for(self.beat)[0]
            self.down_leases[cmd.node_id] = self.h.leader.lease_for(cmd.node_id)[0]
        return await super().propose(cmd, timeout)


def cluster(tmp_path: Path, during: str, beat: str) -> tuple[Harness, HeartbeatDuringNodeDown]:
    h = Harness(tmp_path)
    for nid in ("n1", "n2", "n3"):
        h.replica.commit(NodeUp, node(nid, "a"))
    submit(h, "j1")
    h.replica.commit(Assign, (AssignItem("j1", beat, 0),))
    h.proposer = h.leader.proposer = HeartbeatDuringNodeDown(h, during, beat)
    silent_since = time.monotonic() - 10 * h.cfg.heartbeat_ttl
    h.leader.last_seen = {nid: silent_since for nid in ("n1", "n2", "n3")}
    return h, h.proposer


def test_a_node_heard_from_while_others_are_declared_down_is_not_declared_down(
        tmp_path: Path) -> None:
    h, proposer = cluster(tmp_path, during="n1", beat="n2")
    asyncio.run(h.leader._liveness())
    st = h.replica.state
    assert proposer.beat_lease > 0  # the scenario: n2 holds a lease from this leader
    assert proposer.downs == ["n1", "n3"]
    assert proposer.down_leases == {"n1": 0, "n3": 0}
    assert st.nodes["n2"].alive and not st.nodes["n1"].alive and not st.nodes["n3"].alive
    j = st.jobs["j1"]
    assert (j.state, j.node_id, j.attempt) == (JobState.ASSIGNED, "n2", 1)  # not run twice


def test_a_node_heard_from_during_its_own_node_down_gets_no_lease(tmp_path: Path) -> None:
    """The heartbeat came too late: its NodeDown is in flight; no lease (it is being
    declared down and its jobs reassigned), and the NodeDown stands."""
    h, proposer = cluster(tmp_path, during="n2", beat="n2")
    asyncio.run(h.leader._liveness())
    assert proposer.beat_lease == 0
    assert proposer.downs == ["n1", "n2", "n3"]
    assert h.replica.state.jobs["j1"].state is JobState.PENDING


def stalled_cluster(tmp_path: Path, stall: float, silent: dict[str, float]) -> Harness:
    """The leader's loop last ran `stall` seconds ago; node -> seconds since its last
    heartbeat. j1 ran on n1 (the leader's own node)."""
    h = Harness(tmp_path)
    for nid in ("n1", "n2", "n3"):
        h.replica.commit(NodeUp, node(nid, "a"))
    submit(h, "j1")
    h.replica.commit(Assign, (AssignItem("j1", "n1", 0),))
    now = time.monotonic()
    h.leader._awake_at = now - stall
    h.leader.last_seen = {nid: now - s for nid, s in silent.items()}
    return h


def test_the_leaders_own_stall_is_not_the_nodes_silence(tmp_path: Path) -> None:
    """The leader process stalled 7 s (seen at load 16): nobody was heard meanwhile. On
    resuming it must not declare the nodes down (itself included) and rerun their jobs,
    which may have ended during the stall with their reports not yet read."""
    ttl = 1.5
    h = stalled_cluster(tmp_path, stall=7.0, silent={"n1": 7.2, "n2": 7.1, "n3": 7.3})
    assert h.cfg.heartbeat_ttl == ttl
    asyncio.run(h.leader._liveness())
    st = h.replica.state
    assert all(n.alive for n in st.nodes.values())
    assert st.jobs["j1"].state is JobState.ASSIGNED
    assert h.leader.stalls_credited > 6.5


def test_a_node_silent_before_the_stall_too_is_still_declared_down(tmp_path: Path) -> None:
    """Only the stall is credited: silence beyond it still counts."""
    h = stalled_cluster(tmp_path, stall=3.0, silent={"n1": 3.1, "n2": 3.1, "n3": 10.0})
    asyncio.run(h.leader._liveness())
    st = h.replica.state
    assert st.nodes["n1"].alive and st.nodes["n2"].alive and not st.nodes["n3"].alive
