"""Placement: which pending job goes to which node. Pure.

A small feasibility filter (alive, constraints on node labels, `fits`)
followed by a node choice (cluster.toml `strategy`): spread (least loaded),
binpack (most loaded that fits) or round-robin (the next feasible node after
the one used last), with a deterministic tie-break on node id. The order in
which jobs are considered is the queue order (see `queue`). The leader proposes the
result as one `Assign` command; apply re-checks every item with the same
`fits`, so a stale plan can never over-commit a node.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from raftsched.core.commands import AssignItem
from raftsched.core.constraints import satisfied
from raftsched.core.fit import fits
from raftsched.core.model import Job, Node, Resources


class Strategy(StrEnum):
    SPREAD = "spread"  # least-loaded node first: jobs spread over the cluster
    BINPACK = "binpack"  # most-loaded node that still fits: keeps nodes free
    ROUND_ROBIN = "round-robin"  # next feasible node after the last one used


@dataclass(slots=True)
class Candidate:
    node: Node
    allocated: Resources


def _load(c: Candidate) -> float:
    """Fraction of the node in use, the larger of CPU and memory."""
    cap = c.node.capacity
    cpu = c.allocated.cpu_millis / cap.cpu_millis if cap.cpu_millis else 1.0
    mem = c.allocated.memory_mib / cap.memory_mib if cap.memory_mib else 1.0
    return max(cpu, mem)


def place(
    pending: Iterable[Job],
    nodes: Sequence[Candidate],
    strategy: Strategy = Strategy.SPREAD,
    rr_after: str = "",
) -> list[AssignItem]:
    """Assign pending jobs (already in queue order) to nodes with room.

    A job that fits nowhere is skipped for this round; later jobs may still be
    placed (backfill). `rr_after`: for round-robin, the node used last.
    """
    cands = [
        Candidate(c.node, c.allocated) for c in sorted(nodes, key=lambda c: c.node.id) if c.node.alive
    ]
    out: list[AssignItem] = []
    if not cands:
        return out
    for job in pending:
        req = job.spec.resources
        feasible = [
            c for c in cands
            if fits(c.node.capacity, c.allocated, req)
            and (not job.spec.constraints or satisfied(job.spec.constraints, c.node.labels))
        ]
        if not feasible:
            continue
        if strategy is Strategy.ROUND_ROBIN:
            later = [c for c in feasible if c.node.id > rr_after]
            best = (later or feasible)[0]
            rr_after = best.node.id
        elif strategy is Strategy.BINPACK:
            best = max(feasible, key=lambda c: (_load(c), _neg_id(c)))
        else:
            best = min(feasible, key=lambda c: (_load(c), c.node.id))
        best.allocated = best.allocated + req
        out.append(AssignItem(job.id, best.node.id, job.attempt))
    return out


def _neg_id(c: Candidate) -> tuple[int, ...]:
    # max() with ties broken towards the smallest node id
    return tuple(-ord(ch) for ch in c.node.id)
