"""Events service: live job/cluster watches and job output, served by any node.

WatchJobs streams from this node's `WatchHub` (its own replica's applied
changes); positions are Raft (index, ordinal) pairs, equal on every node.
Job output comes from the node that ran the attempt (forwarded there with
`local_only`), falling back to the replicated tail when that node cannot be
reached or no longer keeps the file.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import structlog

from raftsched.config import ClusterConfig
from raftsched.core.model import TERMINAL_STATES, Job
from raftsched.core.names import is_safe_path_component
from raftsched.ports import Peers, RaftStatus, ReplicaView, Runner
from raftsched.replica.watch import ENTRY_END, Change, ClusterChange, JobFilter, Pos, TooOld, WatchHub
from raftsched.rpc import auth
from raftsched.rpc.event_encoding import _encode_all, _encoded, event_bytes, event_pb, pos_pb
from raftsched.rpc.limits import ReadLimiter, StreamLimiter
from raftsched.v1 import events_pb2, events_pb2_grpc, jobs_pb2

log = structlog.get_logger("raftsched.events")

BATCH = 500
DIRECT_IDS = 1000  # an initial send for at most this many named jobs is looked up, not scanned
PROGRESS_EVERY = 1.0  # seconds between position-only messages while idle (few streams)
PROGRESS_RATE = 200.0  # position-only messages per second a node sends at most, all streams
MAX_CHUNK = 1 << 20
GET_LIMIT = 16 << 20  # GetJobOutput returns at most this much of each stream (the end)
FOLLOW_POLL = 0.1
FORWARD_TIMEOUT = 5.0
# With many watchers, each waits this long after a wake-up so that one wake-up
# carries many entries' changes (fewer wake-ups of every stream per second).
COALESCE_FROM = 50  # open streams
COALESCE = 0.2
# A resume position beyond this node's applied index: wait this long for a lagging
# replica to catch up before refusing it as a position this cluster never reached.
AHEAD_WAIT = 2.0

KIND = {
    "LEADER_CHANGED": events_pb2.LEADER_CHANGED,
    "NODE_DOWN": events_pb2.NODE_DOWN,
    "NODE_UP": events_pb2.NODE_UP,
    "NODE_SCHEDULING": events_pb2.NODE_SCHEDULING,
    "NODE_UPDATED": events_pb2.NODE_UPDATED,
    "CLUSTER_CONFIG": events_pb2.CLUSTER_CONFIG,
}


def cluster_pb(ev: ClusterChange, observed_by: str, initial: bool = False) -> events_pb2.ClusterEvent:
    return events_pb2.ClusterEvent(kind=KIND[ev.kind], node_id=ev.node_id, term=ev.term, at=ev.at,
                                   raft_index=ev.raft_index, reason=ev.reason, initial=initial,
                                   observed_by=observed_by)


def _initial(jobs: list[Job], filt: JobFilter) -> list[Job]:
    """The jobs a new watcher is sent first, in submission order (worker thread)."""
    out = [j for j in jobs if filt(j)]
    out.sort(key=lambda j: j.seq)
    return out


def output_paths(data_dir: Path, job_id: str, attempt: int) -> tuple[Path, Path]:
    """Where executor.py writes an attempt's output."""
    out = data_dir / "output"
    if not is_safe_path_component(job_id):
        # never a path built from it: the executor refuses to run such a job, so there is
        # no file; this name (leading dot) is one no safe job id produces
        return out / ".unsafe-job-id.out", out / ".unsafe-job-id.err"
    return out / f"{job_id}.{attempt}.out", out / f"{job_id}.{attempt}.err"


def _read_from(path: Path, offset: int, limit: int = MAX_CHUNK) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(limit)
    except OSError:
        return b""


