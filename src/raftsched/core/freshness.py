"""Freshness of a read (issue 20): the metadata every public read carries, how a node
judges itself stale, and how a client reads it back. Pure: the server side
(`rpc/freshness.py`) supplies the Raft position, the client side the metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NODE = "x-raftsched-node"
APPLIED_INDEX = "x-raftsched-applied-index"
LEADER = "x-raftsched-leader"
STALE = "x-raftsched-stale"
CONTACT_AGE = "x-raftsched-contact-age"


@dataclass(frozen=True)
class Fresh:
    node: str
    applied_index: int
    leader: str
    stale: bool
    contact_age: float | None  # seconds since the leader (majority) was last heard

    def metadata(self) -> tuple[tuple[str, str], ...]:
        age = "" if self.contact_age is None else f"{self.contact_age:.3f}"
        return ((NODE, self.node), (APPLIED_INDEX, str(self.applied_index)), (LEADER, self.leader),
                (STALE, "1" if self.stale else "0"), (CONTACT_AGE, age))


def judge(node: str, applied: int, leader: str, contact_age: float | None, timeout: float) -> Fresh:
    """Stale unless the leader (a follower's) or a majority (a leader's) was heard
    within `timeout`."""
    stale = contact_age is None or not contact_age < timeout
    return Fresh(node, applied, leader, stale, contact_age)


def parse(metadata: Any) -> dict[str, Any] | None:
    """The freshness a response's metadata carries (client side); None if it has none."""
    md = {k: (v if isinstance(v, str) else v.decode(errors="replace")) for k, v in metadata or ()}
    if STALE not in md:
        return None
    try:
        applied = int(md.get(APPLIED_INDEX, "0"))
    except ValueError:
        applied = 0
    try:
        age: float | None = float(md[CONTACT_AGE]) if md.get(CONTACT_AGE) else None
    except ValueError:
        age = None
    return {"node": md.get(NODE, ""), "applied_index": applied, "leader": md.get(LEADER, ""), "stale": md[STALE] == "1",
            "contact_age": age}


def stale_warning(f: dict[str, Any]) -> str | None:
    """The warning a client prints for an answer that says stale (None: fresh)."""
    if not f.get("stale"):
        return None
    node, age = f.get("node") or "the node", f.get("contact_age")
    since = "since it started" if age is None else f"for {age:.1f} s"
    who = "a majority" if f.get("leader") == node else "a leader"
    return (f"warning: {node} has not heard from {who} {since}; this answer may be stale "
            "(use --consistent)")

