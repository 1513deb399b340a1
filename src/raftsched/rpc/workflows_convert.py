"""proto <-> model for the Workflows service: templates, schedules, overrides."""

from __future__ import annotations

import time
from dataclasses import replace

from raftsched.core import cron
from raftsched.core.model import JobSpec, Resources
from raftsched.core.workflow_types import Concurrency, Misfire, Schedule, Template
from raftsched.rpc import convert
from raftsched.v1 import workflows_pb2

MISFIRE = {0: Misfire.SKIP, 1: Misfire.RUN_ONCE, 2: Misfire.RUN_ALL}
CONCURRENCY = {0: Concurrency.ALLOW, 1: Concurrency.FORBID, 2: Concurrency.REPLACE}


def template_to_pb(t: Template) -> workflows_pb2.Template:
    return workflows_pb2.Template(
        name=t.name, spec=convert.spec_to_pb(t.spec), cron=t.cron, timezone=t.timezone,
        description=t.description, created_at=t.created_at, updated_at=t.updated_at,
        version=t.version,
    )


def next_fire_of(s: Schedule) -> float | None:
    if s.paused:
        return None
    try:
        got = cron.fires(cron.parse(s.cron), cron.zone(s.timezone), s.last_fired, 1,
                         start=s.start, end=s.end)
    except cron.CronError:
        return None
    return got[0] if got else None


def schedule_to_pb(s: Schedule) -> workflows_pb2.Schedule:
    inv_m = {v: k for k, v in MISFIRE.items()}
    inv_c = {v: k for k, v in CONCURRENCY.items()}
    return workflows_pb2.Schedule(
        id=s.id, cron=s.cron, timezone=s.timezone, spec=convert.spec_to_pb(s.spec),
        template=s.template, start=s.start or 0.0, end=s.end or 0.0,
        misfire=inv_m[s.misfire], misfire_threshold_seconds=s.misfire_threshold_s,  # type: ignore[arg-type]
        misfire_deadline_seconds=s.misfire_deadline_s, concurrency=inv_c[s.concurrency],  # type: ignore[arg-type]
        paused=s.paused, created_at=s.created_at, last_fired=s.last_fired,
        last_job_id=s.last_job_id, runs=s.runs, skipped=s.skipped,
        next_fire=next_fire_of(s) or 0.0,
    )


def apply_overrides(spec: JobSpec, o: workflows_pb2.SpecOverrides) -> JobSpec:
    if o.command:
        spec = replace(spec, command=tuple(o.command), shell="", use_shell=False)
    if o.HasField("shell"):
        spec = replace(spec, shell=o.shell, use_shell=True, command=())
    if o.env:
        env = dict(spec.env)
        env.update(o.env)
        spec = replace(spec, env=tuple(sorted(env.items())))
    if o.HasField("working_dir"):
        spec = replace(spec, working_dir=o.working_dir)
    if o.HasField("cpu_millis") or o.HasField("memory_mib"):
        r = spec.resources
        spec = replace(spec, resources=Resources(
            o.cpu_millis if o.HasField("cpu_millis") else r.cpu_millis,
            o.memory_mib if o.HasField("memory_mib") else r.memory_mib))
    if o.HasField("priority"):
        spec = replace(spec, priority=o.priority)
    if o.HasField("timeout_seconds"):
        spec = replace(spec, timeout_s=o.timeout_seconds)
    if o.HasField("name"):
        spec = replace(spec, name=o.name)
    return spec


def schedule_problem(pb: workflows_pb2.Schedule, expr: str, tzname: str, threshold: float,
                     deadline: float, max_deadline: float) -> str | None:
    """Why a schedule's policies or cron expression are refused, naming the field; None if fine."""
    if pb.misfire not in MISFIRE:
        return f"misfire policy {pb.misfire} unknown"
    if pb.concurrency not in CONCURRENCY:
        return f"concurrency policy {pb.concurrency} unknown"
    if not 0 < threshold <= 3600:
        return "misfire_threshold_seconds must be in (0, 3600]"
    if not threshold <= deadline <= max_deadline:
        return ("misfire_deadline_seconds must be between misfire_threshold_seconds and "
                f"{max_deadline:.0f}")
    try:
        cron.check_can_fire(cron.parse(expr), cron.zone(tzname), time.time(), pb.start or None,
                            pb.end or None)
    except cron.CronError as e:
        return str(e)
    return None
