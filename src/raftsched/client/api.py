"""`raftsched.Client`: the public Python client of a raftsched cluster.

    import raftsched
    with raftsched.Client(config="cluster.toml") as c:      # or Client(["10.0.0.1:7001", ...], ca=...)
        job = c.submit(python="myapp.tasks:add", args=[1, 2], retry=3, timeout=30)
        print(c.result(job))                                 # 3
        c.submit(["sh", "-c", "echo hi"])                    # a command job

Security is that of the CLI: give `ca`/`cert`/`key` (PEM files) and `token`, or
`config=` a local cluster's config and its generated client certificate and
bootstrap token are used (then $RAFTSCHED_CA/CERT/KEY and $RAFTSCHED_TOKEN win).

Every write gets one request id, reused when the call is retried on the next node
after UNAVAILABLE: a retried submit never runs twice. Reads are answered by any
node from its replica; `wait`/`result` follow the job through a resumable watch.
Built over the service clients of this package (`client.client`, `workflows_client`,
`observe_client`), which stay available for everything else.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import raftsched.config as configmod
from raftsched.client.client import Client as JobsClient
from raftsched.client.credentials import discover, discover_token
from raftsched.client.observe_client import JobWatcher
from raftsched.client.specs import job_spec
from raftsched.client.workflows_client import WorkflowsClient
from raftsched.v1 import jobs_pb2
from raftsched.v1 import workflows_pb2 as wpb

TERMINAL = frozenset({jobs_pb2.SUCCEEDED, jobs_pb2.FAILED, jobs_pb2.CANCELLED, jobs_pb2.TIMED_OUT,
                      jobs_pb2.DEAD, jobs_pb2.UPSTREAM_FAILED})


class TaskError(Exception):
    """`Client.result()` of a job that did not succeed. `job` is its final state;
    `traceback` the tail of a Python task's traceback (or of a command's stderr)."""

    def __init__(self, job: jobs_pb2.Job) -> None:
        self.job = job
        self.state = jobs_pb2.JobState.Name(job.state)
        self.reason = job.reason
        self.traceback = job.stderr_tail
        super().__init__(f"job {job.id} ended {self.state}: {job.reason}")


def _state_numbers(states: Iterable[int | str]) -> list[int]:
    return [jobs_pb2.JobState.Value(s.upper()) if isinstance(s, str) else int(s) for s in states]


class Client:
    """A connection to a raftsched cluster: any list of its nodes' gRPC addresses."""

    def __init__(self, nodes: Sequence[str] | str | None = None, *,
                 config: str | os.PathLike[str] | None = None, ca: str | None = None,
                 cert: str | None = None, key: str | None = None, token: str | None = None,
                 timeout: float = 20.0) -> None:
        cfg = configmod.load(config) if config is not None else None
        if isinstance(nodes, str):
            nodes = [nodes]
        addrs = list(nodes or ([n.grpc for n in cfg.nodes] if cfg else []))
        if not addrs:
            raise ValueError("give node addresses (host:port) or config= a cluster config file")
        data_dir: Path | None = cfg.data_dir if cfg else None
        self.tls = discover(ca, cert, key, data_dir, cfg.tls if cfg else True)
        self.token = discover_token(token, data_dir)
        self.addresses = addrs
        self.jobs = JobsClient(addrs, timeout, tls=self.tls, token=self.token)
        self._workflows: WorkflowsClient | None = None

    def close(self) -> None:
        self.jobs.close()
        if self._workflows is not None:
            self._workflows.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def workflows(self) -> WorkflowsClient:
        """The Workflows service client (templates, schedules, DAGs), on the same nodes."""
        if self._workflows is None:
            self._workflows = WorkflowsClient(self.addresses, self.jobs.timeout, tls=self.tls,
                                              token=self.token)
        return self._workflows

    # ---- jobs ---------------------------------------------------------------------

    def submit(self, command: Sequence[str] | str | None = None, *, python: str | None = None,
               args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
               spec: jobs_pb2.JobSpec | None = None, idempotency_key: str | None = None,
               request_id: str | None = None, **options: Any) -> str:
        """Submit one job; returns its id. A command (argv list, or a shell string), or a
        Python task `python="package.module:function"` with JSON-serialisable args/kwargs.
        Options: name, priority, timeout (s), retry (max attempts or a RetryPolicy),
        cpu_millis, memory_mib, env, working_dir, pool, namespace, constraints
        ((key, op, value), ...), sequence_key. Or pass a ready `spec`."""
        if spec is None:
            spec = job_spec(command, python=python, args=args, kwargs=kwargs, **options)
        return self.jobs.submit(spec, request_id or uuid.uuid4().hex, idempotency_key)

    def submit_many(self, specs: Iterable[jobs_pb2.JobSpec | Mapping[str, Any]],
                    request_id: str | None = None) -> list[str]:
        """Submit a batch in one replicated entry (all or none); each item a JobSpec or
        the keyword arguments of `submit` as a dict (e.g. {"python": ..., "args": [...]})."""
        built = [s if isinstance(s, jobs_pb2.JobSpec) else job_spec(**s) for s in specs]
        return self.jobs.submit_batch(built, request_id or uuid.uuid4().hex)

    def get(self, job_id: str, consistent: bool = False) -> jobs_pb2.Job:
        """The job as one node's replica has it (`last_freshness` says how fresh);
        `consistent=True`: linearizable, through the leader (UNAVAILABLE without one)."""
        return self.jobs.get(job_id, consistent)

    @property
    def last_freshness(self) -> dict[str, Any] | None:
        """Freshness of the last read: node, applied_index, leader, stale, contact_age."""
        return self.jobs.last_freshness

    def wait(self, job_id: str, timeout: float | None = None) -> jobs_pb2.Job:
        """The job once it is terminal (SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, DEAD...)."""
        return self.wait_all([job_id], timeout)[job_id]

    def wait_all(self, job_ids: Sequence[str], timeout: float | None = None) -> dict[str, jobs_pb2.Job]:
        """Every job of `job_ids` once terminal, by id. TimeoutError after `timeout` seconds."""
        return wait_terminal(self.jobs, job_ids, timeout)

    def result(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait for the job; a succeeded Python task's return value (None for a command
        job). TaskError if it did not succeed (its reason and traceback tail)."""
        return result_of(self.wait(job_id, timeout))

    def cancel(self, job_id: str) -> jobs_pb2.Job:
        return self.jobs.cancel(job_id, uuid.uuid4().hex)

    def watch(self, job_ids: Sequence[str] = (), *, workflow_id: str = "",
              states: Iterable[int | str] = (), resume_from: tuple[int, int] | None = None,
              send_initial: bool = False) -> JobWatcher:
        """A live, resumable watch of job changes: iterate `.events()` (JobEvent) or
        `.responses()`; `.position` is where to resume (on any node); `.cancel()` stops it.
        It reconnects to the next node by itself, from its last position."""
        return JobWatcher(self.addresses, job_ids=job_ids, workflow_id=workflow_id,
                          states=_state_numbers(states), resume_from=resume_from,
                          send_initial=send_initial, token=self.token, tls=self.tls)

    def list(self, states: Iterable[int | str] = (), *, namespace: str = "",
             node_id: str = "", consistent: bool = False) -> Iterator[jobs_pb2.Job]:
        """Jobs in submission order (every page), optionally only in `states`;
        `consistent=True`: every page is a linearizable read."""
        return self.jobs.list_all(_state_numbers(states), node_id, namespace, consistent)

    # ---- templates, cron, DAGs (thin helpers over the Workflows service) ------------

    def create_template(self, name: str, spec: jobs_pb2.JobSpec, *, description: str = "",
                        cron: str = "", timezone: str = "") -> wpb.Template:
        t = wpb.Template(name=name, spec=spec, description=description, cron=cron, timezone=timezone)
        return self.workflows.call("CreateTemplate", wpb.PutTemplateRequest(template=t))

    def submit_template(self, name: str, overrides: wpb.SpecOverrides | None = None) -> str:
        req = wpb.SubmitFromTemplateRequest(template=name, overrides=overrides)
        return str(self.workflows.call("SubmitFromTemplate", req).job_id)

    def add_cron(self, schedule_id: str, cron: str, spec: jobs_pb2.JobSpec | None = None, *,
                 template: str = "", timezone: str = "", **fields: Any) -> wpb.Schedule:
        """A schedule running `spec` (or `template`) at each instant of `cron`. More fields
        of `Schedule` (misfire, concurrency, start, end...) as keywords."""
        s = wpb.Schedule(id=schedule_id, cron=cron, spec=spec, template=template,
                         timezone=timezone, **fields)
        return self.workflows.add_schedule(s)

    def submit_dag(self, name: str,
                   jobs: Mapping[str, jobs_pb2.JobSpec | tuple[jobs_pb2.JobSpec, Sequence[str]]]
                   ) -> wpb.SubmitWorkflowResponse:
        """A workflow: {job name: spec, or (spec, [names it depends on])}."""
        items = []
        for job_name, v in jobs.items():
            spec, deps = (v, ()) if isinstance(v, jobs_pb2.JobSpec) else v
            items.append(wpb.WorkflowJobSpec(name=job_name, spec=spec, depends_on=list(deps)))
        return self.workflows.submit_workflow(name, items)

    def workflow(self, workflow_id: str) -> wpb.WorkflowStatus:
        return self.workflows.workflow(workflow_id)


def wait_terminal(nodes: JobsClient, job_ids: Sequence[str],
                  timeout: float | None = None) -> dict[str, jobs_pb2.Job]:
    """Follow `job_ids` through a live watch (resumed on another node if one goes away)
    until every one is terminal. Also used by the CLI."""
    left: set[str] = set(job_ids)
    done: dict[str, jobs_pb2.Job] = {}
    deadline = None if timeout is None else time.monotonic() + timeout
    addrs, channel = nodes.current_channel()
    watcher = JobWatcher(addrs, job_ids=list(left), send_initial=True, token=nodes.token,
                         tls=nodes.tls, channel=channel)
    # an idle cluster sends nothing on the stream: the deadline ends it from a timer
    timer = None if timeout is None else threading.Timer(max(0.0, timeout), watcher.cancel)
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        for resp in watcher.responses():
            for ev in resp.events:
                if ev.job.state in TERMINAL and ev.job.id in left:
                    done[ev.job.id] = ev.job
                    left.discard(ev.job.id)
            if not left:
                return done
            if deadline is not None and time.monotonic() > deadline:
                break
    finally:
        if timer is not None:
            timer.cancel()
        watcher.cancel()
    raise TimeoutError(f"{len(left)} of {len(job_ids)} jobs not finished after {timeout}s")


def result_of(job: jobs_pb2.Job) -> Any:
    """A terminal job's return value (None without one); TaskError unless SUCCEEDED."""
    if job.state != jobs_pb2.SUCCEEDED:
        raise TaskError(job)
    return json.loads(job.result_json) if job.result_json else None
