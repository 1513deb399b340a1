"""Job lifecycle handlers of the replicated state machine. Pure and deterministic.

Submit (with idempotency keys), Assign (compare-and-swap: pending, attempt,
not-before time, sequence head, and placement's own node filters), attempt
reports (retry with backoff, DEAD after the budget, TIMED_OUT), cancel (of a
running job: CANCELLING until the worker reports the process gone), node
down (work returns to PENDING without using the retry budget: `lose_attempt`, used
by the node handlers in `nodes`). The dead-letter queue's handlers are in `dlq`.

`HANDLERS` at the bottom is merged into the dispatch table by `apply`.
"""

from __future__ import annotations

from raftsched.core import acl, placement, pytask, retry
from raftsched.core.commands import (
    Assign,
    CancelJob,
    FinishedItem,
    JobsFinished,
    JobsStarted,
    SubmitJobs,
)
from raftsched.core.evolve import replace
from raftsched.core.model import (
    ATTEMPTS_LIMIT,
    OOM_KILLED,
    TERMINAL_STATES,
    AttemptRecord,
    Job,
    JobSpec,
    JobState,
    Transition,
    transition_error,
)
from raftsched.core.runqueue import sequence_blocker
from raftsched.core.state import (
    OUTPUT_TAIL_LIMIT,
    ClusterState,
    Code,
    Handler,
    Result,
    check_report,
    ok,
)

IDEM_RETENTION_DEFAULT = 24 * 3600.0
IDEM_CAPACITY = 200_000


# ---- helpers (pure queries, also used by the leader) ---------------------------------


def _with_attempt(job: Job, rec: AttemptRecord) -> tuple[AttemptRecord, ...]:
    recs = job.attempts + (rec,)
    if len(recs) > ATTEMPTS_LIMIT:
        recs = recs[:1] + recs[-(ATTEMPTS_LIMIT - 1):]
    return recs


def _record(job: Job, ts: float, outcome: str, exit_code: int | None, reason: str) -> AttemptRecord:
    return AttemptRecord(
        attempt=job.attempt,
        node_id=job.node_id,
        token=job.fencing_token,
        assigned_at=job.assigned_at,
        finished_at=ts,
        outcome=outcome,
        started_at=job.started_at,
        exit_code=exit_code,
        reason=reason,
    )


def attempt_outcome(item: FinishedItem, timeout_s: float = 0.0) -> tuple[JobState, str]:
    """How an attempt ended: SUCCEEDED, FAILED or TIMED_OUT, with a reason."""
    if item.error:
        return JobState.FAILED, item.error
    if item.oom_killed and item.exit_code != 0:
        return JobState.FAILED, f"{OOM_KILLED}: a process exceeded the job's memory limit"
    if item.timed_out:
        return JobState.TIMED_OUT, f"timed out after {timeout_s:g}s" if timeout_s else "timed out"
    if item.exit_code == 0:
        return JobState.SUCCEEDED, ""
    if item.exit_code is None:
        return JobState.FAILED, "no exit code"
    if item.exit_code < 0:
        return JobState.FAILED, f"killed by signal {-item.exit_code}"
    return JobState.FAILED, f"exit code {item.exit_code}"


# ---- submit with idempotency keys ------------------------------------------------------


def _prune_keys(state: ClusterState, now: float, retention: float) -> None:
    cutoff = now - retention
    while state.idem:
        k, (_jid, ts) = next(iter(state.idem.items()))
        if ts >= cutoff and len(state.idem) <= IDEM_CAPACITY:
            break
        state.dig.idem_changed(k, state.idem.pop(k), None)


def check_submit(state: ClusterState, ts: float, jobs: tuple[tuple[str, JobSpec], ...],
                 keys: tuple[str, ...], retention: float) -> Result | dict[int, str]:
    """Whether a submission can be accepted whole: a refusal, or the positions whose
    idempotency key matched an existing job (position -> that job's id)."""
    ids = [jid for jid, _ in jobs]
    if not ids:
        return Result(Code.INVALID, None, "no jobs in submission")
    if len(set(ids)) != len(ids):
        return Result(Code.INVALID, None, "duplicate job id in submission")
    keys = keys or ("",) * len(ids)
    if len(keys) != len(ids):
        return Result(Code.INVALID, None,
                      f"{len(keys)} idempotency keys for {len(ids)} jobs; give one per job")
    given = [k for k in keys if k]
    if len(set(given)) != len(given):
        return Result(Code.INVALID, None, "the same idempotency key is used twice in one submission")
    _prune_keys(state, ts, retention or IDEM_RETENTION_DEFAULT)
    existing: dict[int, str] = {}
    for i, ((jid, spec), key) in enumerate(zip(jobs, keys, strict=True)):
        hit = state.idem.get(key) if key else None
        old = state.jobs.get(hit[0]) if hit else None
        if old is not None:
            if old.spec != spec:
                return Result(
                    Code.INVALID, None,
                    f"idempotency key {key!r} was used for job {old.id} with a different spec; "
                    "use a new key for a different job",
                )
            existing[i] = old.id
        elif jid in state.jobs:
            return Result(Code.INVALID, None, f"job id {jid} already exists")
    refused = acl.admission(state, [spec for i, (_, spec) in enumerate(jobs) if i not in existing])
    if refused:
        return refused
    return existing


