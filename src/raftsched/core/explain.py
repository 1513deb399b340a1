"""Why is my job pending? Where would this spec go? Pure.

An explanation has two parts:
  holds     what keeps the job out of the placement queue, whatever the nodes
            look like: a retry delay, a sequence key, workflow dependencies
            (there are no quotas in raftsched; they would be one more hold)
  verdicts  per node, the first placement filter that fails (down, pool,
            labels, cpu, memory) or ok, and the node placement would choose

The verdicts come from `placement.decide`, the very function the leader uses
to place and the Assign compare-and-swap uses to check (`check_node`), over
the replica's state: an explanation cannot disagree with a decision made on
the same state. Computed on demand from the replicated state (O(nodes) per
job), so it costs the leader's loop nothing and every replica gives the same
answer for the same applied index.
"""

from __future__ import annotations

from dataclasses import dataclass

from raftsched.core.model import Job, JobSpec, JobState
from raftsched.core.placement import Decision, Strategy, Verdict, candidates, decide
from raftsched.core.runqueue import sequence_blocker
from raftsched.core.state import ClusterState

PLAN_JOB_ID = "(plan)"


@dataclass(frozen=True, slots=True)
class Explanation:
    job_id: str
    state: JobState
    summary: str  # one line: what holds the job, or where it goes / went
    holds: tuple[str, ...] = ()
    verdicts: tuple[Verdict, ...] = ()
    node_id: str = ""  # the node placement would choose now ("" = none)
    ranked: tuple[str, ...] = ()  # feasible nodes, best first
    avoided: str = ""  # node of the failed previous attempt, ranked last


def holds(state: ClusterState, job: Job, now: float) -> list[str]:
    """What keeps a PENDING or WAITING job from being placed, independent of nodes."""
    out: list[str] = []
    if job.state is JobState.WAITING:
        for dep in job.depends_on:
            d = state.jobs.get(dep)
            if d is None or d.state is not JobState.SUCCEEDED:
                out.append(f"dependency: waits for job {dep} "
                           f"({d.state.value if d is not None else 'gone'}) to succeed")
    if job.not_before > now:
        out.append(f"retry delay: attempt {job.attempt + 1} not before "
                   f"{job.not_before:.3f} (in {job.not_before - now:.1f}s)")
    if job.spec.sequence_key and job.state in (JobState.PENDING, JobState.WAITING):
        blocked = sequence_blocker(state, job)
        if blocked:
            out.append(f"sequence: {blocked}")
    return out


def _summary(job: Job, hold: list[str], d: Decision) -> str:
    if hold:
        return "waiting: " + "; ".join(hold)
    if d.node_id:
        if job.id == PLAN_JOB_ID:
            return f"would be placed on {d.node_id}"
        return f"placeable on {d.node_id} now; the leader assigns it in its next round"
    failing = "; ".join(v.describe() for v in d.verdicts) or "no node registered"
    return f"no node can take it now: {failing}"


def _explain(state: ClusterState, job: Job, now: float, strategy: Strategy) -> Explanation:
    hold = holds(state, job, now)
    d = decide(job, candidates(state), strategy)
    return Explanation(job.id, job.state, _summary(job, hold, d), tuple(hold), d.verdicts,
                       d.node_id, d.ranked, d.avoided)


def explain_job(state: ClusterState, job: Job, now: float,
                strategy: Strategy = Strategy.SPREAD) -> Explanation:
    """Why `job` is where it is: for PENDING and WAITING jobs, holds and node verdicts."""
    if job.state in (JobState.PENDING, JobState.WAITING):
        return _explain(state, job, now, strategy)
    where = f" on node {job.node_id}" if job.node_id else ""
    return Explanation(job.id, job.state, f"not pending: {job.state.value}{where}",
                       node_id=job.node_id)


def plan_spec(state: ClusterState, spec: JobSpec, now: float,
              strategy: Strategy = Strategy.SPREAD) -> Explanation:
    """Where a spec not yet submitted would go now, and why (it joins the end of the queue)."""
    job = Job(id=PLAN_JOB_ID, spec=spec, seq=state.next_seq, submitted_at=now)
    if spec.sequence_key and spec.sequence_key in state.sequences:
        members = state.sequences[spec.sequence_key]
        head = min(members.items(), key=lambda kv: kv[1])[0]
        hold = [f"sequence: would wait for job {head} and {len(members) - 1} more "
                f"(sequence_key {spec.sequence_key!r})"]
        d = decide(job, candidates(state), strategy)
        return Explanation(job.id, JobState.PENDING, _summary(job, hold, d), tuple(hold),
                           d.verdicts, d.node_id, d.ranked)
    return _explain(state, job, now, strategy)


def pending_reason(state: ClusterState, job: Job, now: float,
                   strategy: Strategy = Strategy.SPREAD) -> str:
    """The one-line summary for a PENDING or WAITING job ("" for other states)."""
    if job.state not in (JobState.PENDING, JobState.WAITING):
        return ""
    return explain_job(state, job, now, strategy).summary