def _read_last(path: Path, limit: int) -> tuple[bytes, int]:
    """The last `limit` bytes of a file and how many bytes before them were left out."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            skip = max(0, size - limit)
            f.seek(skip)
            return f.read(limit), skip
    except OSError:
        return b"", 0


def attempt_node(job: Job, attempt: int) -> str:
    """Node that ran `attempt` of `job`, from its history ("" if unknown)."""
    if attempt == job.attempt:
        return job.node_id
    for t in reversed(job.history):
        if t.attempt == attempt and t.node_id:
            return t.node_id
    return ""


class EventsServicer(events_pb2_grpc.EventsServicer):
    def __init__(self, cfg: ClusterConfig, me_id: str, data_dir: Path, replica: ReplicaView,
                 raft: RaftStatus, peers: Peers, watch: WatchHub, runner: Runner,
                 reads: ReadLimiter | None = None, streams: StreamLimiter | None = None) -> None:
        self.reads = reads or ReadLimiter()
        self.streams = streams or StreamLimiter()
        self.cfg = cfg
        self.me_id = me_id
        self.data_dir = data_dir
        self.replica = replica
        self.raft = raft
        self.peers = peers
        self.watch = watch
        self.runner = runner

    # ---- WatchJobs -----------------------------------------------------------------

    async def _filter(self, request, context) -> JobFilter:
        states = set()
        for v in request.states:
            if v not in jobs_pb2.JobState.values() or v == 0:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"states: unknown job state {v}; use one of "
                                    f"{', '.join(n for n in jobs_pb2.JobState.keys() if n[0] != 'J')}")  # noqa: SIM118
            states.add(jobs_pb2.JobState.Name(v))
        who = auth.principal()  # only jobs of the caller's namespaces
        return JobFilter(set(request.job_ids), request.workflow_id, states, request.node_id,
                         None if auth.ALL_NAMESPACES in who.namespaces else who.sees)

    async def _reached(self, pos: Pos, context) -> None:
        """Refuse a resume position this node's replica has not reached within AHEAD_WAIT."""
        deadline = time.monotonic() + AHEAD_WAIT
        while self.replica.state.applied_index < pos[0] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        applied = self.replica.state.applied_index
        if applied < pos[0]:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"resume_from {pos[0]}.{pos[1]} is ahead of this node's applied index {applied}: "
                "not a position of this cluster (use one printed by a watch of it)")

    async def WatchJobs(self, request, context):
        async with self.streams.hold(context, "WatchJobs"):
            async for msg in self._watch_jobs(request, context):
                yield msg

    async def _watch_jobs(self, request, context):
        hub = self.watch
        filt = await self._filter(request, context)
        gen = hub.generation
        if request.has_resume_from:
            after: Pos = (request.resume_from.index, request.resume_from.ordinal)
            await self._reached(after, context)
            try:
                cursor = hub.cursor_after(after)
            except TooOld as e:
                await context.abort(grpc.StatusCode.OUT_OF_RANGE, str(e))
            yield events_pb2.WatchJobsResponse(position=pos_pb(after), synced=True)
        elif request.send_initial:
            with self.replica.lock:  # jobs are immutable: copy the references, filter outside
                index = self.replica.state.applied_index
                table = self.replica.state.jobs
                named = filt.job_ids and len(filt.job_ids) <= DIRECT_IDS
                picked = [table[i] for i in filt.job_ids if i in table] if named else list(table.values())
            if named:  # a few named jobs (Client.wait): no scan, no expensive-read slot
                jobs = _initial(picked, filt)
            else:
                jobs = await self.reads.run(context, "WatchJobs send_initial", _initial, picked, filt)
            after = (index, ENTRY_END)
            cursor = hub.cursor_after(max(after, hub.floor))
            for i in range(0, len(jobs), BATCH):
                yield events_pb2.WatchJobsResponse(
                    events=[event_pb(Change(after, j), initial=True) for j in jobs[i:i + BATCH]],
                    position=pos_pb(after))
            yield events_pb2.WatchJobsResponse(position=pos_pb(after), synced=True)
        else:
            after = hub.last_pos
            cursor = hub.end
            yield events_pb2.WatchJobsResponse(position=pos_pb(after), synced=True)
        sent = after
        last_msg = time.monotonic()
        while True:
            # progress messages of all streams together stay under PROGRESS_RATE per second
            # (etcd sends them every 10 minutes by default; a client learns the position
            # from every event anyway)
            progress_every = max(PROGRESS_EVERY, len(self.streams) / PROGRESS_RATE)
            try:
                changes = hub.read(cursor, BATCH, gen)
            except TooOld as e:
                await context.abort(grpc.StatusCode.OUT_OF_RANGE,
                                     f"{e} (last position sent: {sent[0]}.{sent[1]})")
            if changes:
                if filt.job_ids and filt.job_ids.isdisjoint(hub.ids(cursor, len(changes))):
                    matched = []
                elif filt.everything and changes[0].pos > after:
                    matched = changes
                else:
                    matched = [c for c in changes if c.pos > after and filt(c.job)]
                cursor += len(changes)
                newest = changes[-1].pos
                if newest > sent and (matched or time.monotonic() - last_msg >= progress_every):
                    sent = newest
                    last_msg = time.monotonic()
                    misses = [ch for ch in matched if ch.pos not in _encoded]
                    if len(misses) > 32:  # a burst of new changes: encode them off the loop
                        await asyncio.to_thread(_encode_all, misses)
                    parts = []
                    for k, ch in enumerate(matched):
                        parts.append(event_bytes(ch))
                        if k % 64 == 63:  # encoding a burst of new changes: let others run
                            await asyncio.sleep(0)
                    yield b"".join(parts) + events_pb2.WatchJobsResponse(
                        position=pos_pb(newest)).SerializeToString()
                continue
            if hub.last_pos > sent and time.monotonic() - last_msg >= progress_every:
                sent = hub.last_pos
                last_msg = time.monotonic()
                yield events_pb2.WatchJobsResponse(position=pos_pb(sent))
            if await hub.wait(cursor, progress_every, filt.job_ids):
                cursor = hub.end  # woken by the pulse alone: nothing since concerns this stream
            if len(self.streams) >= COALESCE_FROM:
                await asyncio.sleep(COALESCE)

    # ---- WatchCluster ----------------------------------------------------------------

    async def WatchCluster(self, request, context):
        async with self.streams.hold(context, "WatchCluster"):
            async for msg in self._watch_cluster(request, context):
                yield msg

    async def _watch_cluster(self, request, context):
        q: asyncio.Queue[ClusterChange | None] = asyncio.Queue(maxsize=10_000)
        self.watch.cluster_subscribers.add(q)
        try:
            if request.send_initial:
                lc = self.raft.leader_config()
                if lc is not None:
                    yield cluster_pb(ClusterChange("LEADER_CHANGED", lc.id, self.raft.term(), time.time()),
                                     self.me_id, initial=True)
                with self.replica.lock:
                    nodes = list(self.replica.state.nodes.values())
                for n in sorted(nodes, key=lambda n: n.id):
                    kind = "NODE_UP" if n.alive else "NODE_DOWN"
                    yield cluster_pb(ClusterChange(kind, n.id, 0, n.since), self.me_id, initial=True)
            while True:
                ev = await q.get()
                if ev is None:
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                        "cluster watcher too slow; reconnect")
                yield cluster_pb(ev, self.me_id)
        finally:
            self.watch.cluster_subscribers.discard(q)

    # ---- output ----------------------------------------------------------------------

    async def _locate(self, request, context) -> tuple[Job, int, str]:
        if not request.job_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_id is empty")
        job = self.replica.state.jobs.get(request.job_id)
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id} not found")
        assert job is not None  # abort raises
        await auth.require_ns(context, job.spec.namespace, f"job {job.id}")
        attempt = request.attempt or job.attempt
        if request.attempt < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"attempt is {request.attempt}; it must be >= 0 (0: the latest)")
        if attempt > job.attempt:  # a well-formed request for something that does not exist
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"attempt {request.attempt}: job {job.id} has attempts 1..{job.attempt}")
        if attempt == 0:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"job {job.id} has not been assigned yet; no output")
        return job, attempt, attempt_node(job, attempt)

    def _running(self, job_id: str, attempt: int) -> bool:
        job = self.replica.state.jobs.get(job_id)
        if job is None or job.attempt != attempt:
            return False
        return job.state not in TERMINAL_STATES and job.state.value != "PENDING"

    def _tail(self, job: Job, attempt: int, node: str, note: str) -> events_pb2.JobOutputResponse:
        if attempt != job.attempt:
            note += f"; the cluster keeps only the tail of the latest attempt ({job.attempt})"
            return events_pb2.JobOutputResponse(job_id=job.id, attempt=attempt, node_id=node,
                                                source=events_pb2.REPLICATED_TAIL, truncated=True,
                                                note=note)
        return events_pb2.JobOutputResponse(
            job_id=job.id, attempt=attempt, node_id=node, source=events_pb2.REPLICATED_TAIL,
            stdout=job.stdout_tail.encode(), stderr=job.stderr_tail.encode(), truncated=True,
            note=note, running=self._running(job.id, attempt))

    async def GetJobOutput(self, request, context):
        job, attempt, node = await self._locate(request, context)
        if node == self.me_id or request.local_only:
            out, err = output_paths(self.data_dir, job.id, attempt)
            if out.exists() or err.exists() or self.runner.keeps_output(job.id, attempt):
                (o, o_cut), (e, e_cut) = [await asyncio.to_thread(_read_last, p, GET_LIMIT) for p in (out, err)]
                note = ""
                if o_cut or e_cut:
                    note = (f"only the last {GET_LIMIT >> 20} MiB of each stream; "
                            "FollowJobOutput (logs --follow) streams everything")
                return events_pb2.JobOutputResponse(
                    job_id=job.id, attempt=attempt, node_id=self.me_id, source=events_pb2.NODE_FILE,
                    stdout=o, stderr=e, truncated=bool(o_cut or e_cut), note=note,
                    running=self._running(job.id, attempt))
            if request.local_only:
                await context.abort(grpc.StatusCode.NOT_FOUND,
                                    f"node {self.me_id} no longer keeps the output of "
                                    f"{job.id} attempt {attempt}")
            return self._tail(job, attempt, node, f"node {node} no longer keeps the output file")
        stub = self._stub(node)
        if stub is None:
            return self._tail(job, attempt, node, f"node {node} is not known")
        req = events_pb2.JobOutputRequest(job_id=job.id, attempt=attempt, local_only=True)
        try:
            return await stub.GetJobOutput(req, timeout=FORWARD_TIMEOUT,
                                           metadata=auth.passthrough(context))
        except grpc.aio.AioRpcError as e:
            log.info("output fallback to tail", job=job.id, attempt=attempt, node=node,
                     code=str(e.code()))
            return self._tail(job, attempt, node, f"node {node}: {e.details() or e.code().name}")

    def _stub(self, node_id: str) -> events_pb2_grpc.EventsStub | None:
        n = self.replica.state.nodes.get(node_id)
        addr = n.grpc_address if n else next((c.grpc for c in self.cfg.nodes if c.id == node_id), "")
        if not addr:
            return None
        return events_pb2_grpc.EventsStub(self.peers.channel(addr))

    async def FollowJobOutput(self, request, context):
        job, attempt, node = await self._locate(request, context)
        if node == self.me_id or request.local_only:
            async for chunk in self._follow_local(job.id, attempt, request, context):
                yield chunk
            return
        stub = self._stub(node)
        if stub is not None:
            req = events_pb2.JobOutputRequest(job_id=job.id, attempt=attempt, local_only=True,
                                              stdout_offset=request.stdout_offset,
                                              stderr_offset=request.stderr_offset)
            got_any = False
            try:
                async for chunk in stub.FollowJobOutput(req, metadata=auth.passthrough(context)):
                    got_any = True
                    yield chunk
                return
            except grpc.aio.AioRpcError as e:
                if got_any:  # the node went away mid-stream: finish from the cluster's tail
                    log.info("follow interrupted; falling back to tail", job=job.id, node=node)
                note = f"node {node}: {e.details() or e.code().name}"
        else:
            note = f"node {node} is not known"
        # Fallback: wait for the attempt to end, then send the replicated tail.
        while self._running(job.id, attempt):
            await asyncio.sleep(0.2)
        j = self.replica.state.jobs[job.id]
        tail = self._tail(j, attempt, node, note)
        yield events_pb2.JobOutputChunk(stdout=tail.stdout, stderr=tail.stderr,
                                        source=events_pb2.REPLICATED_TAIL, node_id=node,
                                        attempt=attempt, done=True, note=tail.note)

    async def _follow_local(self, job_id: str, attempt: int, request, context):
        out, err = output_paths(self.data_dir, job_id, attempt)
        offs = [request.stdout_offset, request.stderr_offset]
        if (not (out.exists() or err.exists()) and not self._running(job_id, attempt)
                and not self.runner.keeps_output(job_id, attempt)):
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"node {self.me_id} no longer keeps the output of "
                                f"{job_id} attempt {attempt}")
        while True:
            # Decide "finished" before reading, so the last read sees everything written.
            finished = not self._running(job_id, attempt) and not self._local_running(job_id, attempt)
            data = [await asyncio.to_thread(_read_from, p, o) for p, o in zip((out, err), offs, strict=True)]
            offs = [o + len(d) for o, d in zip(offs, data, strict=True)]
            more = any(len(d) == MAX_CHUNK for d in data)
            if data[0] or data[1] or (finished and not more):
                yield events_pb2.JobOutputChunk(stdout=data[0], stderr=data[1],
                                                source=events_pb2.NODE_FILE, node_id=self.me_id,
                                                attempt=attempt, done=finished and not more)
            if finished and not more:
                return
            if not more:
                await asyncio.sleep(FOLLOW_POLL)

    def _local_running(self, job_id: str, attempt: int) -> bool:
        return (job_id, attempt) in self.runner.running
