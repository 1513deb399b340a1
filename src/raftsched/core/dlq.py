"""Dead-letter queue handlers: retry a DEAD job with a fresh budget, purge dead letters.

`HANDLERS` at the bottom is merged into the dispatch table by `apply`.
"""

from __future__ import annotations

from raftsched.core.commands import PurgeDead, RetryDead
from raftsched.core.evolve import replace
from raftsched.core.model import JobState
from raftsched.core.state import ClusterState, Code, Handler, Result, ok


def _apply_retry_dead(state: ClusterState, cmd: RetryDead) -> Result:
    job = state.jobs.get(cmd.job_id)
    if job is None:
        return Result(Code.NOT_FOUND, None, f"job {cmd.job_id} not found")
    if job.state is not JobState.DEAD:
        return Result(
            Code.PRECONDITION, None,
            f"job {job.id} is {job.state.value}, not DEAD; only dead-lettered jobs can be retried "
            "(submit it again instead)",
        )
    new = replace(job, state=JobState.PENDING, failures=0, not_before=0.0, finished_at=0.0,
                  reason=f"retried from the dead-letter queue after {job.failures} failed attempts")
    state.put(job, new, cmd.ts)
    return ok(job.id)


def _apply_purge_dead(state: ClusterState, cmd: PurgeDead) -> Result:
    if cmd.job_ids:
        targets = []
        for jid in cmd.job_ids:
            job = state.jobs.get(jid)
            if job is None:
                return Result(Code.NOT_FOUND, None, f"job {jid} not found")
            if job.state is not JobState.DEAD:
                return Result(Code.PRECONDITION, None,
                              f"job {jid} is {job.state.value}, not DEAD; only dead letters are purged")
            targets.append(job)
    else:
        targets = [j for j in state.jobs.values() if j.state is JobState.DEAD]
    targets.sort(key=lambda j: j.seq)
    for job in targets:
        state.delete(job)
    return ok(tuple(j.id for j in targets))


HANDLERS: dict[type, Handler] = {
    RetryDead: _apply_retry_dead,
    PurgeDead: _apply_purge_dead,
}
