"""Start delivery over a simulated cluster: one state machine, three workers, and
starts that travel late.

The leader dispatches the records it read after an Assign (or for a re-send), the
send itself runs some ticks later (a task scheduled behind other work, a channel
reconnecting to a restarted node), and the request arrives some ticks after that.
Meanwhile workers restart (new incarnation: the watchdog killed their jobs), lapse
(lease out: the watchdog killed their jobs, the leader declares them down) and come
back. The worker applies the fence of rpc/agent.py (incarnation, a lease, the
generation of its last lease) and the executor's (job, attempt) dedupe.

Checked: no attempt ever starts while another attempt of the same job runs (what the
chaos test's `flock -n` ledger catches). The legacy send (records as read earlier,
node read at send time) is run too and must be caught: the checker is not blind.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as hs

from raftsched.core import apply as fsm
from raftsched.core import liveness, reconcile
from raftsched.core import runqueue as queue
from raftsched.core.commands import (
    Assign,
    FinishedItem,
    JobsFinished,
    JobsStarted,
    NodeDown,
    NodeUp,
    StartedItem,
    SubmitJobs,
)
from raftsched.core.model import Job, JobSpec, Node, Resources
from raftsched.core.placement import candidates, place

NODES = ("n1", "n2", "n3")
Send = Callable[[fsm.ClusterState, str, list[Job]], tuple[Node | None, list[Job]]]


def legacy_send(st: fsm.ClusterState, node_id: str, jobs: list[Job]) -> tuple[Node | None, list[Job]]:
    """rpc/peer.py before the fix: the records as read earlier, the node as it is now."""
    return st.nodes.get(node_id), jobs


@dataclass
class Worker:
    incarnation: str
    generation: int = -1
    lease: bool = False
    seen: set[tuple[str, int]] = field(default_factory=set)
    running: dict[str, tuple[int, int]] = field(default_factory=dict)  # job -> (attempt, token)


@dataclass
class World:
    rng: random.Random
    send: Send
    st: fsm.ClusterState = field(default_factory=fsm.ClusterState)
    workers: dict[str, Worker] = field(default_factory=dict)
    now: float = 1000.0
    rid: int = 0
    to_send: list[tuple[int, str, list[Job]]] = field(default_factory=list)  # (due tick, node, records)
    in_flight: list[tuple[int, str, str, int, list[Job]]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    runs: int = 0

    def commit(self, cmd_type: type, *args: object) -> fsm.Result:
        self.rid += 1
        return fsm.apply(self.st, cmd_type(f"r{self.rid}", self.now, *args))

    def dispatch(self, tick: int, jobs: list[Job]) -> None:
        by_node: dict[str, list[Job]] = {}
        for j in jobs:
            by_node.setdefault(j.node_id, []).append(j)
        for nid, js in by_node.items():
            self.to_send.append((tick + self.rng.randint(0, 3), nid, js))

    def heartbeats(self) -> None:
        for nid, w in self.workers.items():
            me = Node(nid, f"g-{nid}", f"r-{nid}", Resources(1000, 1000), incarnation=w.incarnation)
            if liveness.needs_node_up(self.st, me):
                self.commit(NodeUp, me)
            node = self.st.nodes[nid]
            w.lease, w.generation = node.alive, node.generation
            for job_id, attempt, _ in liveness.revoked(self.st, nid, [(j, a, t) for j, (a, t) in w.running.items()]):
                if w.running.get(job_id, (None,))[0] == attempt:
                    del w.running[job_id]

    def deliver(self, nid: str, incarnation: str, generation: int, jobs: list[Job]) -> None:
        w = self.workers[nid]
        if incarnation != w.incarnation or not w.lease or generation != w.generation:
            return  # refused by the agent's fence
        started = []
        for j in jobs:
            if (j.id, j.attempt) in w.seen:
                continue
            w.seen.add((j.id, j.attempt))
            for other, ow in self.workers.items():
                if j.id in ow.running:
                    a, t = ow.running[j.id]
                    self.violations.append(f"{j.id} attempt {j.attempt} (token {j.fencing_token}) started on "
                                           f"{nid} while attempt {a} (token {t}) runs on {other}")
            w.running[j.id] = (j.attempt, j.fencing_token)
            self.runs += 1
            started.append(StartedItem(j.id, j.attempt, j.fencing_token))
        if started:
            self.commit(JobsStarted, tuple(started))

    def tick(self, tick: int) -> None:
        self.now += 0.2
        rng = self.rng
        # faults: a restart (new process; its watchdog killed the old one's jobs) or a
        # lease lapse (watchdog kills, the leader declares the node down, it comes back)
        if rng.random() < 0.15:
            nid = rng.choice(NODES)
            w = self.workers[nid]
            if rng.random() < 0.5:
                self.workers[nid] = Worker(f"{nid}-{tick}")
            else:
                w.running.clear()
                w.lease = False
                if self.st.nodes[nid].alive:
                    self.commit(NodeDown, nid, "no heartbeat")
        self.heartbeats()
        # jobs finish
        for w in self.workers.values():
            for job_id, (a, t) in list(w.running.items()):
                if rng.random() < 0.3:
                    del w.running[job_id]
                    self.commit(JobsFinished, (FinishedItem(job_id, a, t, 0),))
        # the leader places, re-sends, and its delayed sends go out
        pending = queue.runnable(self.st, self.now, queue.QueueOrder.PRIORITY, 0.0, 2000)
        items = place(pending, [c for c in candidates(self.st) if c.node.alive], "spread")  # type: ignore[arg-type]
        if items:
            res = self.commit(Assign, tuple(items))
            self.dispatch(tick, [self.st.jobs[it.job_id] for it, out in zip(items, res.value, strict=True)
                                 if isinstance(out, int)])
        reported = {nid: {(j, a) for j, (a, _) in w.running.items()} for nid, w in self.workers.items()}
        self.dispatch(tick, reconcile.unconfirmed_starts(self.st, reported, self.now, 0.6))
        due = [s for s in self.to_send if s[0] <= tick]
        self.to_send = [s for s in self.to_send if s[0] > tick]
        for _, nid, js in due:
            node, current = self.send(self.st, nid, js)
            if node is not None and current:
                self.in_flight.append((tick + rng.randint(0, 3), nid, node.incarnation, node.generation, current))
        arrived = [m for m in self.in_flight if m[0] <= tick]
        self.in_flight = [m for m in self.in_flight if m[0] > tick]
        for _, nid, inc, gen, js in arrived:
            self.deliver(nid, inc, gen, js)


def run(seed: int, jobs: int, send: Send, ticks: int = 120) -> World:
    w = World(random.Random(seed), send)
    for nid in NODES:
        w.workers[nid] = Worker(f"{nid}-boot")
    w.heartbeats()
    spec = JobSpec(command=("true",), resources=Resources(300, 100))
    w.commit(SubmitJobs, tuple((f"j{i:03d}", spec) for i in range(jobs)))
    for t in range(ticks):
        w.tick(t)
        if w.violations:
            break
    return w


@settings(max_examples=60, deadline=None)
@given(seed=hs.integers(0, 100_000), jobs=hs.integers(1, 30))
def test_late_starts_never_run_two_attempts_of_a_job_at_once(seed: int, jobs: int) -> None:
    w = run(seed, jobs, reconcile.startable)
    assert not w.violations, w.violations[:3]
    assert w.runs >= 1


def test_the_checker_catches_the_legacy_send() -> None:
    """Without `startable` (records read earlier sent under the node's current generation),
    the same simulation runs two attempts of a job at once."""
    caught = [s for s in range(40) if run(s, 20, legacy_send).violations]
    assert caught, "the simulation never exercised a late start of a lost attempt"
    for s in caught:  # and with the fix, the same seeds do not
        assert not run(s, 20, reconcile.startable).violations
