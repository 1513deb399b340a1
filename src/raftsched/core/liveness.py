"""Leader liveness decisions: pure functions of (state, last heard, now).

Heartbeats are leader-local soft state (monotonic times of the last heartbeat of
each node); only "node down" goes through Raft. These functions decide, and the
leader loop (node/leader.py) proposes what they return.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from raftsched.core.model import JobState, Node
from raftsched.core.nodeupdate import with_overrides
from raftsched.core.state import ClusterState

Attempt = tuple[str, int, int]  # (job id, attempt, fencing token)


def rearm(state: ClusterState, now: float) -> dict[str, float]:
    """On election: count every node as heard from now, so nobody is declared down
    before a full TTL under the new leader. That is enough for fencing: any lease an
    earlier leader granted was granted before this election and is shorter than the TTL."""
    return {nid: now for nid in state.nodes}


def down_nodes(state: ClusterState, last_seen: Mapping[str, float], now: float,
               ttl: float) -> tuple[list[tuple[str, str]], list[str]]:
    """(nodes to declare down with the reason, alive nodes this leader has not heard of
    yet: the caller starts their clock at `now`)."""
    down: list[tuple[str, str]] = []
    unseen: list[str] = []
    for node in state.nodes.values():
        if not node.alive:
            continue
        if node.id not in last_seen:
            unseen.append(node.id)
        elif why := silence(last_seen, node.id, now, ttl):
            down.append((node.id, why))
    return down, unseen


def silence(last_seen: Mapping[str, float], node_id: str, now: float, ttl: float) -> str:
    """Why the node counts as down at `now`: not heard from for more than `ttl`; ""
    if heard from within it (or not heard of at all: its clock has not started)."""
    seen = last_seen.get(node_id)
    if seen is None or now - seen <= ttl:
        return ""
    return f"no heartbeat for {now - seen:.2f}s (ttl {ttl:g}s)"


def credit_stall(last_seen: Mapping[str, float], stall: float, now: float) -> dict[str, float]:
    """The leader did not run for `stall` seconds (its process or loop was stalled): it
    could not hear heartbeats then, so that time counts as nobody's silence. Times only
    move later (a NodeDown comes later, never earlier: the lease fence holds)."""
    return {nid: min(now, t + stall) for nid, t in last_seen.items()}


def lease_grant(state: ClusterState, node_id: str, downing: Iterable[str], confirmed: bool,
                lease: float) -> tuple[float, int]:
    """(lease seconds, generation) for a node that just heartbeated. No lease unless
    the committed state has it alive, no NodeDown for it is in flight, and the leader
    heard from a majority recently (`confirmed`): a node declared down must not keep
    (or start) jobs that are being reassigned."""
    node = state.nodes.get(node_id)
    if node is None or not node.alive or node_id in downing or not confirmed:
        return 0.0, node.generation if node else 0
    return lease, node.generation


def needs_node_up(state: ClusterState, node: Node) -> bool:
    """A heartbeat from a node the state does not know, has down, or knows differently."""
    known = state.nodes.get(node.id)
    return (known is None or not known.alive
            or describe(known) != describe(with_overrides(node, known)))


def revoked(state: ClusterState, node_id: str, running: Iterable[Attempt]) -> list[Attempt]:
    """Attempts a node reports running that it must kill: their job is no longer
    ASSIGNED/RUNNING there under that attempt and token, or is being stopped by a
    drain. This is also how a cancel of a running job (state CANCELLING) reaches its node."""
    out = []
    for job_id, attempt, token in running:
        job = state.jobs.get(job_id)
        if (
            job is None
            or job.node_id != node_id
            or job.attempt != attempt
            or job.fencing_token != token
            or job.state not in (JobState.ASSIGNED, JobState.RUNNING)
            or job.evict_requested_at  # its node's drain deadline passed (core.nodes)
        ):
            out.append((job_id, attempt, token))
    return out


def describe(n: Node) -> tuple:
    return (n.grpc_address, n.raft_address, n.capacity, n.labels, n.incarnation)
