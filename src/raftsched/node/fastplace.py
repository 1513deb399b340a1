"""Placement in the submission's own Raft entry (issue 13: one commit round less from
submit to start).

When a small submission reaches the leader and nothing else waits in the queue, the
leader places its jobs right away and proposes the Assign together with the
SubmitJobs: both land in one entry (Proposer.propose_all), so the jobs are PENDING
and ASSIGNED in the same apply, and the starts go out as soon as it commits. Before,
the Assign waited for the submission's commit, the leader loop's wake-up and a
second commit round.

Nothing about safety changes: apply decides every assignment with the same checks as
the leader loop's (state, attempt, capacity, eligibility, sequences), and a refused
item leaves its job PENDING for the loop. Queue order is kept by standing aside
whenever any job is PENDING (those go first, in the loop's order) and for sequenced
jobs. Room promised to in-flight assignments is reserved until they resolve, so
concurrent submissions do not all aim at the same free slot; the leader loop sees the
reservations too.
"""

from __future__ import annotations

from collections.abc import Callable

from raftsched.core import runqueue as queue
from raftsched.core import settings
from raftsched.core.commands import Assign
from raftsched.core.model import Job, JobSpec, Resources
from raftsched.core.placement import Candidate, candidates, place
from raftsched.core.state import Result
from raftsched.ports import RaftStatus, ReplicaView

NO_ROOM = Resources(0, 0)
MAX_JOBS = 100  # larger submissions are placed by the leader loop


class SubmitPlacer:
    def __init__(self, replica: ReplicaView, raft: RaftStatus, armed: Callable[[], bool],
                 effective: Callable[[], settings.Settings],
                 dispatch: Callable[[list[Job]], None], new_rid: Callable[[], str]) -> None:
        self.replica = replica
        self.raft = raft
        self.armed = armed  # the leader loop has taken office in this term (liveness re-armed)
        self.effective = effective  # cluster settings with runtime overrides; caller holds the lock
        self.dispatch = dispatch
        self.new_rid = new_rid
        self.reserved: dict[str, Resources] = {}  # node -> room promised to in-flight Assigns
        self.placed = 0  # jobs assigned in their submission's entry (metrics, tests)

    def candidates(self) -> list[Candidate]:
        """Nodes open to new work with their allocation plus the in-flight reservations
        (caller holds the state lock)."""
        out = []
        for c in candidates(self.replica.state):
            if c.node.alive and c.node.eligible:
                held = self.reserved.get(c.node.id)
                out.append(Candidate(c.node, c.allocated + held, c.last) if held else c)
        return out

    def plan(self, jobs: tuple[tuple[str, JobSpec], ...], ts: float) -> Assign | None:
        """The Assign to propose with the submission of `jobs` (new ids), or None: the
        leader loop places them. `ts`: the submission's timestamp (the Assign's too)."""
        if (len(jobs) > MAX_JOBS or not self.raft.is_leader() or not self.armed()
                or any(spec.sequence_key for _, spec in jobs)):
            return None
        with self.replica.lock:
            if self.replica.state.pending:
                return None  # jobs already waiting go first, in the queue's order
            cfg = self.effective()
            cands = self.candidates()
        fresh = [Job(id=jid, spec=spec, seq=i, submitted_at=ts) for i, (jid, spec) in enumerate(jobs)]
        ordered = queue.order_jobs(fresh, ts, cfg.queue_order, cfg.aging_rate, len(fresh))
        items = place(ordered, cands, cfg.strategy)
        if not items:
            return None
        specs = dict(jobs)
        for item in items:
            r = specs[item.job_id].resources
            self.reserved[item.node_id] = self.reserved.get(item.node_id, NO_ROOM) + r
        return Assign(self.new_rid(), ts, tuple(items))

    def done(self, assign: Assign, jobs: tuple[tuple[str, JobSpec], ...], result: Result | None) -> None:
        """The entry resolved (`result`: the Assign's) or failed (None): release the
        reservations; start the jobs it assigned."""
        specs = dict(jobs)
        for item in assign.items:
            left = self.reserved[item.node_id] - specs[item.job_id].resources
            if left.cpu_millis <= 0 and left.memory_mib <= 0:
                del self.reserved[item.node_id]
            else:
                self.reserved[item.node_id] = left
        if result is None or not result.ok:
            return
        assigned = [item.job_id for item, out in zip(assign.items, result.value, strict=True)
                    if isinstance(out, int)]
        with self.replica.lock:
            st = self.replica.state
            started = [st.jobs[j] for j in assigned if j in st.jobs]
        self.placed += len(started)
        if started:
            self.dispatch(started)

