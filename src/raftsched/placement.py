"""Placement: which pending job goes to which node. Pure.

A small feasibility filter (alive, `fits`) followed by a score (spread or
bin-pack) with a deterministic tie-break on node id. The leader proposes the
result as one `Assign` command; apply re-checks every item with the same
`fits`, so a stale plan can never over-commit a node.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from raftsched.commands import AssignItem
from raftsched.fit import fits
from raftsched.model import Job, Node, Resources


class Strategy(StrEnum):
    SPREAD = "spread"  # least-loaded node first: jobs spread over the cluster
    BINPACK = "binpack"  # most-loaded node that still fits: keeps nodes free


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
) -> list[AssignItem]:
    """Assign pending jobs (already in priority order) to nodes with room.

    A job that fits nowhere is skipped for this round; later jobs may still be
    placed (backfill).
    """
    cands = [
        Candidate(c.node, c.allocated) for c in sorted(nodes, key=lambda c: c.node.id) if c.node.alive
    ]
    out: list[AssignItem] = []
    if not cands:
        return out
    for job in pending:
        req = job.spec.resources
        feasible = [c for c in cands if fits(c.node.capacity, c.allocated, req)]
        if not feasible:
            continue
        if strategy is Strategy.BINPACK:
            best = max(feasible, key=lambda c: (_load(c), _neg_id(c)))
        else:
            best = min(feasible, key=lambda c: (_load(c), c.node.id))
        best.allocated = best.allocated + req
        out.append(AssignItem(job.id, best.node.id, job.attempt))
    return out


def _neg_id(c: Candidate) -> tuple[int, ...]:
    # max() with ties broken towards the smallest node id
    return tuple(-ord(ch) for ch in c.node.id)
