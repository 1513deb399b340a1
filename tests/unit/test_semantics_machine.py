"""A hypothesis state machine over the pure fsm with job semantics.

Rules: submit (priorities, retry policies, sequence keys, idempotency keys),
placement, random (possibly bad) assigns, start, succeed, fail, timeout, stale
reports, cancel, node down/up, drain (with a deadline or forced) and its deadline,
eligibility, DLQ retry and purge, clock steps. Invariants
checked after every step: no job in two places, attempts and fencing tokens
only grow, no node over-committed, terminal states stay terminal (except an
explicit DLQ retry of a DEAD job), jobs of one sequence key never active
together and started in submission order, derived indexes consistent,
snapshot round trip identical.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from raftsched.core import apply as fsm
from raftsched.core import nodes
from raftsched.core import runqueue as queue
from raftsched.core.commands import (
    Assign,
    AssignItem,
    CancelJob,
    FinishedItem,
    JobsFinished,
    JobsStarted,
    NodeDown,
    NodeUp,
    PurgeDead,
    RetryDead,
    StartedItem,
    SubmitJobs,
)
from raftsched.core.model import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    Constraint,
    JobSpec,
    JobState,
    Node,
    Resources,
    RetryPolicy,
)
from raftsched.core.nodeops import DrainDeadline, DrainNode, SetEligibility
from raftsched.core.placement import Candidate, Strategy, place
from raftsched.core.state import state_digest

NODES = ("n1", "n2", "n3")
LABELS = {"n1": (("pool", "light"),), "n2": (("pool", "heavy"),), "n3": (("pool", "light"),)}


class SemanticsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.st = fsm.ClusterState()
        self.now = 100.0
        self.n = 0
        self.keys: dict[str, str] = {}  # idempotency key -> job id (all within retention)
        self.prev: dict[str, tuple[JobState, int, int]] = {}
        self.revived: set[str] = set()
        self.purged: set[str] = set()
        for nid in NODES:
            self._apply(NodeUp(self._rid(), self.now, Node(nid, "g", "r", Resources(1000, 1000), LABELS[nid])))

    def _rid(self) -> str:
        self.n += 1
        return f"r{self.n}"

    def _apply(self, cmd) -> fsm.Result:
        return fsm.apply(self.st, cmd)

    def _jobs(self, states: frozenset[JobState] | set[JobState]) -> list[str]:
        return sorted(j.id for j in self.st.jobs.values() if j.state in states)

    # ---- rules --------------------------------------------------------------------

    @rule(
        prio=st.integers(-5, 5),
        seqkey=st.sampled_from(["", "", "a", "b"]),
        attempts=st.sampled_from([0, 0, 1, 2, 3]),
        key=st.sampled_from([None, None, "k1", "k2", "k3"]),
        cpu=st.sampled_from([100, 400, 900]),
        heavy=st.booleans(),
    )
    def submit(self, prio: int, seqkey: str, attempts: int, key: str | None, cpu: int, heavy: bool) -> None:
        spec = JobSpec(
            command=("true",), priority=prio, sequence_key=seqkey,
            resources=Resources(cpu, 10),
            retry=RetryPolicy(max_attempts=attempts, initial_delay_s=1.0, multiplier=2.0, max_delay_s=4.0),
            constraints=(Constraint("pool", "eq", "heavy"),) if heavy else (),
        )
        jid = f"j{self.n}"
        before = len(self.st.jobs)
        res = self._apply(SubmitJobs(self._rid(), self.now, ((jid, spec),), keys=(key,) if key else ()))
        if key and key in self.keys and self.keys[key] in self.st.jobs:
            old = self.st.jobs[self.keys[key]]
            if old.spec == spec:
                assert res.ok and res.value == (old.id,), res
            else:
                assert res.code is fsm.Code.INVALID
            assert len(self.st.jobs) == before  # idempotent: nothing new
            return
        assert res.ok and res.value == (jid,)
        if key:
            self.keys[key] = jid

    @rule(strategy=st.sampled_from(list(Strategy)))
    def place_and_assign(self, strategy: Strategy) -> None:
        runnable = queue.runnable(self.st, self.now, aging_rate=0.5)
        cands = [Candidate(n, self.st.allocated(n.id).as_resources())
                 for n in self.st.nodes.values() if n.alive]
        items = place(runnable, cands, strategy)
        if not items:
            return
        res = self._apply(Assign(self._rid(), self.now, tuple(items)))
        for item, out in zip(items, res.value, strict=True):
            assert isinstance(out, int), out  # a fresh plan is never refused
            self._check_in_order(item.job_id)

    def _check_in_order(self, jid: str) -> None:
        job = self.st.jobs[jid]
        if job.spec.sequence_key:
            older = [j for j in self.st.sequences[job.spec.sequence_key] if self.st.jobs[j].seq < job.seq]
            assert not older, f"{job.id} started before older {older[0]}"

    @rule(data=st.data())
    def random_assign(self, data) -> None:
        """Any job (mostly pending ones) to any node: the CAS must refuse what is wrong."""
        if not self.st.jobs:
            return
        pending = sorted(self.st.pending)
        pool = pending if pending and data.draw(st.booleans()) else sorted(self.st.jobs)
        jid = data.draw(st.sampled_from(pool))
        node = data.draw(st.sampled_from(NODES))
        old = self.st.jobs[jid]
        attempt = old.attempt + data.draw(st.sampled_from([0, 0, 0, -1, 1]))
        res = self._apply(Assign(self._rid(), self.now, (AssignItem(jid, node, attempt),)))
        if isinstance(res.value[0], int):
            assert old.state is JobState.PENDING and old.not_before <= self.now
            assert self.st.nodes[node].alive and self.st.nodes[node].eligible
            self._check_in_order(jid)

    @precondition(lambda self: any(j.state in ACTIVE_STATES for j in self.st.jobs.values()))
    @rule(data=st.data())
    def start(self, data) -> None:
        jid = data.draw(st.sampled_from(self._jobs(ACTIVE_STATES)))
        j = self.st.jobs[jid]
        self._apply(JobsStarted(self._rid(), self.now, (StartedItem(jid, j.attempt, j.fencing_token),)))

    @precondition(lambda self: any(j.state in ACTIVE_STATES for j in self.st.jobs.values()))
    @rule(data=st.data(), outcome=st.sampled_from(["ok", "fail", "timeout", "error"]), delay=st.floats(0, 5))
    def finish(self, data, outcome: str, delay: float) -> None:
        jid = data.draw(st.sampled_from(self._jobs(ACTIVE_STATES)))
        j = self.st.jobs[jid]
        item = FinishedItem(
            jid, j.attempt, j.fencing_token,
            {"ok": 0, "fail": 1, "timeout": -15, "error": None}[outcome],
            timed_out=outcome == "timeout", error="could not start" if outcome == "error" else "",
            retry_at=self.now + delay,
        )
        res = self._apply(JobsFinished(self._rid(), self.now, (item,)))
        assert res.value == ("",)
        new = self.st.jobs[jid]
        if j.state is JobState.CANCELLING:
            assert new.state in (JobState.CANCELLED, JobState.SUCCEEDED)
        elif j.evict_requested_at and outcome in ("fail", "error"):  # stopped by a drain
            assert new.state is JobState.PENDING and new.failures == j.failures
        elif outcome == "ok":
            assert new.state is JobState.SUCCEEDED
        else:
            assert new.failures == j.failures + 1
            p = j.spec.retry
            if p.max_attempts == 0:
                assert new.state is (JobState.TIMED_OUT if outcome == "timeout" else JobState.FAILED)
            elif new.failures < p.max_attempts:
                assert new.state is JobState.PENDING and new.not_before == self.now + delay
            else:
                assert new.state is JobState.DEAD

    @rule(data=st.data())
    def stale_report(self, data) -> None:
        if not self.st.jobs:
            return
        jid = data.draw(st.sampled_from(sorted(self.st.jobs)))
        j = self.st.jobs[jid]
        if j.attempt == 0:
            return
        before = state_digest(self.st.to_dict())  # canonical encoding, dedup table in order
        item = FinishedItem(jid, j.attempt - 1 if j.attempt > 1 else j.attempt, j.fencing_token - 1, 0)
        res = self._apply(JobsFinished(self._rid(), self.now, (item,)))
        assert res.value[0] != ""
        after = self.st.to_dict()
        after["dedup"] = after["dedup"][:-1]
        assert state_digest(after) == before

    @precondition(lambda self: bool(self.st.jobs))
    @rule(data=st.data())
    def cancel(self, data) -> None:
        jid = data.draw(st.sampled_from(sorted(self.st.jobs)))
        old = self.st.jobs[jid]
        res = self._apply(CancelJob(self._rid(), self.now, jid))
        if old.state in TERMINAL_STATES:
            assert res.code is fsm.Code.PRECONDITION
        elif old.state is JobState.PENDING:
            assert self.st.jobs[jid].state is JobState.CANCELLED
        else:
            assert self.st.jobs[jid].state is JobState.CANCELLING
            assert self.st.jobs[jid].node_id in self.st.usage  # capacity still held

    @precondition(lambda self: all(n.alive for n in self.st.nodes.values()))
    @rule(node=st.sampled_from(NODES))
    def node_down(self, node: str) -> None:
        failures = {j.id: j.failures for j in self.st.active_on(node)}
        self._apply(NodeDown(self._rid(), self.now, node, "test"))
        for jid, f in failures.items():
            assert self.st.jobs[jid].failures == f  # node loss does not use the budget
            assert self.st.jobs[jid].state in (JobState.PENDING, JobState.CANCELLED)

    @precondition(lambda self: not all(n.alive for n in self.st.nodes.values()))
    @rule()
    def node_up(self) -> None:
        node = next(n.id for n in self.st.nodes.values() if not n.alive)
        self._apply(NodeUp(self._rid(), self.now, Node(node, "g", "r", Resources(1000, 1000), LABELS[node])))

    @rule(node=st.sampled_from(NODES), after=st.sampled_from([0.0, 0.0, 1.0, 5.0]))
    def drain(self, node: str, after: float) -> None:
        """Drain with a deadline `after` seconds away (0: --force)."""
        before = {j.id: (j.failures, j.evict_requested_at) for j in self.st.active_on(node)}
        assert self._apply(DrainNode(self._rid(), self.now, node, self.now + after)).ok
        n = self.st.nodes[node]
        assert not n.eligible and n.drain_deadline == self.now + after
        for jid, (f, evict) in before.items():
            j = self.st.jobs[jid]
            assert j.failures == f and j.node_id == node  # nothing moves before it is stopped
            if after == 0 and j.state is not JobState.CANCELLING:
                assert j.evict_requested_at  # --force: being stopped now
            elif after:
                assert j.evict_requested_at == evict

    @rule()
    def drain_deadlines(self) -> None:
        """What the leader proposes when deadlines pass (fenced by token and generation)."""
        for nid, gen, attempts in nodes.due_drains(self.st, self.now):
            res = self._apply(DrainDeadline(self._rid(), self.now, nid, gen, attempts))
            assert res.ok and res.value == ("",) * len(attempts)
            assert all(self.st.jobs[j].evict_requested_at == self.now for j, _, _ in attempts)

    @rule(node=st.sampled_from(NODES), on=st.booleans())
    def eligibility(self, node: str, on: bool) -> None:
        assert self._apply(SetEligibility(self._rid(), self.now, node, on)).ok
        assert self.st.nodes[node].eligible is on
        if on:
            assert not self.st.nodes[node].drain_deadline

    @precondition(lambda self: any(j.state is JobState.DEAD for j in self.st.jobs.values()))
    @rule(data=st.data())
    def dlq_retry(self, data) -> None:
        jid = data.draw(st.sampled_from(self._jobs({JobState.DEAD})))
        assert self._apply(RetryDead(self._rid(), self.now, jid)).ok
        assert self.st.jobs[jid].state is JobState.PENDING and self.st.jobs[jid].failures == 0
        self.revived.add(jid)

    @precondition(lambda self: any(j.state is JobState.DEAD for j in self.st.jobs.values()))
    @rule()
    def dlq_purge(self) -> None:
        res = self._apply(PurgeDead(self._rid(), self.now))
        self.purged |= set(res.value)

    @rule(dt=st.sampled_from([0.1, 0.5, 1.0, 3.0]))
    def tick(self, dt: float) -> None:
        self.now += dt

    # ---- invariants -----------------------------------------------------------------

    @invariant()
    def placement_consistent(self) -> None:
        seen: Counter[str] = Counter()
        for nid, u in self.st.usage.items():
            cpu = mem = 0
            for jid in u.jobs:
                seen[jid] += 1
                j = self.st.jobs[jid]
                assert j.state in ACTIVE_STATES and j.node_id == nid
                cpu += j.spec.resources.cpu_millis
                mem += j.spec.resources.memory_mib
            assert (u.cpu_millis, u.memory_mib) == (cpu, mem)
            node = self.st.nodes[nid]
            assert cpu <= node.capacity.cpu_millis and mem <= node.capacity.memory_mib, nid
        active = {j.id for j in self.st.jobs.values() if j.state in ACTIVE_STATES}
        assert set(seen) == active and all(c == 1 for c in seen.values())  # one place each
        assert set(self.st.pending) == {j.id for j in self.st.jobs.values() if j.state is JobState.PENDING}
        assert +self.st.counts == Counter(j.state for j in self.st.jobs.values())

    @invariant()
    def monotonic_and_absorbing(self) -> None:
        for jid, j in self.st.jobs.items():
            if jid in self.prev:
                state, attempt, token = self.prev[jid]
                assert j.attempt >= attempt and j.fencing_token >= token
                if state in TERMINAL_STATES and jid not in self.revived:
                    assert j.state is state, f"{jid} left terminal {state} for {j.state}"
            if j.spec.constraints and j.state in ACTIVE_STATES:
                assert j.node_id == "n2"
        for jid in self.prev:
            if jid not in self.st.jobs:
                assert jid in self.purged
        self.prev = {jid: (j.state, j.attempt, j.fencing_token) for jid, j in self.st.jobs.items()}
        self.revived = set()
        tokens = [j.fencing_token for j in self.st.jobs.values() if j.attempt]
        assert len(tokens) == len(set(tokens)) and max(tokens, default=0) <= self.st.fencing

    @invariant()
    def sequences_one_at_a_time(self) -> None:
        per_key: Counter[str] = Counter()
        for j in self.st.jobs.values():
            if j.spec.sequence_key and j.state in ACTIVE_STATES:
                per_key[j.spec.sequence_key] += 1
        assert all(c == 1 for c in per_key.values()), per_key
        expect: dict[str, dict[str, int]] = {}
        for j in self.st.jobs.values():
            if j.spec.sequence_key and j.state not in TERMINAL_STATES:
                expect.setdefault(j.spec.sequence_key, {})[j.id] = j.seq
        assert self.st.sequences == expect

    @invariant()
    def snapshot_identity(self) -> None:
        assert fsm.ClusterState.from_dict(self.st.to_dict()) == self.st


SemanticsMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSemanticsMachine = pytest.mark.timeout(120)(SemanticsMachine.TestCase)
