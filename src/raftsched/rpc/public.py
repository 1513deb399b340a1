"""Public gRPC service Scheduler (jobs); Cluster (nodes, status) is in `cluster`.

Servicers translate and delegate: validation lives in `validate`, state changes
in `fsm` (through the leader), reads come from this node's replica.
"""

from __future__ import annotations

import asyncio
import bisect
import fnmatch
import functools
import itertools
import time
import uuid
from collections.abc import Callable

import grpc

from raftsched.config import ClusterConfig
from raftsched.core import acl, batches, validate
from raftsched.core.commands import (
    CancelJob,
    CommitJobs,
    PublishJobs,
    PurgeDead,
    RetryDead,
    StageJobs,
    SubmitJobs,
)
from raftsched.core.model import TERMINAL_STATES, Job, JobSpec, JobState
from raftsched.core.state import Result
from raftsched.ports import PlaceOnSubmit, ReplicaView
from raftsched.rpc import admission, auth, convert, explain
from raftsched.rpc.limits import ReadLimiter
from raftsched.rpc.runtimecfg import settings_now
from raftsched.rpc.specs import convert_specs
from raftsched.rpc.writes import Writes
from raftsched.v1 import (
    jobs_pb2,
    scheduler_pb2,
    scheduler_pb2_grpc,
)

MAX_PAGE = 1000
DEFAULT_PAGE = 100
NEWEST = "d"  # page tokens of a newest-first listing: "d<seq>"


def _new_job_ids(n: int) -> list[str]:
    """Ids for a batch: one random prefix, then the position (unique per leader proposal)."""
    prefix = uuid.uuid4().hex[:12]
    return [f"{prefix}{i:04x}" for i in range(n)]


def list_page(jobs: list[Job], states: set[JobState], node: str, after: int, size: int,
              total: int | None = None, ns: str = "",
              sees: Callable[[str], bool] | None = None, *, newest: bool = False,
              name: str = "", since: float = 0.0) -> scheduler_pb2.ListJobsResponse:
    """One page of ListJobs (worker thread). `jobs` is in the order walked: submission
    (seq) order as the replica's job table is, or its reverse when `newest`; `after`
    is the seq of the last job of the previous page (0: first page). `total` is the
    number of matching jobs when the caller knows it from the state's counters (else it
    is counted here). `ns`: only that namespace; `sees`: only namespaces the caller's
    token covers (None: all); `name`: a name or glob; `since`: submitted at or after."""

    def match(j: Job) -> bool:
        return ((not states or j.state in states) and (not node or j.node_id == node)
                and (not ns or j.spec.namespace == ns) and (sees is None or sees(j.spec.namespace))
                and (not name or j.spec.name == name or fnmatch.fnmatchcase(j.spec.name, name))
                and j.submitted_at >= since)

    if not after:
        i = 0
    elif newest:
        i = bisect.bisect_right(jobs, -after, key=lambda j: -j.seq)
    else:
        i = bisect.bisect_right(jobs, after, key=lambda j: j.seq)
    page: list[Job] = []
    more = False
    for j in jobs[i:] if i else jobs:
        if match(j):
            if len(page) == size:
                more = True
                break
            page.append(j)
    if total is None:
        total = sum(1 for j in jobs if match(j))
    return scheduler_pb2.ListJobsResponse(
        jobs=[convert.job_to_pb(j) for j in page],
        next_page_token=f"{NEWEST if newest else ''}{page[-1].seq}" if more else "",
        total=total,
    )


FIRST_PAGE_SCAN = 20_000


def _first_page(table: dict[str, Job], states: set[JobState], size: int,
                newest: bool = False) -> list[Job] | None:
    """The first page's jobs (and one more, if any) without copying the whole table:
    None when that would mean scanning more than FIRST_PAGE_SCAN jobs."""
    head: list[Job] = []
    for j in itertools.islice(reversed(table.values()) if newest else table.values(),
                              FIRST_PAGE_SCAN):
        if not states or j.state in states:
            head.append(j)
            if len(head) > size:
                return head
    return head if len(table) <= FIRST_PAGE_SCAN else None


