"""Apply functions for templates, schedules and workflows, and the DAG reactions.

`HANDLERS` at the bottom is merged into the dispatch table by `apply`. Deterministic: time
arrives in commands; rejections are `Result` values.

Replicated state (in `ClusterState.ext`, part of snapshots and the digest):
templates by name, schedules by id, workflows by id.

Workflow reactions (`on_put`): when a workflow job SUCCEEDS, each WAITING child
whose parents all succeeded becomes PENDING (enters the placement queue); when a
workflow job reaches any other terminal state, every WAITING descendant becomes
UPSTREAM_FAILED (terminal), naming the failed ancestor.
"""

from __future__ import annotations

from typing import Any

from raftsched.core import acl, codec, dag
from raftsched.core.commands import (
    AddSchedule,
    CancelWorkflow,
    DeleteSchedule,
    DeleteTemplate,
    FireSchedule,
    PutTemplate,
    RunScheduleNow,
    SetSchedulePaused,
    SubmitWorkflow,
)
from raftsched.core.evolve import replace
from raftsched.core.model import TERMINAL_STATES, Job, JobState
from raftsched.core.state import ClusterState, Code, Handler, Result, on_put, state_extension
from raftsched.core.workflow_types import Concurrency, Schedule, Template, Workflow, run_job_id

MAX_FIRES_PER_COMMAND = 1000
MAX_SCHEDULES = 10_000
MAX_TEMPLATES = 10_000


def _ext(cls: type) -> tuple[Any, Any, Any]:
    return (
        dict,
        lambda d: {k: codec.to_wire(v) for k, v in d.items()},
        lambda w: {k: codec.from_wire(cls, v) for k, v in w.items()},
    )


state_extension("templates", *_ext(Template))
state_extension("schedules", *_ext(Schedule))
state_extension("workflows", *_ext(Workflow))


def templates(state: ClusterState) -> dict[str, Template]:
    return state.ext["templates"]


def schedules(state: ClusterState) -> dict[str, Schedule]:
    return state.ext["schedules"]


def workflows(state: ClusterState) -> dict[str, Workflow]:
    return state.ext["workflows"]


def _err(code: Code, msg: str) -> Result:
    return Result(code, None, msg)


# ---- templates ---------------------------------------------------------------------


def _apply_put_template(state: ClusterState, cmd: PutTemplate) -> Result:
    t = cmd.template
    tpls = templates(state)
    old = tpls.get(t.name)
    if cmd.mode == "create":
        if old is not None:
            return _err(Code.PRECONDITION, f"template {t.name!r} already exists; use update")
        if len(tpls) >= MAX_TEMPLATES:
            return _err(Code.PRECONDITION, f"at most {MAX_TEMPLATES} templates")
        new = replace(t, created_at=cmd.ts, updated_at=cmd.ts, version=1)
    elif cmd.mode == "update":
        if old is None:
            return _err(Code.NOT_FOUND, f"template {t.name!r} not found")
        new = replace(t, created_at=old.created_at, updated_at=cmd.ts, version=old.version + 1)
    else:
        return _err(Code.INVALID, f"mode {cmd.mode!r}: expected create or update")
    tpls[t.name] = new
    return Result(Code.OK, new.version)


def _apply_delete_template(state: ClusterState, cmd: DeleteTemplate) -> Result:
    if templates(state).pop(cmd.name, None) is None:
        return _err(Code.NOT_FOUND, f"template {cmd.name!r} not found")
    return Result(Code.OK, cmd.name)


# ---- schedules ---------------------------------------------------------------------


def _apply_add_schedule(state: ClusterState, cmd: AddSchedule) -> Result:
    s = cmd.schedule
    scheds = schedules(state)
    if s.id in scheds:
        return _err(Code.PRECONDITION, f"schedule {s.id!r} already exists; delete it first or pick another id")
    if len(scheds) >= MAX_SCHEDULES:
        return _err(Code.PRECONDITION, f"at most {MAX_SCHEDULES} schedules")
    # Nothing at or before creation fires: instants are counted from here on.
    scheds[s.id] = replace(s, created_at=cmd.ts, last_fired=cmd.ts, paused=s.paused,
                           last_job_id="", runs=0, skipped=0)
    return Result(Code.OK, s.id)


