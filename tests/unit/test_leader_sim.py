"""The leader's decisions over simulated replicas, no processes: three ClusterState
replicas receive the same committed commands, produced by the pure liveness,
reconcile and placement functions a leader runs. Leadership moves mid-run, and the
deposed leader keeps proposing decisions from its stale view (as a leader thawed
from SIGSTOP would) — the apply-time checks must refuse them.

Checked: every replica ends with the same digest and the same results; no job ever
has two live attempts, no attempt is started twice, no node is over capacity."""

from __future__ import annotations

import random
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
from raftsched.core.model import JobSpec, JobState, Node, Resources, RetryPolicy
from raftsched.core.placement import candidates, place

TTL = 1.5
NODES = ("n1", "n2", "n3")
LIVE = (JobState.ASSIGNED, JobState.RUNNING, JobState.CANCELLING)


@dataclass
class Sim:
    replicas: list[fsm.ClusterState] = field(default_factory=lambda: [fsm.ClusterState() for _ in NODES])
    log: list[object] = field(default_factory=list)
    rid: int = 0
    now: float = 1000.0
    started: set[tuple[str, int]] = field(default_factory=set)

    def commit(self, cmd: object) -> fsm.Result:
        """Raft commits `cmd`: every replica applies it, with the same result."""
        self.log.append(cmd)
        before = {}
        if isinstance(cmd, Assign):
            jobs = self.replicas[0].jobs
            before = {it.job_id: (jobs[it.job_id].state, jobs[it.job_id].attempt)
                      for it in cmd.items if it.job_id in jobs}
        results = [fsm.apply(r, cmd) for r in self.replicas]  # type: ignore[arg-type]
        assert all(r == results[0] for r in results), results
        if isinstance(cmd, Assign):
            for it, out in zip(cmd.items, results[0].value, strict=True):
                if isinstance(out, int):  # accepted: the job had no live attempt
                    assert before[it.job_id] == (JobState.PENDING, it.attempt), (it, before[it.job_id])
        self.check()
        return results[0]

    def next_rid(self) -> str:
        self.rid += 1
        return f"r{self.rid}"

    def check(self) -> None:
        st = self.replicas[0]
        for nid, use in st.usage.items():
            node = st.nodes[nid]
            assert use.cpu_millis <= node.capacity.cpu_millis, (nid, use)
            for jid in use.jobs:
                assert st.jobs[jid].node_id == nid and st.jobs[jid].state in LIVE
        live = [j.id for j in st.jobs.values() if j.state in LIVE]
        assert len(live) == len(set(live))
        on_nodes = [jid for u in st.usage.values() for jid in u.jobs]
        assert sorted(on_nodes) == sorted(live), "a live attempt not counted on exactly one node"


@dataclass
class LeaderView:
    """A leader's soft state over the replica it reads."""

    replica: fsm.ClusterState
    last_seen: dict[str, float]
    reported: dict[str, set[tuple[str, int]]] = field(default_factory=dict)

    def place(self, now: float) -> Assign | None:
        st = self.replica
        pending = queue.runnable(st, now, queue.QueueOrder.PRIORITY, 0.0, 2000)
        cands = [c for c in candidates(st) if c.node.alive]  # ties: replicated recency
        items = place(pending, cands, "spread")  # type: ignore[arg-type]
        return Assign("", now, tuple(items)) if items else None


def elect(sim: Sim, who: int) -> LeaderView:
    st = sim.replicas[who]
    return LeaderView(st, liveness.rearm(st, sim.now))