def _not_dead(st, jid: str) -> tuple[grpc.StatusCode, str] | None:
    """Why a dead-letter purge of `jid` would be refused at apply (core.dlq), if it would."""
    job = st.jobs.get(jid)
    if job is None:
        return grpc.StatusCode.NOT_FOUND, f"job {jid} not found"
    if job.state is not JobState.DEAD:
        return (grpc.StatusCode.FAILED_PRECONDITION,
                f"job {jid} is {job.state.value}, not DEAD; only dead letters are purged")
    return None


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServicer):
    def __init__(self, cfg: ClusterConfig, replica: ReplicaView, writes: Writes,
                 reads: ReadLimiter | None = None, placer: PlaceOnSubmit | None = None) -> None:
        self.reads = reads or ReadLimiter()
        self.cfg = cfg
        self.replica = replica
        self.writes = writes
        self.placer = placer  # the leader's placement in the submission's entry (node/fastplace.py)

    async def _specs(self, pbs: list[jobs_pb2.JobSpec], context: grpc.aio.ServicerContext,
                     batch: bool) -> list[JobSpec]:
        if not pbs:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no job specs given")
        if len(pbs) > validate.MAX_BATCH:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{len(pbs)} jobs in one batch; at most {validate.MAX_BATCH}",
            )
        # O(batch): converted and validated in a worker thread, off the event loop
        default_ns = auth.principal().default_namespace
        specs = await asyncio.to_thread(convert_specs, pbs, self.cfg, self.replica, batch, default_ns) \
            if len(pbs) > 16 else convert_specs(pbs, self.cfg, self.replica, batch, default_ns)
        if isinstance(specs, str):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, specs)
        first: dict[str, int] = {}
        for i, spec in enumerate(specs):  # type: ignore[arg-type]
            first.setdefault(spec.namespace, i)
        for ns, i in first.items():
            await auth.require_ns(context, ns, f"specs[{i}]: the job" if batch else "the job")
        await admission.require_run_as(context, self.replica.state, specs)  # type: ignore[arg-type]
        return specs  # type: ignore[return-value]

    async def _check_keys(self, specs: list[JobSpec], context,
                          keys: tuple[str, ...] = ()) -> tuple[str, ...]:
        """Idempotency keys: none, or one of at most 256 characters per spec."""
        if keys and len(keys) != len(specs):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"idempotency_keys has {len(keys)} entries for {len(specs)} specs; give one per spec",
            )
        for k in keys:
            if len(k) > 256:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    "idempotency key longer than 256 characters")
        return keys

    async def SubmitJob(self, request, context):
        specs = await self._specs([request.spec] if request.HasField("spec") else [],
                                  context, batch=False)
        key = request.idempotency_key
        keys = await self._check_keys(specs, context, (key,) if key else ())
        new_ids = _new_job_ids(1)  # the same on every retry of this request

        async def local(rid: str) -> scheduler_pb2.SubmitJobResponse:
            (jid, existing), = await self._propose_submit(context, rid, new_ids, specs, keys)
            return scheduler_pb2.SubmitJobResponse(job_id=jid, existing=existing)

        return await self.writes.write(context, request, scheduler_pb2_grpc.SchedulerStub,
                                       "SubmitJob", local)

    async def SubmitJobs(self, request, context):
        specs = await self._specs(list(request.specs), context, batch=True)
        keys = await self._check_keys(specs, context, tuple(request.idempotency_keys))
        new_ids = _new_job_ids(len(specs))

        async def local(rid: str) -> scheduler_pb2.SubmitJobsResponse:
            ids = await self._propose_submit(context, rid, new_ids, specs, keys)
            return scheduler_pb2.SubmitJobsResponse(job_ids=[jid for jid, _ in ids])

        return await self.writes.write(context, request, scheduler_pb2_grpc.SchedulerStub,
                                       "SubmitJobs", local)

    async def _propose_submit(self, context, rid: str, new_ids: list[str], specs: list[JobSpec],
                              keys: tuple[str, ...]) -> tuple[tuple[str, bool], ...]:
        """Submit on the leader; per job (id, existing: an idempotency key matched).
        More than `batches.PART` jobs go as bounded staged parts, then one commit (the
        all-or-nothing decision), then the parts' publication (core.batches)."""
        await self._refuse_early(context, rid, specs, keys)
        jobs = tuple(zip(new_ids, specs, strict=True))
        keys = keys if any(keys) else ()
        retention = settings_now(self.cfg, self.replica).idempotency_retention
        by = auth.principal().name
        if len(jobs) <= batches.PART:
            cmd = SubmitJobs(rid, time.time(), jobs, keys=keys, key_retention_s=retention, by=by)
            res = await self._submit_and_place(context, cmd)
        else:
            parts = batches.split(jobs, keys, by)
            now = time.time()
            await asyncio.gather(*(
                self.writes.propose(context, StageJobs(f"{rid}/s{i}", now, rid, i, len(parts), sub))
                for i, sub in enumerate(parts)))
            res = await self.writes.propose(context, CommitJobs(rid, time.time(), rid, len(parts),
                                                                retention))
            now = time.time()
            await asyncio.gather(*(
                self.writes.propose(context, PublishJobs(f"{rid}/p{i}", now, rid, i))
                for i in range(len(parts))))
        fresh = set(new_ids)
        return tuple((jid, jid not in fresh) for jid in res.value)

    async def _submit_and_place(self, context, cmd: SubmitJobs) -> Result:
        """Propose a submission; with the leader's placement in the same entry when it
        has one (jobs PENDING and ASSIGNED in one commit; node/fastplace.py)."""
        placer = self.placer
        assign = placer.plan(cmd.jobs, cmd.ts) if placer is not None else None
        if placer is None or assign is None:
            return await self.writes.propose(context, cmd)
        outs: list[Result] = []
        try:
            outs = await self.writes.propose_all(context, [cmd, assign])
        finally:  # refused, failed or committed: the reservations go; assigned jobs start
            placer.done(assign, cmd.jobs, outs[1] if outs else None)
        return outs[0]

    async def _refuse_early(self, context, rid: str, specs: list[JobSpec],
                            keys: tuple[str, ...]) -> None:
        """What apply would refuse is refused here, before anything reaches the log."""
        st = self.replica.state
        if rid in st.dedup:
            return  # a retry: apply answers with the first result
        fresh = []
        for i, spec in enumerate(specs):
            hit = st.idem.get(keys[i]) if keys and keys[i] else None
            old = st.jobs.get(hit[0]) if hit else None
            if old is None:
                fresh.append(spec)
            elif old.spec != spec:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"idempotency_key {keys[i]!r} was used for job {old.id} with a different spec; "
                    "use a new key for a different job")
        over = acl.quota_error(st, fresh)
        if over:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, over)

    async def _job(self, context, job_id: str, write: bool = False) -> Job | None:
        """The job named by a request, if it exists and the caller may see its namespace.
        For a write on a follower whose replica does not have the job yet: None (the
        leader, which checks again, decides)."""
        if not job_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_id is empty")
        job = self.replica.state.jobs.get(job_id)
        if job is None:
            if write and not self.writes.raft.is_leader():
                return None
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {job_id} not found")
        assert job is not None
        await auth.require_ns(context, job.spec.namespace, f"job {job_id}")
        return job

    async def GetJob(self, request, context):
        job = await self._job(context, request.job_id)
        assert job is not None
        pb = convert.job_to_pb(job)
        pb.pending_reason = explain.pending_reason(self.replica, self.cfg, job.id)
        return pb

    async def ExplainJob(self, request, context):
        if request.job_id:
            await self._job(context, request.job_id)
        return await explain.explain_job(self.replica, self.cfg, self.writes.me_id, request, context)

    async def PlanJob(self, request, context):
        return await explain.plan_job(self.replica, self.cfg, self.writes.me_id, request, context)

    async def ListJobs(self, request, context):
        states = set()
        for v in request.states:
            s = convert.state_from_pb(v)
            if s is None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown job state {v}")
            states.add(s)
        if request.page_size < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "page_size must be >= 0")
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        newest, name, since = request.newest_first, request.name, request.submitted_since
        after = 0
        if request.page_token:
            token = request.page_token
            if token.startswith(NEWEST) != newest:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    "page_token belongs to a listing in the other order "
                                    "(newest_first must be as on the first page)")
            try:
                after = int(token.removeprefix(NEWEST))
            except ValueError:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"page_token {request.page_token!r} is not one this server made")
        if len(name) > 256:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name: at most 256 characters")
        node, ns, who = request.node_id, request.namespace, auth.principal()
        unrestricted = not ns and who.sees(acl.ALL_NAMESPACES)
        simple = not node and unrestricted and not name and not since
        with self.replica.lock:  # jobs are immutable: copy the references, page outside
            st = self.replica.state
            total = None if not simple else (
                sum(st.counts.get(s, 0) for s in states) if states else len(st.jobs))
            jobs = _first_page(st.jobs, states, size, newest) if not after and simple else None
            if jobs is None:
                jobs = list(reversed(st.jobs.values())) if newest else list(st.jobs.values())
        page = functools.partial(list_page, newest=newest, name=name, since=since)
        return await self.reads.run(context, "ListJobs", page, jobs, states, node, after,
                                    size, total, ns, None if unrestricted else who.sees)

    async def CancelJob(self, request, context):
        await self._job(context, request.job_id, write=True)
        st = self.replica.state
        by = auth.principal().name

        async def local(rid: str) -> scheduler_pb2.CancelJobResponse:
            # Refuse what cannot succeed without writing anything to the log.
            job = st.jobs.get(request.job_id)
            if job is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id} not found")
            if job.state in TERMINAL_STATES and rid not in st.dedup:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"job {job.id} already finished as {job.state.value}; nothing to cancel",
                )
            await self.writes.propose(context, CancelJob(rid, time.time(), request.job_id, by=by))
            return scheduler_pb2.CancelJobResponse(job=convert.job_to_pb(st.jobs[request.job_id]))

        return await self.writes.write(context, request, scheduler_pb2_grpc.SchedulerStub,
                                       "CancelJob", local)

    async def RetryDeadJob(self, request, context):
        await self._job(context, request.job_id, write=True)
        st = self.replica.state

        async def local(rid: str) -> scheduler_pb2.RetryDeadJobResponse:
            job = st.jobs.get(request.job_id)
            if job is not None and job.state is not JobState.DEAD and rid not in st.dedup:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"job {job.id} is {job.state.value}, not DEAD; only dead-lettered jobs can be "
                    "retried (submit it again instead)")
            await self.writes.propose(context, RetryDead(rid, time.time(), request.job_id))
            return scheduler_pb2.RetryDeadJobResponse(job=convert.job_to_pb(st.jobs[request.job_id]))

        return await self.writes.write(context, request, scheduler_pb2_grpc.SchedulerStub,
                                       "RetryDeadJob", local)

    async def PurgeDeadJobs(self, request, context):
        ids = tuple(request.job_ids)

        async def local(rid: str) -> scheduler_pb2.PurgeDeadJobsResponse:
            # Refuse what cannot succeed without writing anything to the log.
            with self.replica.lock:
                st = self.replica.state
                why = None if rid in st.dedup else next(filter(None, (_not_dead(st, j) for j in ids)), None)
            if why:
                await context.abort(why[0], why[1])
            res = await self.writes.propose(context, PurgeDead(rid, time.time(), ids))
            return scheduler_pb2.PurgeDeadJobsResponse(job_ids=list(res.value))

        return await self.writes.write(context, request, scheduler_pb2_grpc.SchedulerStub,
                                       "PurgeDeadJobs", local)
