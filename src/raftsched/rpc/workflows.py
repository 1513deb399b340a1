"""The Workflows gRPC service: templates, schedules, DAG workflows.

Translate and delegate: everything a user can get wrong is checked here, before
anything is proposed, so bad input never reaches the Raft log (no state
change, not even the applied index). Writes go through `Writes.write`.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import Message

from raftsched.config import ClusterConfig
from raftsched.core import cron, dag, validate
from raftsched.core.commands import (
    AddSchedule,
    CancelWorkflow,
    DeleteSchedule,
    DeleteTemplate,
    PutTemplate,
    RunScheduleNow,
    SetSchedulePaused,
    SubmitJobs,
    SubmitWorkflow,
    WorkflowJob,
)
from raftsched.core.model import TERMINAL_STATES, JobSpec, JobState
from raftsched.core.state import Result
from raftsched.core.workflow_types import Schedule, Template, workflow_job_id
from raftsched.core.workflows import schedules, templates, workflows
from raftsched.ports import ReplicaView
from raftsched.rpc import admission, auth, convert
from raftsched.rpc.limits import ReadLimiter
from raftsched.rpc.runtimecfg import cluster_nodes
from raftsched.rpc.workflows_convert import (
    CONCURRENCY,
    MISFIRE,
    apply_overrides,
    schedule_problem,
    schedule_to_pb,
    template_to_pb,
)
from raftsched.rpc.writes import Writes
from raftsched.v1 import jobs_pb2, workflows_pb2, workflows_pb2_grpc

Ctx: TypeAlias = grpc.aio.ServicerContext
INVALID = grpc.StatusCode.INVALID_ARGUMENT

MAX_DEADLINE_S = 7 * 86400.0
MAX_NEXT = 1000


def _derived_id(prefix: str, rid: str) -> str:
    """An id made from the request id: the same on every retry of a request."""
    return f"{prefix}-{hashlib.sha256(rid.encode()).hexdigest()[:12]}"


class WorkflowsServicer(workflows_pb2_grpc.WorkflowsServicer):
    def __init__(self, cfg: ClusterConfig, replica: ReplicaView, writes: Writes,
                 reads: ReadLimiter | None = None, previews: ReadLimiter | None = None) -> None:
        self.reads = reads or ReadLimiter()
        self.previews = previews or self.reads  # cron previews: O(count) CPU
        self.cfg = cfg
        self.replica = replica
        self.writes = writes

    @property
    def st(self) -> Any:
        return self.replica.state

    # ---- helpers ----------------------------------------------------------------------

    async def _spec(self, pb: jobs_pb2.JobSpec, context: Ctx, where: str) -> JobSpec:
        spec = convert.spec_from_pb(pb, auth.principal().default_namespace)
        err = validate.check_job(spec, cluster_nodes(self.cfg, self.replica))
        if err:
            await context.abort(INVALID, f"{where}: {err}")
        await auth.require_ns(context, spec.namespace, where)
        await admission.require_run_as(context, self.st, [spec], where)
        return spec

    async def _write(self, context: Ctx, request: Message, method: str,
                     build: Callable[[str, float], Any],
                     done: Callable[[Result], Message]) -> Any:
        """Propose build(rid, now) on the leader (or forward `request` there)."""

        async def local(rid: str) -> Message:
            cmd = build(rid, time.time())
            if hasattr(cmd, "__await__"):
                cmd = await cmd
            return done(await self.writes.propose(context, cmd))

        return await self.writes.write(context, request, workflows_pb2_grpc.WorkflowsStub, method,
                                       local)

    # ---- templates --------------------------------------------------------------------

    async def _template(self, request: workflows_pb2.PutTemplateRequest, context: Ctx) -> Template:
        if not request.HasField("template"):
            await context.abort(INVALID, "template is missing")
        t = request.template
        if not dag.NAME_RE.match(t.name):
            await context.abort(INVALID, f"template name {t.name!r} is invalid: 1-64 characters "
                                "from letters, digits, '_', '.', '-'")
        spec = await self._spec(t.spec, context, f"template {t.name}: spec")
        if t.timezone and not t.cron:
            await context.abort(INVALID, "template timezone is set without cron: give cron too")
        if t.cron:
            try:
                cron.parse(t.cron)
                cron.zone(t.timezone or "UTC")
            except cron.CronError as e:
                await context.abort(INVALID, f"template {t.name}: {e}")
        if len(t.description) > 1024:
            await context.abort(INVALID, "description is longer than 1024 characters")
        return Template(t.name, spec, t.cron, t.timezone, t.description)

    async def _put_template(self, request: workflows_pb2.PutTemplateRequest, context: Ctx,
                            mode: str, method: str) -> workflows_pb2.Template:
        t = await self._template(request, context)

        async def build(rid: str, now: float) -> Any:
            exists = t.name in templates(self.st)
            if mode == "create" and exists:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"template {t.name!r} already exists; use update")
            if mode == "update" and not exists:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"template {t.name!r} not found")
            return PutTemplate(rid, now, t, mode)

        return await self._write(context, request, method, build,
                                 lambda r: template_to_pb(templates(self.st)[t.name]))

    async def CreateTemplate(self, request, context):
        return await self._put_template(request, context, "create", "CreateTemplate")

    async def UpdateTemplate(self, request, context):
        return await self._put_template(request, context, "update", "UpdateTemplate")

    async def GetTemplate(self, request, context):
        t = templates(self.st).get(request.name)
        if t is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"template {request.name!r} not found")
        await auth.require_ns(context, t.spec.namespace, f"template {t.name!r}")
        return template_to_pb(t)

    async def ListTemplates(self, request, context):
        with self.replica.lock:
            ts = sorted(templates(self.st).values(), key=lambda t: t.name)
        return workflows_pb2.ListTemplatesResponse(
            templates=[template_to_pb(t) for t in ts if auth.visible(t.spec.namespace)])

    async def DeleteTemplate(self, request, context):
        async def build(rid: str, now: float) -> Any:
            if request.name not in templates(self.st):
                await context.abort(grpc.StatusCode.NOT_FOUND, f"template {request.name!r} not found")
            return DeleteTemplate(rid, now, request.name)

        return await self._write(context, request, "DeleteTemplate", build,
                                 lambda r: workflows_pb2.DeleteTemplateResponse())

    async def SubmitFromTemplate(self, request, context):
        t = templates(self.st).get(request.template)
        if t is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"template {request.template!r} not found")
        spec = apply_overrides(t.spec, request.overrides)
        err = validate.check_job(spec, cluster_nodes(self.cfg, self.replica))
        if err:
            await context.abort(INVALID, f"template {t.name} with overrides: {err}")
        await auth.require_ns(context, spec.namespace, f"template {t.name!r}")

        async def build(rid: str, now: float) -> Any:
            await admission.refuse_early(context, self.st, rid, [spec])
            return SubmitJobs(rid, now, ((uuid.uuid4().hex[:20], spec),), by=auth.principal().name)

        return await self._write(
            context, request, "SubmitFromTemplate", build,
            lambda r: workflows_pb2.SubmitFromTemplateResponse(
                job_id=r.value[0], spec=convert.spec_to_pb(spec)))

    # ---- schedules --------------------------------------------------------------------

    async def _schedule(self, pb: workflows_pb2.Schedule, rid: str, context: Ctx) -> Schedule:
        sid = pb.id or _derived_id("sch", rid)
        if not dag.NAME_RE.match(sid):
            await context.abort(INVALID, f"schedule id {sid!r} is invalid: 1-64 characters "
                                "from letters, digits, '_', '.', '-'")
        expr, tzname = pb.cron, pb.timezone
        if pb.template:
            t = templates(self.st).get(pb.template)
            if t is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"template {pb.template!r} not found")
            if pb.HasField("spec"):
                await context.abort(INVALID, "give either spec or template, not both")
            assert t is not None  # abort raised
            spec = t.spec
            await admission.require_run_as(context, self.st, [spec], f"template {t.name!r}")
            expr = expr or t.cron
            tzname = tzname or t.timezone
        elif pb.HasField("spec"):
            spec = await self._spec(pb.spec, context, "schedule spec")
        else:
            await context.abort(INVALID, "schedule needs a spec or a template")
        if not expr:
            await context.abort(INVALID, "cron is empty: give an expression such as '*/5 * * * *' "
                                "or @hourly")
        tzname = tzname or "UTC"
        threshold = pb.misfire_threshold_seconds or 1.0
        deadline = pb.misfire_deadline_seconds or 3600.0
        start = pb.start or None
        end = pb.end or None
        problem = schedule_problem(pb, expr, tzname, threshold, deadline, MAX_DEADLINE_S)
        if problem:
            await context.abort(INVALID, problem)
        return Schedule(
            id=sid, cron=expr, spec=spec, timezone=tzname, template=pb.template, start=start,
            end=end, misfire=MISFIRE[pb.misfire], misfire_threshold_s=threshold,
            misfire_deadline_s=deadline, concurrency=CONCURRENCY[pb.concurrency],
            paused=pb.paused,
        )

    async def AddSchedule(self, request, context):
        if not request.HasField("schedule"):
            await context.abort(INVALID, "schedule is missing")
        rid = request.request_id or uuid.uuid4().hex
        request.request_id = rid
        s = await self._schedule(request.schedule, rid, context)

        async def build(rid: str, now: float) -> Any:
            if s.id in schedules(self.st):
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"schedule {s.id!r} already exists; delete it first or pick another id")
            return AddSchedule(rid, now, s)

        return await self._write(context, request, "AddSchedule", build,
                                 lambda r: schedule_to_pb(schedules(self.st)[s.id]))

    async def _known(self, sid: str, context: Ctx) -> Schedule:
        s = schedules(self.st).get(sid)
        if s is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"schedule {sid!r} not found")
        assert s is not None  # abort raised
        await auth.require_ns(context, s.spec.namespace, f"schedule {sid!r}")
        return s

    async def ListSchedules(self, request, context):
        with self.replica.lock:
            ss = sorted(schedules(self.st).values(), key=lambda s: s.id)
        return workflows_pb2.ListSchedulesResponse(
            schedules=[schedule_to_pb(s) for s in ss if auth.visible(s.spec.namespace)])

    async def GetSchedule(self, request, context):
        return schedule_to_pb(await self._known(request.id, context))

    async def _pause(self, request, context, paused: bool, method: str):
        await self._known(request.id, context)

        async def build(rid: str, now: float) -> Any:
            await self._known(request.id, context)
            return SetSchedulePaused(rid, now, request.id, paused)

        return await self._write(context, request, method, build,
                                 lambda r: schedule_to_pb(schedules(self.st)[request.id]))

    async def PauseSchedule(self, request, context):
        return await self._pause(request, context, True, "PauseSchedule")

    async def ResumeSchedule(self, request, context):
        return await self._pause(request, context, False, "ResumeSchedule")

    async def DeleteSchedule(self, request, context):
        await self._known(request.id, context)

        async def build(rid: str, now: float) -> Any:
            await self._known(request.id, context)
            return DeleteSchedule(rid, now, request.id)

        return await self._write(context, request, "DeleteSchedule", build,
                                 lambda r: workflows_pb2.DeleteScheduleResponse())

    async def RunScheduleNow(self, request, context):
        await self._known(request.id, context)

        async def build(rid: str, now: float) -> Any:
            await admission.refuse_early(context, self.st, rid, [(await self._known(request.id, context)).spec])
            return RunScheduleNow(rid, now, request.id, f"{request.id}-now-{int(now * 1000)}")

        return await self._write(context, request, "RunScheduleNow", build,
                                 lambda r: workflows_pb2.RunScheduleNowResponse(job_id=r.value))

    async def NextFireTimes(self, request, context):
        count = request.count or 5
        if not 0 < count <= MAX_NEXT:
            await context.abort(INVALID, f"count must be between 1 and {MAX_NEXT}")
        if request.id:
            s = await self._known(request.id, context)
            expr, tzname, start, end = s.cron, s.timezone, s.start, s.end
            after = request.after or max(s.last_fired, time.time())
        else:
            expr, tzname = request.cron, request.timezone or "UTC"
            start, end = request.start or None, request.end or None
            after = request.after or time.time()
        try:
            times, local = await self.previews.run(context, "NextFireTimes", cron.preview, expr,
                                                   tzname, after, count, start, end)
            return workflows_pb2.NextFireTimesResponse(times=times, local=local)
        except cron.CronError as e:
            await context.abort(INVALID, str(e))
            raise

    # ---- workflows --------------------------------------------------------------------

    async def SubmitWorkflow(self, request, context):
        n = len(request.jobs)
        if n == 0:
            await context.abort(INVALID, "workflow has no jobs")
        if n > dag.MAX_WORKFLOW_JOBS:
            await context.abort(INVALID, f"workflow has {n} jobs; at most {dag.MAX_WORKFLOW_JOBS} "
                                "in one workflow: split it")
        if len(request.name) > 256:
            await context.abort(INVALID, "workflow name is longer than 256 characters")
        deps: dict[str, tuple[str, ...]] = {}
        specs: dict[str, JobSpec] = {}
        for i, j in enumerate(request.jobs):
            if j.name in deps:
                await context.abort(INVALID, f"jobs[{i}]: job name {j.name!r} is used twice")
            deps[j.name] = tuple(j.depends_on)
        msg = dag.validate(deps)
        if msg:
            await context.abort(INVALID, msg)
        for j in request.jobs:
            specs[j.name] = await self._spec(j.spec, context, f"job {j.name!r}")
        rid = request.request_id or uuid.uuid4().hex
        request.request_id = rid
        wf_id = _derived_id("wf", rid)
        jobs = tuple(
            WorkflowJob(workflow_job_id(wf_id, name), specs[name],
                        tuple(workflow_job_id(wf_id, p) for p in deps[name]))
            for name in deps
        )

        async def build(rid: str, now: float) -> Any:
            await admission.refuse_early(context, self.st, rid, [j.spec for j in jobs])
            return SubmitWorkflow(rid, now, wf_id, request.name, jobs)

        return await self._write(
            context, request, "SubmitWorkflow", build,
            lambda r: workflows_pb2.SubmitWorkflowResponse(workflow_id=r.value[0],
                                                           job_ids=list(r.value[1])))

    async def GetWorkflow(self, request, context):
        with self.replica.lock:
            wf = workflows(self.st).get(request.workflow_id)
            jobs = [self.st.jobs.get(j) for j in wf.job_ids] if wf else []
        if wf is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"workflow {request.workflow_id!r} not found")
        await auth.require_ns(context, next((j.spec.namespace for j in jobs if j), ""), "workflow")
        counts = Counter(j.state.value for j in jobs if j is not None)
        present = [j for j in jobs if j is not None]
        if any(j.state not in TERMINAL_STATES for j in present):
            overall = "RUNNING"
        elif all(j.state is JobState.SUCCEEDED for j in present):
            overall = "SUCCEEDED"
        elif wf.cancelled:
            overall = "CANCELLED"
        else:
            overall = "FAILED"
        prefix = wf.id + "-"
        return workflows_pb2.WorkflowStatus(
            workflow_id=wf.id, name=wf.name, submitted_at=wf.submitted_at, cancelled=wf.cancelled,
            state=overall, counts=dict(counts),
            jobs=[workflows_pb2.WorkflowJobStatus(name=j.id.removeprefix(prefix),
                                                  job=convert.job_to_pb(j)) for j in present],
        )

    async def CancelWorkflow(self, request, context):
        wf = workflows(self.st).get(request.workflow_id)
        if wf is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"workflow {request.workflow_id!r} not found")
        first = self.st.jobs.get(wf.job_ids[0]) if wf.job_ids else None
        await auth.require_ns(context, first.spec.namespace if first else "", "workflow")

        def build(rid: str, now: float) -> Any:
            return CancelWorkflow(rid, now, request.workflow_id)

        return await self._write(
            context, request, "CancelWorkflow", build,
            lambda r: workflows_pb2.CancelWorkflowResponse(cancelled=r.value[0],
                                                           still_running=list(r.value[1])))
