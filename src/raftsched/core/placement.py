"""Placement: which pending job goes to which node, and why. Pure.

Feasibility filters, then ranking (Nomad's feasibility checkers and rankers,
`scheduler/feasible/stack.go`):

  filters, in order, the first that fails names the node's verdict:
    down    the node is not alive
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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from raftsched.core import constraints as cons
from raftsched.core.commands import AssignItem
from raftsched.core.fit import shortfall
from raftsched.core.model import Job, JobSpec, Node, Resources
from raftsched.core.state import ClusterState, state_extension


class Strategy(StrEnum):
    SPREAD = "spread"  # least-loaded node first: jobs spread over the cluster
    BINPACK = "binpack"  # most-loaded node that still fits: keeps nodes free
    ROUND_ROBIN = "round-robin"  # next feasible node after the last one used


class Check(StrEnum):
    OK = "ok"
    DOWN = "down"
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


def check_node(spec: JobSpec, node: Node, allocated: Resources) -> Verdict:
    """The feasibility filters, in order: the first that fails, or OK."""
    if not node.alive:
        return Verdict(node.id, Check.DOWN, "down")
    why = cons.pool_refusal(spec, node.dedicated)
    if why:
        return Verdict(node.id, Check.POOL, why)
    why = cons.unmet_labels(spec, dict(node.labels))
    if why:
        return Verdict(node.id, Check.LABELS, why)
    short = shortfall(node.capacity, allocated, spec.resources)
    if short:
        return Verdict(node.id, Check(short[0]), short[1])
    return Verdict(node.id, Check.OK)


def refusal(job_id: str, v: Verdict) -> str:
    """The compare-and-swap's message for a failed verdict (apply refuses the Assign item)."""
    if v.check is Check.DOWN:
        return f"node {v.node_id} is down"
    if v.check is Check.POOL:
        return f"node {v.node_id} is {v.detail}"
    if v.check is Check.LABELS:
        return f"node {v.node_id} {v.detail}"
    return f"job {job_id} does not fit on node {v.node_id}: {v.detail}"


def static_verdict(spec: JobSpec, node: Node) -> Verdict:
    """The filters on an empty, alive node: could this node ever run the job?"""
    return check_node(spec, Node(node.id, "", "", node.capacity, node.labels,
                                 dedicated=node.dedicated), Resources(0, 0))


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


def rank(feasible: Sequence[Candidate], strategy: Strategy, avoid: str = "",
         after: str = "") -> list[Candidate]:
    """Feasible candidates, best first. `after`: round-robin, the node assigned to last."""
    if strategy is Strategy.ROUND_ROBIN:
        return sorted(feasible, key=lambda c: (c.node.id == avoid, c.node.id <= after,
                                               c.node.id))
    sign = -1.0 if strategy is Strategy.BINPACK else 1.0
    return sorted(feasible, key=lambda c: (c.node.id == avoid, sign * _load(c), c.last,
                                           c.node.id))


def decide(job: Job, cands: Sequence[Candidate],
           strategy: Strategy = Strategy.SPREAD) -> tuple[Decision, Candidate | None]:
    """One job against every candidate: verdicts, ranking and the choice."""
    latest = max(cands, key=lambda c: (c.last, c.node.id), default=None)
    after = latest.node.id if latest is not None and latest.last else ""
    verdicts = tuple(check_node(job.spec, c.node, c.allocated) for c in cands)
    feasible = [c for c, v in zip(cands, verdicts, strict=True) if v.ok]
    avoid = avoid_node(job)
    ranked = rank(feasible, strategy, avoid, after)
    best = ranked[0] if ranked else None
    return Decision(job.id, best.node.id if best else "", verdicts,
                    tuple(c.node.id for c in ranked), avoid), best


def place(pending: Iterable[Job], nodes: Sequence[Candidate],
          strategy: Strategy = Strategy.SPREAD) -> list[AssignItem]:
    """The assignments of `plan` (what the leader proposes as one Assign)."""
    return plan(pending, nodes, strategy).items


def plan(pending: Iterable[Job], nodes: Sequence[Candidate],
         strategy: Strategy = Strategy.SPREAD) -> Plan:
    """Assign pending jobs (already in queue order) to nodes with room.

    A job that fits nowhere is skipped for this round; later jobs may still be
    placed (backfill). Each assignment counts against its node's room and
    recency for the jobs after it, as apply will record it.
    """
    cands = [Candidate(c.node, c.allocated, c.last) for c in sorted(nodes, key=lambda c: c.node.id)]
    out = Plan()
    token = max((c.last for c in cands), default=0)
    for job in pending:
        decision, best = decide(job, cands, strategy)
        out.decisions.append(decision)
        if best is None:
            continue
        token += 1
        best.allocated = best.allocated + job.spec.resources
        best.last = token
        out.items.append(AssignItem(job.id, best.node.id, job.attempt))
    return out

