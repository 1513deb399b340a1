"""Placement: which pending job goes to which node, and why. Pure.

Feasibility filters, then ranking (Nomad's feasibility checkers and rankers,
`scheduler/feasible/stack.go`):

  filters, in order, the first that fails names the node's verdict:
    down    the node is not alive
    ineligible  the node takes no new jobs: draining, or made ineligible (core.nodes)
    pool    the node is dedicated to a pool the job does not ask for
    labels  a constraint (the job's `pool` included) does not hold on its labels
    cpu     requested CPU does not fit in what is left (e.g. cpu 1800+500m > 2000m)
    memory  requested memory does not fit in what is left
  ranking among the feasible nodes (cluster.toml `strategy`), best first:
    1. not the node where the job's previous attempt failed (retries move on)
    2. spread: least loaded; binpack: most loaded; round-robin: the next node
       (by id, cyclically) after the one assigned to last
    3. least recently assigned to (the fencing token of its last assignment,
       replicated state), so equally free nodes take turns
    4. node id

`check_node` is also the compare-and-swap predicate of `Assign` at apply time
(`core.jobs`), and `core.explain` shows the same verdicts: the decision, the
CAS and the explanation cannot disagree. Tie-break state comes from the
replicated state (`recency`), never from a clock or a leader-local counter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from raftsched.core import constraints as cons
from raftsched.core.commands import AssignItem
from raftsched.core.fit import fits, shortfall
from raftsched.core.model import Constraint, Job, JobSpec, Node, Resources
from raftsched.core.state import ClusterState, state_extension


class Strategy(StrEnum):
    SPREAD = "spread"  # least-loaded node first: jobs spread over the cluster
    BINPACK = "binpack"  # most-loaded node that still fits: keeps nodes free
    ROUND_ROBIN = "round-robin"  # next feasible node after the last one used


class Check(StrEnum):
    OK = "ok"
    DOWN = "down"
    INELIGIBLE = "ineligible"
    POOL = "pool"
    LABELS = "labels"
    CPU = "cpu"
    MEMORY = "memory"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One node's answer for one job: the first filter that failed, or OK."""

    node_id: str
    check: Check
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.check is Check.OK

    def describe(self) -> str:
        return f"{self.node_id}: {self.detail or self.check.value}"


@dataclass(slots=True)
class Candidate:
    node: Node
    allocated: Resources
    last: int = 0  # fencing token of the last assignment to this node; 0 = never


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a job goes (node_id, "" = nowhere this round) and every node's verdict."""

    job_id: str
    node_id: str
    verdicts: tuple[Verdict, ...]
    ranked: tuple[str, ...] = ()  # feasible nodes, best first
    avoided: str = ""  # node of the failed previous attempt, ranked last


@dataclass(slots=True)
class Plan:
    items: list[AssignItem] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


# ---- replicated tie-break state -----------------------------------------------------------

RECENCY = "last_assigned"  # node id -> fencing token of its last assignment
state_extension(RECENCY, dict, lambda d: dict(sorted(d.items())), dict)


def recency(state: ClusterState) -> dict[str, int]:
    return state.ext[RECENCY]  # type: ignore[no-any-return]


def note_assigned(state: ClusterState, node_id: str, token: int) -> None:
    """Called by apply for every accepted assignment (on every replica)."""
    recency(state)[node_id] = token


def candidates(state: ClusterState) -> list[Candidate]:
    """Every registered node with its allocation and recency, as placement sees it, by id."""
    last = recency(state)
    return [Candidate(n, state.allocated(n.id).as_resources(), last.get(n.id, 0))
            for n in sorted(state.nodes.values(), key=lambda n: n.id)]


# ---- filters ----------------------------------------------------------------------------------


def node_filter(spec: JobSpec, node: Node) -> Verdict:
    """The filters that do not depend on load, in order (down, ineligible, pool, labels): the first
    that fails, or OK. Depends only on the spec and the node: cached per spec in a round."""
    if not node.alive:
        return Verdict(node.id, Check.DOWN, "down")
    if not node.eligible:
        return Verdict(node.id, Check.INELIGIBLE,
                       "draining: no new jobs" if node.drain_deadline else "ineligible: no new jobs")
    why = cons.pool_refusal(spec, node.dedicated)
    if why:
        return Verdict(node.id, Check.POOL, why)
    why = cons.unmet_labels(spec, dict(node.labels))
    if why:
        return Verdict(node.id, Check.LABELS, why)
    return Verdict(node.id, Check.OK)


def capacity_verdict(spec: JobSpec, node: Node, allocated: Resources) -> Verdict:
    """The cpu and memory filters (`fit.shortfall`, the negation of `fit.fits`)."""
    short = shortfall(node.capacity, allocated, spec.resources)
    if short:
        return Verdict(node.id, Check(short[0]), short[1])
    return Verdict(node.id, Check.OK)


def check_node(spec: JobSpec, node: Node, allocated: Resources) -> Verdict:
    """Every filter, in order: the first that fails, or OK. Also the Assign CAS predicate."""
    v = node_filter(spec, node)
    return capacity_verdict(spec, node, allocated) if v.ok else v


def refusal(job_id: str, v: Verdict) -> str:
    """The compare-and-swap's message for a failed verdict (apply refuses the Assign item)."""
    if v.check is Check.DOWN:
        return f"node {v.node_id} is down"
    if v.check is Check.INELIGIBLE:
        return f"node {v.node_id} is {v.detail.split(':')[0]}"
    if v.check is Check.POOL:
        return f"node {v.node_id} is {v.detail}"
    if v.check is Check.LABELS:
        return f"node {v.node_id} {v.detail}"
    return f"job {job_id} does not fit on node {v.node_id}: {v.detail}"


