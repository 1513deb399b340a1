"""proto <-> model conversions. No logic beyond defaults."""

from __future__ import annotations

from raftsched.core import nodes
from raftsched.core.model import (
    DEFAULT_NAMESPACE,
    DEFAULT_REQUEST,
    AttemptRecord,
    Constraint,
    Job,
    JobSpec,
    JobState,
    Node,
    PythonCall,
    ResourceLimits,
    Resources,
    RetryPolicy,
    Transition,
)
from raftsched.v1 import cluster_pb2, jobs_pb2


def spec_from_pb(p: jobs_pb2.JobSpec, namespace: str = DEFAULT_NAMESPACE) -> JobSpec:
    """`namespace`: the namespace of a spec that names none (the caller's default)."""
    res = DEFAULT_REQUEST
    if p.HasField("resources"):
        cpu = p.resources.cpu_millis
        mem = p.resources.memory_mib
        # A field left at 0 takes the default request; negative stays negative (refused).
        res = Resources(cpu if cpu != 0 else DEFAULT_REQUEST.cpu_millis,
                        mem if mem != 0 else DEFAULT_REQUEST.memory_mib)
    return JobSpec(
        command=tuple(p.command),
        shell=p.shell,
        use_shell=p.use_shell,
        env=tuple(sorted(p.env.items())),
        working_dir=p.working_dir,
        resources=res,
        priority=p.priority,
        timeout_s=p.timeout_seconds,
        name=p.name,
        retry=retry_from_pb(p.retry) if p.HasField("retry") else RetryPolicy(),
        constraints=tuple(Constraint(c.key, c.op or "eq", c.value) for c in p.constraints),
        sequence_key=p.sequence_key,
        limits=ResourceLimits(p.limits.memory_mib, p.limits.cpu_millis, p.limits.pids),
        pool=p.pool,
        namespace=p.namespace or namespace,
        run_as=p.run_as,
        python=PythonCall(p.python.target, p.python.args_json, p.python.kwargs_json),
    )


# Specs converted lately, by their serialised bytes: a stream of submissions or starts
# mostly repeats a few specs, and serialising one (C, ~1 us) is far cheaper than
# converting it (~17 us). JobSpec is immutable, so one may serve many jobs. Bounded in
# count and in the size of what it keeps.
SPEC_CACHE_ENTRIES = 512
SPEC_CACHE_MAX_BYTES = 4096
_spec_cache: dict[tuple[bytes, str], JobSpec] = {}


def spec_from_pb_cached(p: jobs_pb2.JobSpec, namespace: str = DEFAULT_NAMESPACE,
                        request: dict[bytes, JobSpec] | None = None) -> JobSpec:
    """`spec_from_pb`, from the cache when the same spec was converted lately.
    `request`: the specs of one request so far, any size (a batch of one large spec
    repeated is converted once, though too large for the shared cache)."""
    raw = p.SerializeToString(deterministic=True)
    if request is not None and (spec := request.get(raw)) is not None:
        return spec
    key = (raw, namespace)
    spec = _spec_cache.get(key) if len(raw) <= SPEC_CACHE_MAX_BYTES else None
    if spec is None:
        spec = spec_from_pb(p, namespace)
        if len(raw) <= SPEC_CACHE_MAX_BYTES:
            if len(_spec_cache) >= SPEC_CACHE_ENTRIES:
                _spec_cache.pop(next(iter(_spec_cache)), None)  # the oldest
            _spec_cache[key] = spec
    if request is not None:
        request[raw] = spec
    return spec


def retry_from_pb(r: jobs_pb2.RetryPolicy) -> RetryPolicy:
    d = RetryPolicy()
    return RetryPolicy(
        max_attempts=r.max_attempts,
        initial_delay_s=r.initial_delay_seconds if r.HasField("initial_delay_seconds") else d.initial_delay_s,
        multiplier=r.multiplier if r.HasField("multiplier") else d.multiplier,
        max_delay_s=r.max_delay_seconds if r.HasField("max_delay_seconds") else d.max_delay_s,
        jitter=r.jitter,
    )


def retry_to_pb(r: RetryPolicy) -> jobs_pb2.RetryPolicy:
    return jobs_pb2.RetryPolicy(
        max_attempts=r.max_attempts, initial_delay_seconds=r.initial_delay_s,
        multiplier=r.multiplier, max_delay_seconds=r.max_delay_s, jitter=r.jitter,
    )


def attempt_to_pb(a: AttemptRecord) -> jobs_pb2.AttemptRecord:
    return jobs_pb2.AttemptRecord(
        attempt=a.attempt, node_id=a.node_id, fencing_token=a.token, assigned_at=a.assigned_at,
        started_at=a.started_at, finished_at=a.finished_at, outcome=a.outcome,
        exit_code=a.exit_code if a.exit_code is not None else 0,
        has_exit_code=a.exit_code is not None, reason=a.reason,
    )