def create_jobs(state: ClusterState, ts: float, jobs: tuple[tuple[str, JobSpec], ...],
                keys: tuple[str, ...], existing: dict[int, str], by: str = "") -> tuple[str, ...]:
    """Create the accepted jobs (PENDING); per position, the new or matched job id.
    `by`: the name of the token that submitted them (job history)."""
    keys = keys or ("",) * len(jobs)
    out: list[str] = []
    first = (Transition(ts, JobState.PENDING),)  # frozen: shared by the whole batch
    for i, ((jid, spec), key) in enumerate(zip(jobs, keys, strict=True)):
        if i in existing:
            out.append(existing[i])
            continue
        job = Job(id=jid, spec=spec, seq=state.next_seq, submitted_at=ts, history=first,
                  submitted_by=by)
        state.next_seq += 1
        state.put(None, job, ts, history=False)
        if key:
            state.dig.idem_changed(key, state.idem.pop(key, None), (jid, ts))
            state.idem[key] = (jid, ts)
        out.append(jid)
    return tuple(out)


def _apply_submit(state: ClusterState, cmd: SubmitJobs) -> Result:
    checked = check_submit(state, cmd.ts, cmd.jobs, cmd.keys, cmd.key_retention_s)
    if isinstance(checked, Result):
        return checked
    return ok(create_jobs(state, cmd.ts, cmd.jobs, cmd.keys, checked, cmd.by))


# ---- assign -----------------------------------------------------------------------------


def _apply_assign(state: ClusterState, cmd: Assign) -> Result:
    """Compare-and-swap per item. Value: per item, the fencing token or a reason string."""
    out: list[int | str] = []
    for item in cmd.items:
        job = state.jobs.get(item.job_id)
        node = state.nodes.get(item.node_id)
        if job is None:
            out.append(f"job {item.job_id} not found")
        elif job.state is not JobState.PENDING:
            out.append(f"job {job.id} is {job.state.value}, not PENDING")
        elif job.attempt != item.attempt:
            out.append(f"job {job.id} is at attempt {job.attempt}, not {item.attempt}")
        elif node is None:
            out.append(f"node {item.node_id} is not registered")
        elif job.not_before > cmd.ts:
            out.append(f"job {job.id} waits for its retry time {job.not_before:.3f}")
        elif (blocked := sequence_blocker(state, job)) is not None:
            out.append(blocked)
        elif not (verdict := placement.check_node(
                job.spec, node, state.allocated(node.id).as_resources())).ok:
            out.append(placement.refusal(job.id, verdict))
        else:
            state.fencing += 1
            placement.note_assigned(state, node.id, state.fencing)
            state.put(
                job,
                replace(
                    job,
                    state=JobState.ASSIGNED,
                    attempt=job.attempt + 1,
                    node_id=node.id,
                    fencing_token=state.fencing,
                    assigned_at=cmd.ts,
                    started_at=0.0,
                    finished_at=0.0,
                    exit_code=None,
                    reason="",
                    not_before=0.0,
                    cancel_requested_at=0.0,
                    evict_requested_at=0.0,
                ),
                cmd.ts,
            )
            out.append(state.fencing)
    return ok(tuple(out))


# ---- reports ---------------------------------------------------------------------------


def _apply_started(state: ClusterState, cmd: JobsStarted) -> Result:
    out: list[str] = []
    for item in cmd.items:
        job = check_report(state, item.job_id, item.attempt, item.token)
        if isinstance(job, str):
            out.append(job)
        elif job.state is JobState.ASSIGNED:
            state.put(job, replace(job, state=JobState.RUNNING, started_at=cmd.ts,
                                   reason=item.isolation), cmd.ts)
            out.append("")
        else:
            # RUNNING: a repeated report. CANCELLING: stays so until the process is gone.
            if not job.started_at:
                state.put(job, replace(job, started_at=cmd.ts))
            out.append("")
    return ok(tuple(out))


