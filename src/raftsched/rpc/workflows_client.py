"""Synchronous client of the Workflows service, against any node of a cluster.

Same rules as `client.Client`: one request id per call, reused on every retry;
on UNAVAILABLE the next address is tried.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import grpc

from raftsched.rpc.client import OPTIONS, RETRYABLE
from raftsched.v1 import workflows_pb2 as wpb
from raftsched.v1 import workflows_pb2_grpc

WRITES = {
    "CreateTemplate", "UpdateTemplate", "DeleteTemplate", "SubmitFromTemplate", "AddSchedule",
    "PauseSchedule", "ResumeSchedule", "DeleteSchedule", "RunScheduleNow", "SubmitWorkflow",
    "CancelWorkflow",
}


class WorkflowsClient:
    def __init__(self, addresses: Sequence[str], timeout: float = 20.0) -> None:
        if not addresses:
            raise ValueError("no node addresses given")
        self.addresses = list(addresses)
        self.timeout = timeout
        self._channels = {a: grpc.insecure_channel(a, options=OPTIONS) for a in self.addresses}
        self._current = 0

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()

    def __enter__(self) -> WorkflowsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        if method in WRITES and not request.request_id:
            request.request_id = uuid.uuid4().hex
        deadline = time.monotonic() + (timeout or self.timeout)
        last: grpc.RpcError | None = None
        while True:
            addr = self.addresses[self._current % len(self.addresses)]
            stub = workflows_pb2_grpc.WorkflowsStub(self._channels[addr])
            left = deadline - time.monotonic()
            if left <= 0:
                assert last is not None
                raise last
            try:
                return getattr(stub, method)(request, timeout=left)
            except grpc.RpcError as e:
                if e.code() not in RETRYABLE:
                    raise
                last = e
                self._current += 1
                time.sleep(0.05)

    # conveniences used by the CLI and tests
    def add_schedule(self, schedule: wpb.Schedule) -> wpb.Schedule:
        return self.call("AddSchedule", wpb.AddScheduleRequest(schedule=schedule))

    def schedule(self, sid: str) -> wpb.Schedule:
        return self.call("GetSchedule", wpb.ScheduleRef(id=sid))

    def submit_workflow(self, name: str, jobs: Sequence[wpb.WorkflowJobSpec]) -> wpb.SubmitWorkflowResponse:
        return self.call("SubmitWorkflow", wpb.SubmitWorkflowRequest(name=name, jobs=jobs))

    def workflow(self, wf_id: str) -> wpb.WorkflowStatus:
        return self.call("GetWorkflow", wpb.GetWorkflowRequest(workflow_id=wf_id))