# Jobs of one batch share their spec object: its message is built once. Keyed by
# identity; the entry holds the spec, so its id cannot be reused while cached.
_SPEC_CACHE: dict[int, tuple[JobSpec, jobs_pb2.JobSpec]] = {}
_SPEC_CACHE_SIZE = 512


def spec_to_pb(s: JobSpec) -> jobs_pb2.JobSpec:
    hit = _SPEC_CACHE.get(id(s))
    if hit is not None and hit[0] is s:
        return hit[1]
    pb = _spec_to_pb(s)
    if len(_SPEC_CACHE) >= _SPEC_CACHE_SIZE:
        for k in list(_SPEC_CACHE)[:_SPEC_CACHE_SIZE // 4]:
            _SPEC_CACHE.pop(k, None)
    _SPEC_CACHE[id(s)] = (s, pb)
    return pb


def _spec_to_pb(s: JobSpec) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(
        command=list(s.command),
        shell=s.shell,
        use_shell=s.use_shell,
        env=dict(s.env),
        working_dir=s.working_dir,
        resources=jobs_pb2.Resources(
            cpu_millis=s.resources.cpu_millis, memory_mib=s.resources.memory_mib
        ),
        priority=s.priority,
        timeout_seconds=s.timeout_s,
        name=s.name,
        retry=retry_to_pb(s.retry) if s.retry != RetryPolicy() else None,
        constraints=[jobs_pb2.Constraint(key=c.key, op=c.op, value=c.value) for c in s.constraints],
        sequence_key=s.sequence_key,
        limits=jobs_pb2.ResourceLimits(memory_mib=s.limits.memory_mib, cpu_millis=s.limits.cpu_millis,
                                       pids=s.limits.pids) if s.limits != ResourceLimits() else None,
        pool=s.pool,
        namespace=s.namespace,
        run_as=s.run_as,
        python=jobs_pb2.PythonCall(target=s.python.target, args_json=s.python.args_json,
                                   kwargs_json=s.python.kwargs_json) if s.python.target else None,
    )


_STATE_PB = {s: int(jobs_pb2.JobState.Value(s.value)) for s in JobState}


def state_to_pb(s: JobState) -> int:
    return _STATE_PB[s]


def state_from_pb(v: int) -> JobState | None:
    name = jobs_pb2.JobState.Name(v)
    try:
        return JobState(name)
    except ValueError:
        return None


def job_to_pb(j: Job) -> jobs_pb2.Job:
    return jobs_pb2.Job(
        id=j.id,
        spec=spec_to_pb(j.spec),
        state=state_to_pb(j.state),  # type: ignore[arg-type]
        node_id=j.node_id,
        attempt=j.attempt,
        fencing_token=j.fencing_token,
        seq=j.seq,
        submitted_at=j.submitted_at,
        assigned_at=j.assigned_at,
        started_at=j.started_at,
        finished_at=j.finished_at,
        exit_code=j.exit_code if j.exit_code is not None else 0,
        has_exit_code=j.exit_code is not None,
        reason=j.reason,
        stdout_tail=j.stdout_tail,
        stderr_tail=j.stderr_tail,
        not_before=j.not_before,
        failures=j.failures,
        attempts=[attempt_to_pb(a) for a in j.attempts],
        cancel_requested_at=j.cancel_requested_at,
        submitted_by=j.submitted_by,
        cancelled_by=j.cancelled_by,
        # workflows and schedules (issue 5)
        workflow_id=j.workflow_id,
        depends_on=list(j.depends_on),
        schedule_id=j.schedule_id,
        scheduled_at=j.scheduled_at,
        history=[transition_to_pb(t) for t in j.history],
        result_json=j.result,
    )


def transition_to_pb(t: Transition) -> jobs_pb2.JobTransition:
    return jobs_pb2.JobTransition(
        at=t.ts,
        state=state_to_pb(t.state),  # type: ignore[arg-type]
        node_id=t.node_id,
        attempt=t.attempt,
        fencing_token=t.token,
        reason=t.reason,
    )


def resources_to_pb(r: Resources) -> jobs_pb2.Resources:
    return jobs_pb2.Resources(cpu_millis=r.cpu_millis, memory_mib=r.memory_mib)


def node_to_pb(n: Node, allocated: Resources, running: int, hb_age: float) -> cluster_pb2.NodeInfo:
    return cluster_pb2.NodeInfo(
        id=n.id,
        grpc_address=n.grpc_address,
        raft_address=n.raft_address,
        capacity=resources_to_pb(n.capacity),
        allocated=resources_to_pb(allocated),
        alive=n.alive,
        running_jobs=running,
        labels=dict(n.labels),
        last_heartbeat_age=hb_age,
        dedicated_pool=n.dedicated,
        eligible=n.eligible,
        draining=bool(n.drain_deadline),
        drain_deadline=n.drain_deadline,
        scheduling=nodes.scheduling(n, running),
        label_overrides=dict(n.label_overrides), labels_removed=list(n.labels_removed),
        cpu_override=n.cpu_override, memory_override=n.memory_override, incarnation=n.incarnation,
    )
