"""Invariants of the replicated job state, checked entry by entry (`raftsched audit`).

The auditor keeps its own shadow of every job's (state, attempt, token, node) and
compares each version `apply` writes against it, so a bug in `apply` (or a log that
an older, buggy version wrote) shows up as the first entry that breaks a rule:

- a job enters ASSIGNED only from PENDING: it never has two live attempts, and a
  live attempt is counted on exactly one node;
- fencing tokens never go down, and a new attempt has a larger token;
- terminal states are absorbing (the one exit: RetryDead moves DEAD to PENDING);
- no job is placed on a node beyond its capacity (the capacity an operator lowered at
  runtime may be below what already runs there: that is checked only when a job arrives);
- every submission the log acknowledged exists until it ended and was collected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raftsched.core.commands import RetryDead, SubmitJobs
from raftsched.core.model import TERMINAL_STATES, Job, JobState
from raftsched.core.state import ClusterState, Result

LIVE = frozenset({JobState.ASSIGNED, JobState.RUNNING, JobState.CANCELLING})


@dataclass(frozen=True, slots=True)
class Shadow:
    state: JobState
    attempt: int
    token: int
    node: str


def _shadow(j: Job) -> Shadow:
    return Shadow(j.state, j.attempt, j.fencing_token, j.node_id)


@dataclass
class Auditor:
    state: ClusterState
    jobs: dict[str, Shadow] = field(default_factory=dict)
    acknowledged: set[str] = field(default_factory=set)
    entries: int = 0
    commands: int = 0

    def __post_init__(self) -> None:
        self.jobs = {jid: _shadow(j) for jid, j in self.state.jobs.items()}

    def check(self, cmd: object, res: Result, changes: list[Job]) -> str | None:
        """After `apply(state, cmd)` returned `res` and wrote `changes`: the first broken
        rule, or None."""
        self.commands += 1
        touched: set[str] = set()
        arrived: set[str] = set()
        for new in changes:
            old = self.jobs.get(new.id)
            why = _transition(old, new, cmd) if old is not None else None
            if why:
                return f"job {new.id}: {why}"
            self.jobs[new.id] = _shadow(new)
            if new.node_id:
                touched.add(new.node_id)
                if new.state in LIVE and (old is None or old.state not in LIVE or old.node != new.node_id):
                    arrived.add(new.node_id)
            if old is not None and old.node:
                touched.add(old.node)
        for nid in touched:
            why = self._node(nid, nid in arrived)
            if why:
                return why
        if isinstance(cmd, SubmitJobs) and res.ok:
            self.acknowledged.update(res.value)
        gone = ([jid for jid in self.jobs if jid not in self.state.jobs]
                if len(self.jobs) > len(self.state.jobs) else [])
        for jid in gone:
            if self.jobs[jid].state not in TERMINAL_STATES:
                return f"job {jid} disappeared while {self.jobs[jid].state.value}"
            del self.jobs[jid]
            self.acknowledged.discard(jid)
        return None

    def _node(self, nid: str, arrived: bool) -> str | None:
        node = self.state.nodes.get(nid)
        use = self.state.usage.get(nid)
        if node is None or use is None:
            return None
        if (arrived and use.cpu_millis > node.capacity.cpu_millis) or use.memory_mib > node.capacity.memory_mib:
            return (f"node {nid} over capacity: {use.cpu_millis}m/{use.memory_mib}MiB requested of "
                    f"{node.capacity.cpu_millis}m/{node.capacity.memory_mib}MiB")
        for jid in use.jobs:
            j = self.state.jobs.get(jid)
            if j is None or j.node_id != nid or j.state not in LIVE:
                return f"node {nid} counts job {jid}, which is not live there"
        return None

    def missing(self) -> list[str]:
        """Acknowledged submissions absent from the final state (not collected after ending)."""
        return sorted(j for j in self.acknowledged if j not in self.state.jobs)


def _transition(old: Shadow, new: Job, cmd: object) -> str | None:
    if new.fencing_token < old.token:
        return f"fencing token went down from {old.token} to {new.fencing_token}"
    if new.attempt > old.attempt and old.token and new.fencing_token <= old.token:
        return f"attempt {new.attempt} did not get a larger fencing token than {old.token}"
    retried = old.state is JobState.DEAD and new.state is JobState.PENDING and isinstance(cmd, RetryDead)
    if old.state in TERMINAL_STATES and new.state is not old.state and not retried:
        return f"left terminal state {old.state.value} for {new.state.value}"
    if new.state is JobState.ASSIGNED and old.state is not JobState.ASSIGNED \
            and old.state is not JobState.PENDING:
        return f"assigned while {old.state.value} (attempt {old.attempt} on {old.node or '-'})"
    if new.state is JobState.ASSIGNED and old.state is JobState.ASSIGNED and \
            (new.attempt, new.node_id) != (old.attempt, old.node):
        return (f"assigned again (attempt {new.attempt} on {new.node_id}) while attempt "
                f"{old.attempt} on {old.node} is live")
    return None
