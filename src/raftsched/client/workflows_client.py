"""Synchronous client of the Workflows service, against any node of a cluster.

Same rules as `client.Client`: one request id per call, reused on every retry;
on UNAVAILABLE the next address is tried.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from raftsched.client.client import NodesClient
from raftsched.v1 import workflows_pb2 as wpb
from raftsched.v1 import workflows_pb2_grpc

WRITES = {
    "CreateTemplate", "UpdateTemplate", "DeleteTemplate", "SubmitFromTemplate", "AddSchedule",
    "PauseSchedule", "ResumeSchedule", "DeleteSchedule", "RunScheduleNow", "SubmitWorkflow",
    "CancelWorkflow",
}


class WorkflowsClient(NodesClient):
    def call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        if method in WRITES and not request.request_id:
            request.request_id = uuid.uuid4().hex
        return self._invoke(workflows_pb2_grpc.WorkflowsStub, method, request, timeout)

    # conveniences used by the CLI and tests
    def add_schedule(self, schedule: wpb.Schedule) -> wpb.Schedule:
        return self.call("AddSchedule", wpb.AddScheduleRequest(schedule=schedule))

    def schedule(self, sid: str) -> wpb.Schedule:
        return self.call("GetSchedule", wpb.ScheduleRef(id=sid))

    def submit_workflow(self, name: str, jobs: Sequence[wpb.WorkflowJobSpec]) -> wpb.SubmitWorkflowResponse:
        return self.call("SubmitWorkflow", wpb.SubmitWorkflowRequest(name=name, jobs=jobs))

    def workflow(self, wf_id: str) -> wpb.WorkflowStatus:
        return self.call("GetWorkflow", wpb.GetWorkflowRequest(workflow_id=wf_id))
