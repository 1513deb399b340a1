"""Node handlers of the replicated state machine: up, down, drain, eligibility. Pure.

A node that is not `eligible` gets no new placements (`placement.node_filter`, and so
the Assign compare-and-swap and `explain`); what runs there is untouched. A drain
(issue 15) makes the node ineligible and gives its running attempts until a deadline
the leader stamped into the command: then the leader proposes `DrainDeadline`, which
marks the attempts still there (fenced by attempt, fencing token and the node's
generation) as being stopped. The node kills them when its next heartbeat lists them
as revoked (`liveness.revoked`), and its report returns each to PENDING through
`jobs.lose_attempt`: a lost attempt, outside the retry budget. The capacity stays held
until then, so the attempt that replaces it never overlaps it. An attempt that ends
on its own before the kill (success, its own timeout) keeps that outcome.

`HANDLERS` at the bottom is merged into the dispatch table by `apply`.
"""

from __future__ import annotations

from collections.abc import Mapping

from raftsched.core.commands import FinishedItem, NodeDown, NodeUp
from raftsched.core.evolve import replace
from raftsched.core.jobs import lose_attempt
from raftsched.core.model import Job, JobState, Node
from raftsched.core.nodeops import DrainDeadline, DrainNode, SetEligibility
from raftsched.core.nodeupdate import with_overrides
from raftsched.core.state import ClusterState, Code, Handler, Result, check_report, ok

STOPPABLE = (JobState.ASSIGNED, JobState.RUNNING)


def scheduling(node: Node, active: int) -> str:
    """eligible | ineligible | draining | drained (a drain with none of the node's
    `active` jobs, assigned, running or being cancelled, left)."""
    if node.drain_deadline:
        return "draining" if active else "drained"
    return "eligible" if node.eligible else "ineligible"


def _not_registered(node_id: str) -> Result:
    return Result(Code.NOT_FOUND, None, f"node {node_id} is not registered")


def _evict(state: ClusterState, job: Job, ts: float) -> None:
    state.put(job, replace(
        job, evict_requested_at=ts,
        reason=(f"node {job.node_id} is drained: its drain deadline passed; attempt "
                f"{job.attempt} is being stopped and will be requeued")), ts)


# ---- up and down ----------------------------------------------------------------------


def _apply_node_down(state: ClusterState, cmd: NodeDown) -> Result:
    node = state.nodes.get(cmd.node_id)
    if node is None:
        return _not_registered(cmd.node_id)
    state.nodes[node.id] = replace(node, alive=False, since=cmd.ts, generation=node.generation + 1)
    returned: list[str] = []
    for job in state.active_on(node.id):
        if lose_attempt(state, job, cmd.ts, f"node {node.id} down: {cmd.reason}"):
            returned.append(job.id)
    return ok(tuple(returned))


def _apply_node_up(state: ClusterState, cmd: NodeUp) -> Result:
    old = state.nodes.get(cmd.node.id)
    rejoined = old is None or not old.alive or old.incarnation != cmd.node.incarnation
    since = cmd.ts if rejoined or old is None else old.since
    generation = (old.generation if old else 0) + (1 if rejoined else 0)
    # eligibility, drain and runtime changes (labels, capacity) are the operator's, not
    # the node's: they survive a restart
    state.nodes[cmd.node.id] = replace(
        with_overrides(cmd.node, old) if old else cmd.node, alive=True, since=since, generation=generation,
        eligible=old.eligible if old else True, drain_deadline=old.drain_deadline if old else 0.0)
    state._usage(cmd.node.id)
    returned: list[str] = []
    if old is not None and old.incarnation != cmd.node.incarnation:
        # A new process: whatever the old one ran died with it (its watchdog saw to that).
        for job in state.active_on(old.id):
            if lose_attempt(state, job, cmd.ts, f"node {old.id} restarted"):
                returned.append(job.id)
    return ok(tuple(returned))


# ---- drain and eligibility ------------------------------------------------------------