def _apply_pause(state: ClusterState, cmd: SetSchedulePaused) -> Result:
    scheds = schedules(state)
    s = scheds.get(cmd.schedule_id)
    if s is None:
        return _err(Code.NOT_FOUND, f"schedule {cmd.schedule_id!r} not found")
    if s.paused == cmd.paused:
        return Result(Code.OK, s.id)
    if cmd.paused:
        scheds[s.id] = replace(s, paused=True)
    else:
        # Instants that passed while paused are not fired: resume counts from now.
        scheds[s.id] = replace(s, paused=False, last_fired=max(s.last_fired, cmd.ts))
    return Result(Code.OK, s.id)


def _apply_delete_schedule(state: ClusterState, cmd: DeleteSchedule) -> Result:
    if schedules(state).pop(cmd.schedule_id, None) is None:
        return _err(Code.NOT_FOUND, f"schedule {cmd.schedule_id!r} not found")
    return Result(Code.OK, cmd.schedule_id)


def _new_run(state: ClusterState, s: Schedule, job_id: str, instant: float, ts: float) -> Job:
    job = Job(id=job_id, spec=s.spec, seq=state.next_seq, submitted_at=ts,
              schedule_id=s.id, scheduled_at=instant)
    state.next_seq += 1
    state.put(None, job, ts)
    return job


def _apply_fire(state: ClusterState, cmd: FireSchedule) -> Result:
    """Value: (job ids created, instants not run by the concurrency policy)."""
    scheds = schedules(state)
    s = scheds.get(cmd.schedule_id)
    if s is None:
        return _err(Code.NOT_FOUND, f"schedule {cmd.schedule_id!r} not found")
    if s.paused:
        return _err(Code.PRECONDITION, f"schedule {s.id!r} is paused")
    if cmd.through <= s.last_fired:
        return _err(Code.PRECONDITION,
                    f"schedule {s.id!r} already fired through {s.last_fired!r}; nothing new")
    fire = [t for t in cmd.fire if s.last_fired < t <= cmd.through]
    if len(fire) > MAX_FIRES_PER_COMMAND or fire != sorted(set(fire)):
        return _err(Code.INVALID, "fire instants must be distinct, sorted, at most "
                    f"{MAX_FIRES_PER_COMMAND}")
    created: list[str] = []
    refused = 0
    last_job_id = s.last_job_id
    for t in fire:
        prev = state.jobs.get(last_job_id) if last_job_id else None
        busy = prev is not None and prev.state not in TERMINAL_STATES
        if busy and s.concurrency is not Concurrency.ALLOW:
            assert prev is not None
            if s.concurrency is Concurrency.REPLACE and prev.state in (JobState.PENDING, JobState.WAITING):
                state.put(prev, replace(prev, state=JobState.CANCELLED, finished_at=cmd.ts,
                                        reason=f"replaced by the run scheduled at {t:.0f}"), cmd.ts)
            else:
                refused += 1  # forbid, or replace of a run already started
                continue
        jid = run_job_id(s.id, t)
        if jid in state.jobs:
            refused += 1
            continue
        _new_run(state, s, jid, t, cmd.ts)
        created.append(jid)
        last_job_id = jid
    scheds[s.id] = replace(s, last_fired=cmd.through, last_job_id=last_job_id,
                           runs=s.runs + len(created), skipped=s.skipped + cmd.skipped + refused)
    return Result(Code.OK, (tuple(created), refused))


def _apply_run_now(state: ClusterState, cmd: RunScheduleNow) -> Result:
    scheds = schedules(state)
    s = scheds.get(cmd.schedule_id)
    if s is None:
        return _err(Code.NOT_FOUND, f"schedule {cmd.schedule_id!r} not found")
    if cmd.job_id in state.jobs:
        return _err(Code.INVALID, f"job id {cmd.job_id} already exists")
    _new_run(state, s, cmd.job_id, cmd.ts, cmd.ts)
    scheds[s.id] = replace(s, last_job_id=cmd.job_id, runs=s.runs + 1)
    return Result(Code.OK, cmd.job_id)


# ---- workflows ---------------------------------------------------------------------