def _finish(state: ClusterState, job: Job, item: FinishedItem, ts: float) -> str:
    outcome, why = attempt_outcome(item, job.spec.timeout_s)
    policy = job.spec.retry
    failures = job.failures
    not_before = 0.0
    if job.state is JobState.CANCELLING:
        if outcome is JobState.SUCCEEDED:
            target, reason = JobState.SUCCEEDED, "finished before the cancel took effect"
            rec_outcome = "SUCCEEDED"
        else:
            target = JobState.CANCELLED
            reason = f"cancelled by user; attempt {job.attempt} stopped ({why})"
            rec_outcome = "CANCELLED"
    elif outcome is JobState.SUCCEEDED:
        target, reason, rec_outcome = JobState.SUCCEEDED, "", "SUCCEEDED"
    else:
        rec_outcome = OOM_KILLED if why.startswith(OOM_KILLED) else outcome.value
        failures += 1
        if retry.should_retry(policy, failures):
            target = JobState.PENDING
            not_before = item.retry_at or ts + retry.backoff_delay(policy, failures)
            reason = (
                f"attempt {job.attempt} {outcome.value}: {why}; failed attempt {failures} of "
                f"{policy.max_attempts}, retry in {max(0.0, not_before - ts):.3f}s"
            )
        elif retry.has_policy(policy):
            target = JobState.DEAD
            reason = f"{failures} failed attempts (max_attempts {policy.max_attempts}); last: {why}"
        else:
            target, reason = outcome, why
    err = transition_error(job.state, target)
    if err:
        return err
    new = replace(
        job,
        state=target,
        finished_at=0.0 if target is JobState.PENDING else ts,
        started_at=job.started_at or ts,
        exit_code=item.exit_code,
        reason=reason,
        stdout_tail=item.stdout_tail[-OUTPUT_TAIL_LIMIT:],
        stderr_tail=item.stderr_tail[-OUTPUT_TAIL_LIMIT:],
        result=pytask.stored_result(target is JobState.SUCCEEDED, item.result),
        failures=failures,
        not_before=not_before,
        evict_requested_at=0.0,
        attempts=_with_attempt(job, _record(job, ts, rec_outcome, item.exit_code, why)),
    )
    state.put(job, new, ts)
    return ""


def _apply_finished(state: ClusterState, cmd: JobsFinished) -> Result:
    out: list[str] = []
    for item in cmd.items:
        job = check_report(state, item.job_id, item.attempt, item.token)
        if isinstance(job, str):
            out.append(job)
        elif item.lost:  # killed by the node's watchdog when its lease ran out
            lose_attempt(state, job, cmd.ts, f"attempt {job.attempt} lost on node {job.node_id}: {item.error}")
            out.append("")
        elif evicted(job, item):  # stopped at its node's drain deadline
            lose_attempt(state, job, cmd.ts, f"attempt {job.attempt} stopped on node {job.node_id} "
                         f"at its drain deadline ({item.error or 'exited'}); requeued")
            out.append("")
        else:
            out.append(_finish(state, job, item, cmd.ts))
    return ok(tuple(out))


def evicted(job: Job, item: FinishedItem) -> bool:
    """An attempt the drain deadline stopped that did not end on its own terms (success
    or its own timeout): it is requeued like a lost one, outside the retry budget."""
    return (bool(job.evict_requested_at) and job.state is not JobState.CANCELLING
            and not item.timed_out and attempt_outcome(item)[0] is not JobState.SUCCEEDED)


# ---- cancel ----------------------------------------------------------------------------


def _apply_cancel(state: ClusterState, cmd: CancelJob) -> Result:
    job = state.jobs.get(cmd.job_id)
    if job is None:
        return Result(Code.NOT_FOUND, None, f"job {cmd.job_id} not found")
    if job.state in TERMINAL_STATES:
        return Result(Code.PRECONDITION, None,
                      f"job {job.id} already finished as {job.state.value}; nothing to cancel")
    if job.state is JobState.CANCELLING:
        return ok(job.id)
    who = f"token {cmd.by}" if cmd.by else "user"
    if job.state is JobState.PENDING:
        new = replace(job, state=JobState.CANCELLED, finished_at=cmd.ts, reason=f"cancelled by {who}",
                      not_before=0.0, cancelled_by=cmd.by)
    else:
        # Capacity stays held until the worker reports the process gone.
        new = replace(
            job,
            state=JobState.CANCELLING,
            cancel_requested_at=cmd.ts,
            cancelled_by=cmd.by,
            reason=f"cancel requested by {who}; stopping attempt {job.attempt} on node {job.node_id}",
        )
    state.put(job, new, cmd.ts)
    return ok(job.id)


# ---- lost attempts (node down, restarted, lease expired, drained) ------------------------


def lose_attempt(state: ClusterState, job: Job, ts: float, why: str) -> bool:
    """An active attempt is gone through no fault of the job (node down, node restarted,
    lease expired). Back to PENDING without using the retry budget (the next Assign
    makes a new attempt with a new token); a job being cancelled ends CANCELLED.
    True if the job was returned to PENDING."""
    if job.state is JobState.CANCELLING:
        new = replace(job, state=JobState.CANCELLED, finished_at=ts,
                      reason=f"cancelled by user; {why}",
                      attempts=_with_attempt(job, _record(job, ts, "CANCELLED", None, why)))
        state.put(job, new, ts)
        return False
    new = replace(job, state=JobState.PENDING, reason=why, evict_requested_at=0.0,
                  attempts=_with_attempt(job, _record(job, ts, "LOST", None, why)))
    state.put(job, new, ts)
    return True


HANDLERS: dict[type, Handler] = {
    SubmitJobs: _apply_submit,
    Assign: _apply_assign,
    JobsStarted: _apply_started,
    JobsFinished: _apply_finished,
    CancelJob: _apply_cancel,
}