def step_workers(sim: Sim, leader: LeaderView, rng: random.Random, silent: set[str]) -> None:
    """Nodes start what was assigned to them and finish some of what runs (a third fail);
    their heartbeats reach the leader, except from `silent` nodes."""
    st = leader.replica
    starts, finishes = [], []
    for j in reconcile.active_jobs(st):
        if j.node_id in silent:
            continue
        if j.state is JobState.ASSIGNED:
            assert (j.id, j.attempt) not in sim.started, f"attempt {j.id}/{j.attempt} started twice"
            sim.started.add((j.id, j.attempt))
            starts.append(StartedItem(j.id, j.attempt, j.fencing_token))
        elif rng.random() < 0.5:
            finishes.append(FinishedItem(j.id, j.attempt, j.fencing_token, rng.choice([0, 0, 1])))
    for nid in NODES:
        if nid not in silent:
            leader.last_seen[nid] = sim.now
            leader.reported[nid] = {(j.id, j.attempt) for j in st.active_on(nid)} if nid in st.nodes else set()
    if starts:
        sim.commit(JobsStarted(sim.next_rid(), sim.now, tuple(starts)))
    if finishes:
        items = reconcile.stamp_retries(st, finishes, sim.now, rng.random)
        sim.commit(JobsFinished(sim.next_rid(), sim.now, tuple(items)))


def step_leader(sim: Sim, leader: LeaderView) -> None:
    down, unseen = liveness.down_nodes(leader.replica, leader.last_seen, sim.now, TTL)
    for nid in unseen:
        leader.last_seen[nid] = sim.now
    for nid, reason in down:
        sim.commit(NodeDown(sim.next_rid(), sim.now, nid, reason))
    a = leader.place(sim.now)
    if a is not None:
        sim.commit(Assign(sim.next_rid(), a.ts, a.items))


def run(seed: int, jobs: int, switch_at: int, stale_after: int) -> Sim:
    rng = random.Random(seed)
    sim = Sim()
    for nid in NODES:
        sim.commit(NodeUp(sim.next_rid(), sim.now, Node(nid, f"g-{nid}", f"r-{nid}", Resources(1000, 1000))))
    spec = JobSpec(command=("true",), resources=Resources(300, 100),
                   retry=RetryPolicy(max_attempts=3, initial_delay_s=0.5, jitter=0.5))
    sim.commit(SubmitJobs(sim.next_rid(), sim.now, tuple((f"j{i:03d}", spec) for i in range(jobs))))
    leader = elect(sim, 0)
    stale: Assign | None = None
    silent: set[str] = set()
    for tick in range(60):
        sim.now += 0.5
        step_workers(sim, leader, rng, silent)
        if tick == switch_at:
            # n1 (the leader) is cut off right after deciding a placement from its view;
            # it stops heartbeating, and n2 is elected and re-arms every node.
            stale = leader.place(sim.now)
            silent = {"n1"}
            leader = elect(sim, 1)
        if stale is not None and tick == switch_at + stale_after:
            # the deposed leader's proposal reaches the log late: apply-time checks
            # (state and attempt compare-and-swap) refuse what was placed meanwhile
            assert sim.commit(Assign(sim.next_rid(), sim.now, stale.items)).ok
        step_leader(sim, leader)
    return sim


@settings(max_examples=25, deadline=None)
@given(seed=hs.integers(0, 10_000), jobs=hs.integers(1, 40), switch_at=hs.integers(2, 30),
       stale_after=hs.integers(0, 8))
def test_simulated_replicas_agree_and_never_double_assign(seed: int, jobs: int, switch_at: int,
                                                         stale_after: int) -> None:
    sim = run(seed, jobs, switch_at, stale_after)
    digests = {r.digest() for r in sim.replicas}
    assert len(digests) == 1
    st = sim.replicas[0]
    # the cut-off node was declared down under the new leader and holds nothing
    assert not st.nodes["n1"].alive
    assert not st.active_on("n1")


def test_replaying_the_log_rebuilds_the_same_state() -> None:
    sim = run(seed=3, jobs=30, switch_at=10, stale_after=2)
    fresh = fsm.ClusterState()
    for cmd in sim.log:
        fsm.apply(fresh, cmd)  # type: ignore[arg-type]
    assert fresh.digest() == sim.replicas[2].digest()
    done = [j for j in fresh.jobs.values() if j.state in (JobState.SUCCEEDED, JobState.DEAD)]
    assert done, "the simulation made progress"