def _apply_submit_workflow(state: ClusterState, cmd: SubmitWorkflow) -> Result:
    wfs = workflows(state)
    if cmd.workflow_id in wfs:
        return _err(Code.INVALID, f"workflow id {cmd.workflow_id} already exists")
    deps = {j.job_id: j.depends_on for j in cmd.jobs}
    if len(deps) != len(cmd.jobs):
        return _err(Code.INVALID, "duplicate job id in workflow")
    msg = dag.validate(deps)
    if msg:
        return _err(Code.INVALID, msg)
    for jid in deps:
        if jid in state.jobs:
            return _err(Code.INVALID, f"job id {jid} already exists")
    refused = acl.admission(state, [j.spec for j in cmd.jobs])
    if refused:
        return refused
    order = dag.topo_order(deps)
    by_id = {j.job_id: j for j in cmd.jobs}
    for jid in order:
        wj = by_id[jid]
        job = Job(id=jid, spec=wj.spec, seq=state.next_seq, submitted_at=cmd.ts,
                  state=JobState.WAITING if wj.depends_on else JobState.PENDING,
                  workflow_id=cmd.workflow_id, depends_on=wj.depends_on)
        state.next_seq += 1
        state.put(None, job, cmd.ts)
    wfs[cmd.workflow_id] = Workflow(cmd.workflow_id, cmd.name, tuple(order), cmd.ts)
    return Result(Code.OK, (cmd.workflow_id, tuple(order)))


def _apply_cancel_workflow(state: ClusterState, cmd: CancelWorkflow) -> Result:
    """Cancel every job not started (WAITING, PENDING). Value: (cancelled, still active)."""
    wfs = workflows(state)
    wf = wfs.get(cmd.workflow_id)
    if wf is None:
        return _err(Code.NOT_FOUND, f"workflow {cmd.workflow_id} not found")
    cancelled = 0
    active: list[str] = []
    # Children first, so that no cancellation marks a descendant UPSTREAM_FAILED.
    for jid in reversed(wf.job_ids):
        job = state.jobs.get(jid)
        if job is None:
            continue
        if job.state in (JobState.WAITING, JobState.PENDING):
            state.put(job, replace(job, state=JobState.CANCELLED, finished_at=cmd.ts,
                                   reason="workflow cancelled"), cmd.ts)
            cancelled += 1
        elif job.state not in TERMINAL_STATES:
            active.append(jid)
    wfs[wf.id] = replace(wf, cancelled=True)
    return Result(Code.OK, (cancelled, tuple(sorted(active))))


def _children(state: ClusterState, wf_id: str) -> dict[str, list[str]]:
    """Children per job of a workflow (derived, cached on the state object)."""
    cache: dict[str, dict[str, list[str]]] = state.__dict__.setdefault("_wf_children", {})
    kids = cache.get(wf_id)
    if kids is None:
        wf = workflows(state).get(wf_id)
        deps = {}
        if wf is not None:
            deps = {jid: state.jobs[jid].depends_on for jid in wf.job_ids if jid in state.jobs}
        kids = cache[wf_id] = dag.children(deps)
    return kids


@on_put
def _react(state: ClusterState, old: Job | None, new: Job, ts: float | None) -> None:
    if not new.workflow_id or old is None or old.state is new.state:
        return
    if new.workflow_id not in workflows(state):
        return  # the workflow record is written after its jobs at submit
    if new.state is JobState.SUCCEEDED:
        for cid in _children(state, new.workflow_id).get(new.id, ()):
            child = state.jobs.get(cid)
            if child is None or child.state is not JobState.WAITING:
                continue
            if dag.ready(child.depends_on, lambda p: _succeeded(state, p)):
                state.put(child, replace(child, state=JobState.PENDING,
                                         reason="dependencies succeeded"), ts)
    elif new.state in TERMINAL_STATES and new.state is not JobState.UPSTREAM_FAILED:
        reason = f"upstream job {new.id} ended {new.state.value}"
        for did in dag.descendants(new.id, _children(state, new.workflow_id)):
            d = state.jobs.get(did)
            if d is not None and d.state is JobState.WAITING:
                state.put(d, replace(d, state=JobState.UPSTREAM_FAILED, finished_at=ts or 0.0,
                                     reason=reason), ts)


def _succeeded(state: ClusterState, job_id: str) -> bool:
    j = state.jobs.get(job_id)
    return j is not None and j.state is JobState.SUCCEEDED


HANDLERS: dict[type, Handler] = {
    PutTemplate: _apply_put_template,
    DeleteTemplate: _apply_delete_template,
    AddSchedule: _apply_add_schedule,
    SetSchedulePaused: _apply_pause,
    DeleteSchedule: _apply_delete_schedule,
    FireSchedule: _apply_fire,
    RunScheduleNow: _apply_run_now,
    SubmitWorkflow: _apply_submit_workflow,
    CancelWorkflow: _apply_cancel_workflow,
}