def _apply_drain(state: ClusterState, cmd: DrainNode) -> Result:
    """Value: the ids of the jobs whose attempts are stopped now (deadline <= ts)."""
    node = state.nodes.get(cmd.node_id)
    if node is None:
        return _not_registered(cmd.node_id)
    if cmd.deadline <= 0:
        return Result(Code.INVALID, None, f"drain deadline {cmd.deadline!r}: must be a time")
    state.nodes[node.id] = replace(node, eligible=False, drain_deadline=cmd.deadline)
    stopped: list[str] = []
    if cmd.deadline <= cmd.ts:
        for job in state.active_on(node.id):
            if job.state in STOPPABLE and not job.evict_requested_at:
                _evict(state, job, cmd.ts)
                stopped.append(job.id)
    return ok(tuple(stopped))


def _apply_eligibility(state: ClusterState, cmd: SetEligibility) -> Result:
    node = state.nodes.get(cmd.node_id)
    if node is None:
        return _not_registered(cmd.node_id)
    if cmd.eligible:
        state.nodes[node.id] = replace(node, eligible=True, drain_deadline=0.0)
    else:
        state.nodes[node.id] = replace(node, eligible=False)
    return ok(None)


def _apply_drain_deadline(state: ClusterState, cmd: DrainDeadline) -> Result:
    """Value: per attempt, "" if it is being stopped, else why not (stale, gone)."""
    node = state.nodes.get(cmd.node_id)
    if node is None:
        return _not_registered(cmd.node_id)
    if node.generation != cmd.generation:
        return Result(Code.PRECONDITION, None,
                      f"node {node.id} went down or restarted since; its attempts were requeued")
    if not node.drain_deadline or node.drain_deadline > cmd.ts:
        return Result(Code.PRECONDITION, None, f"node {node.id} has no drain deadline that passed")
    out: list[str] = []
    for job_id, attempt, token in cmd.attempts:
        job = check_report(state, job_id, attempt, token)
        if isinstance(job, str):
            out.append(job)
        elif job.node_id != node.id or job.state not in STOPPABLE:
            out.append(f"job {job_id} is {job.state.value} on node {job.node_id or '-'}")
        else:
            if not job.evict_requested_at:
                _evict(state, job, cmd.ts)
            out.append("")
    return ok(tuple(out))


# ---- leader decisions (pure functions of the state and the leader's clock) -------------


def due_drains(state: ClusterState, now: float) -> list[tuple[str, int, tuple[tuple[str, int, int], ...]]]:
    """(node, generation, attempts to stop) of every alive node whose drain deadline has
    passed and that still has attempts not yet being stopped. Caller holds the lock."""
    out = []
    for node in state.nodes.values():
        if not node.drain_deadline or node.drain_deadline > now or not node.alive:
            continue
        todo = tuple((j.id, j.attempt, j.fencing_token) for j in state.active_on(node.id)
                     if j.state in STOPPABLE and not j.evict_requested_at)
        if todo:
            out.append((node.id, node.generation, todo))
    return out


def evicted_gone(state: ClusterState, reported: Mapping[str, set[tuple[str, int]]],
                 heard_at: Mapping[str, float], slack: float) -> list[FinishedItem]:
    """Attempts being stopped for a drain that their node no longer runs (the start never
    arrived, or the kill's report was lost): a heartbeat well after the stop does not
    list them. Reported lost: requeued outside the retry budget. Only nodes heard from
    by this leader count (`reported` is emptied on election; `heard_at` is not)."""
    out = []
    for nid in sorted(n for n in reported if n in heard_at and n in state.nodes):
        for j in state.active_on(nid):
            if (j.evict_requested_at and j.state in STOPPABLE
                    and heard_at[nid] > j.evict_requested_at + slack
                    and (j.id, j.attempt) not in reported[nid]):
                out.append(FinishedItem(j.id, j.attempt, j.fencing_token, None, lost=True,
                                        error="not running on its node when its drain stopped it"))
    return out


HANDLERS: dict[type, Handler] = {
    NodeDown: _apply_node_down,
    NodeUp: _apply_node_up,
    DrainNode: _apply_drain,
    SetEligibility: _apply_eligibility,
    DrainDeadline: _apply_drain_deadline,
}