def avoid_node(job: Job) -> str:
    """The node where the job's previous attempt failed or was lost, if any."""
    if job.attempts:
        last = job.attempts[-1]
        if last.outcome in ("FAILED", "TIMED_OUT", "LOST", "OOM_KILLED"):
            return last.node_id
    return ""


# ---- ranking ----------------------------------------------------------------------------------


def _load(c: Candidate) -> float:
    """Fraction of the node in use, the larger of CPU and memory."""
    cap = c.node.capacity
    cpu = c.allocated.cpu_millis / cap.cpu_millis if cap.cpu_millis else 1.0
    mem = c.allocated.memory_mib / cap.memory_mib if cap.memory_mib else 1.0
    return max(cpu, mem)


RankKey = Callable[[Candidate], tuple[Any, ...]]


def rank_key(strategy: Strategy, avoid: str = "", after: str = "") -> RankKey:
    """Sort key of feasible candidates, smallest best. `avoid`: node of the failed previous
    attempt; `after`: for round-robin, the node assigned to last."""
    if strategy is Strategy.ROUND_ROBIN:
        return lambda c: (c.node.id == avoid, c.node.id <= after, c.node.id)
    sign = -1.0 if strategy is Strategy.BINPACK else 1.0
    return lambda c: (c.node.id == avoid, sign * _load(c), c.last, c.node.id)


def rank(feasible: Sequence[Candidate], strategy: Strategy, avoid: str = "",
         after: str = "") -> list[Candidate]:
    """Feasible candidates, best first."""
    return sorted(feasible, key=rank_key(strategy, avoid, after))


def _after(cands: Sequence[Candidate]) -> str:
    """The node assigned to last (round-robin continues after it); "" if none ever was."""
    latest = max(cands, key=lambda c: (c.last, c.node.id), default=None)
    return latest.node.id if latest is not None and latest.last else ""


def _feasible(job: Job, open_to: Sequence[Candidate]) -> list[Candidate]:
    """Of the candidates whose `node_filter` is ok, those the job `fits` on."""
    req = job.spec.resources
    return [c for c in open_to if fits(c.node.capacity, c.allocated, req)]


def _open(cands: Sequence[Candidate], statics: Sequence[Verdict]) -> list[Candidate]:
    return [c for c, s in zip(cands, statics, strict=True) if s.ok]


def _decision(job: Job, cands: Sequence[Candidate], statics: Sequence[Verdict],
              ranked: Sequence[Candidate]) -> Decision:
    verdicts = tuple(capacity_verdict(job.spec, c.node, c.allocated) if s.ok else s
                     for c, s in zip(cands, statics, strict=True))
    return Decision(job.id, ranked[0].node.id if ranked else "", verdicts,
                    tuple(c.node.id for c in ranked), avoid_node(job))


def decide(job: Job, cands: Sequence[Candidate],
           strategy: Strategy = Strategy.SPREAD) -> Decision:
    """One job against every candidate (in the given order): verdicts, ranking, choice."""
    statics = [node_filter(job.spec, c.node) for c in cands]
    ranked = rank(_feasible(job, _open(cands, statics)), strategy, avoid_node(job), _after(cands))
    return _decision(job, cands, statics, ranked)


def place(pending: Iterable[Job], nodes: Sequence[Candidate],
          strategy: Strategy = Strategy.SPREAD) -> list[AssignItem]:
    """The assignments of `plan` (what the leader proposes as one Assign)."""
    return plan(pending, nodes, strategy).items


def plan(pending: Iterable[Job], nodes: Sequence[Candidate], strategy: Strategy = Strategy.SPREAD,
         explain: bool = False) -> Plan:
    """Assign pending jobs (already in queue order) to nodes with room.

    A job that fits nowhere is skipped for this round; later jobs may still be
    placed (backfill). Each assignment counts against its node's room and
    recency for the jobs after it, as apply will record it. With `explain`, a
    Decision (every node's verdict) per job; the leader's rounds skip that text.
    """
    cands = [Candidate(c.node, c.allocated, c.last) for c in sorted(nodes, key=lambda c: c.node.id)]
    out = Plan()
    token = max((c.last for c in cands), default=0)
    after = _after(cands)
    # node_filter depends on the spec only through its pool and constraints
    statics_of: dict[tuple[str, tuple[Constraint, ...]], tuple[list[Verdict], list[Candidate]]] = {}
    for job in pending:
        key = (job.spec.pool, job.spec.constraints)
        cached = statics_of.get(key)
        if cached is None:
            statics = [node_filter(job.spec, c.node) for c in cands]
            cached = statics_of[key] = (statics, _open(cands, statics))
        statics, open_to = cached
        feasible = _feasible(job, open_to)
        if explain:
            ranked = rank(feasible, strategy, avoid_node(job), after)
            out.decisions.append(_decision(job, cands, statics, ranked))
        if not feasible:
            continue
        best = feasible[0] if len(feasible) == 1 else min(
            feasible, key=rank_key(strategy, avoid_node(job), after))
        token += 1
        best.allocated = best.allocated + job.spec.resources
        best.last = token
        after = best.node.id
        out.items.append(AssignItem(job.id, best.node.id, job.attempt))
    return out
