"""Refusals of new jobs before anything is proposed: the namespace's run_as allow list
(PERMISSION_DENIED) and its quota (RESOURCE_EXHAUSTED).

Every way a client creates jobs goes through here on the leader, just before it
proposes: plain submits (`public`), submissions from a template, workflows and a
schedule's run-now (`workflows`). The state machine checks the same at apply
(`core.acl.admission`), so a refusal here only saves the log an entry; a request
id already applied is a retry and is left to apply, which answers with the first
result.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from raftsched.core import acl, runas
from raftsched.core.model import JobSpec
from raftsched.core.state import ClusterState


async def require_run_as(context: grpc.aio.ServicerContext, state: ClusterState,
                         specs: Iterable[JobSpec], where: str = "") -> None:
    """PERMISSION_DENIED unless each spec's namespace allows its run_as user."""
    denied = runas.refusal(state, specs)
    if denied:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                            f"{where}: {denied}" if where else denied)


async def refuse_early(context: grpc.aio.ServicerContext, state: ClusterState, rid: str,
                       specs: list[JobSpec]) -> None:
    """On the leader, before proposing new jobs with these specs: refuse what apply would."""
    if rid in state.dedup:
        return
    await require_run_as(context, state, specs)
    over = acl.quota_error(state, specs)
    if over:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, over)
