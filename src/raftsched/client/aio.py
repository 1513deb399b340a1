"""`raftsched.AsyncClient`: the asyncio variant of `raftsched.Client` for the common
calls (submit, submit_many, get, wait, result, cancel).

Same connection options and rules: one request id per write, reused when the call
moves to the next node after UNAVAILABLE; `wait`/`result` follow the job through a
WatchJobs stream, reopened on the next node (from its last position) if one goes away.

    async with raftsched.AsyncClient(config="cluster.toml") as c:
        print(await c.result(await c.submit(python="myapp.tasks:add", args=[1, 2])))
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self

import grpc

import raftsched.config as configmod
from raftsched.client.api import TERMINAL, result_of
from raftsched.client.credentials import OPTIONS, discover, discover_token, open_aio_channel, token_metadata
from raftsched.client.specs import job_spec
from raftsched.v1 import events_pb2, events_pb2_grpc, jobs_pb2, scheduler_pb2, scheduler_pb2_grpc

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
RECONNECT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL}


class AsyncClient:
    def __init__(self, nodes: Sequence[str] | str | None = None, *,
                 config: str | os.PathLike[str] | None = None, ca: str | None = None,
                 cert: str | None = None, key: str | None = None, token: str | None = None,
                 timeout: float = 20.0) -> None:
        cfg = configmod.load(config) if config is not None else None
        addrs = [nodes] if isinstance(nodes, str) else list(nodes or ([n.grpc for n in cfg.nodes] if cfg else []))
        if not addrs:
            raise ValueError("give node addresses (host:port) or config= a cluster config file")
        tls = discover(ca, cert, key, cfg.data_dir if cfg else None, cfg.tls if cfg else True)
        self.addresses = addrs
        self.timeout = timeout
        self._md = token_metadata(discover_token(token, cfg.data_dir if cfg else None))
        self._channels = [open_aio_channel(a, tls, OPTIONS) for a in addrs]
        self._current = 0

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, method: str, request: Any) -> Any:
        deadline = time.monotonic() + self.timeout
        while True:
            ch = self._channels[self._current % len(self._channels)]
            try:
                return await getattr(scheduler_pb2_grpc.SchedulerStub(ch), method)(
                    request, timeout=max(0.05, deadline - time.monotonic()), metadata=self._md)
            except grpc.aio.AioRpcError as e:
                if e.code() not in RETRYABLE or time.monotonic() >= deadline:
                    raise
                self._current += 1
                await asyncio.sleep(0.05)

    async def submit(self, command: Sequence[str] | str | None = None, *, python: str | None = None,
                     args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
                     spec: jobs_pb2.JobSpec | None = None, idempotency_key: str | None = None,
                     request_id: str | None = None, **options: Any) -> str:
        """As `Client.submit`."""
        if spec is None:
            spec = job_spec(command, python=python, args=args, kwargs=kwargs, **options)
        req = scheduler_pb2.SubmitJobRequest(spec=spec, request_id=request_id or uuid.uuid4().hex,
                                             idempotency_key=idempotency_key or "")
        return str((await self._call("SubmitJob", req)).job_id)

    async def submit_many(self, specs: Iterable[jobs_pb2.JobSpec | Mapping[str, Any]],
                          request_id: str | None = None) -> list[str]:
        built = [s if isinstance(s, jobs_pb2.JobSpec) else job_spec(**s) for s in specs]
        req = scheduler_pb2.SubmitJobsRequest(specs=built, request_id=request_id or uuid.uuid4().hex)
        return list((await self._call("SubmitJobs", req)).job_ids)

    async def get(self, job_id: str, consistent: bool = False) -> jobs_pb2.Job:
        """`consistent=True`: linearizable (ReadIndex through the leader)."""
        return await self._call("GetJob", scheduler_pb2.GetJobRequest(job_id=job_id, consistent=consistent))

    async def cancel(self, job_id: str) -> jobs_pb2.Job:
        req = scheduler_pb2.CancelJobRequest(job_id=job_id, request_id=uuid.uuid4().hex)
        return (await self._call("CancelJob", req)).job

    async def wait(self, job_id: str, timeout: float | None = None) -> jobs_pb2.Job:
        """The job once terminal (TimeoutError after `timeout` seconds)."""
        return await asyncio.wait_for(self._watch_until_terminal(job_id), timeout)

    async def result(self, job_id: str, timeout: float | None = None) -> Any:
        """As `Client.result`: the return value, or TaskError."""
        return result_of(await self.wait(job_id, timeout))

    async def _watch_until_terminal(self, job_id: str) -> jobs_pb2.Job:
        position: tuple[int, int] | None = None
        while True:
            ch = self._channels[self._current % len(self._channels)]
            req = events_pb2.WatchJobsRequest(job_ids=[job_id], send_initial=position is None)
            if position is not None:
                req.has_resume_from = True
                req.resume_from.index, req.resume_from.ordinal = position
            try:
                async for resp in events_pb2_grpc.EventsStub(ch).WatchJobs(req, metadata=self._md):
                    position = (resp.position.index, resp.position.ordinal)
                    for ev in resp.events:
                        if ev.job.id == job_id and ev.job.state in TERMINAL:
                            return ev.job
            except grpc.aio.AioRpcError as e:
                if e.code() not in RECONNECT:
                    raise
            self._current += 1
            await asyncio.sleep(0.1)
