"""The node's reporter: a report the leader refuses as malformed must not block the
reports queued behind it (it is replaced by a bare failure of its attempt)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from raftsched.node.reports import Report, ReportKind
from raftsched.node.worker import REFUSED, Reporter
from raftsched.rpc import bounds
from raftsched.rpc.refusal import Refused
from raftsched.v1 import node_pb2

pytestmark = pytest.mark.timeout(20)


class Leader:
    """A leader stub that checks bounds as the real agent does and records what it took."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.taken: list[node_pb2.JobReport] = []

    async def ReportJobs(self, req: node_pb2.ReportJobsRequest, timeout: float) -> Any:
        for i, r in enumerate(req.reports):
            if len(r.stdout_tail) > self.limit:
                raise grpc.aio.AioRpcError(grpc.StatusCode.INVALID_ARGUMENT, grpc.aio.Metadata(),
                                           grpc.aio.Metadata(),
                                           details=f"reports[{i}].stdout_tail: too long")
        err = bounds.check(req)
        if err:
            raise grpc.aio.AioRpcError(grpc.StatusCode.INVALID_ARGUMENT, grpc.aio.Metadata(),
                                       grpc.aio.Metadata(), details=err)
        self.taken += list(req.reports)
        return node_pb2.ReportJobsResponse(accepted=len(req.reports))


class Peers:
    """PeerChannels.send_reports to a leader elsewhere: over gRPC (AioRpcError)."""

    def __init__(self, stub: Leader) -> None:
        self.stub = stub

    async def send_reports(self, req: node_pb2.ReportJobsRequest) -> bool:
        await self.stub.ReportJobs(req, timeout=5.0)
        return True


class LocalPeers(Peers):
    """This node leads: its reports go to its own agent in process, refused with Refused."""

    async def send_reports(self, req: node_pb2.ReportJobsRequest) -> bool:
        try:
            await self.stub.ReportJobs(req, timeout=5.0)
        except grpc.aio.AioRpcError as e:
            raise Refused(e.code(), e.details() or "") from None
        return True


@pytest.mark.parametrize("peers", [Peers, LocalPeers], ids=["grpc", "in-process"])
def test_a_refused_report_does_not_block_the_queue(peers: type[Peers]) -> None:
    leader = Leader(limit=10)
    rep = Reporter("n1", peers(leader))  # type: ignore[arg-type]
    rep.push(Report("a", 1, 1, ReportKind.STARTED, 1.0))
    rep.push(Report("a", 1, 1, ReportKind.FINISHED, 2.0, exit_code=0, stdout_tail="x" * 50))
    rep.push(Report("b", 1, 2, ReportKind.STARTED, 1.0, stdout_tail="y" * 50))
    rep.push(Report("c", 1, 3, ReportKind.FINISHED, 2.0, exit_code=0, stdout_tail="ok"))

    async def go() -> None:
        task = asyncio.create_task(rep.run())
        for _ in range(100):
            if not rep.queue:
                break
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(go())
    assert not rep.queue
    got = {(r.job_id, r.kind): r for r in leader.taken}
    assert set(got) == {("a", node_pb2.STARTED), ("a", node_pb2.FINISHED), ("c", node_pb2.FINISHED)}
    failed = got[("a", node_pb2.FINISHED)]
    assert not failed.has_exit_code and failed.error.startswith(REFUSED) and failed.stdout_tail == ""
    assert "reports[1].stdout_tail" in failed.error
    assert got[("c", node_pb2.FINISHED)].stdout_tail == "ok"  # the reports behind went through


def test_started_waits_briefly_for_its_finished_one_call() -> None:
    """A short job's two reports travel in one call (the leader commits them in one entry);
    a STARTED alone still goes out after the hold."""
    calls: list[list[tuple[str, int]]] = []

    class Recording(Leader):
        async def ReportJobs(self, req: node_pb2.ReportJobsRequest, timeout: float) -> Any:
            calls.append([(r.job_id, r.kind) for r in req.reports])
            return await super().ReportJobs(req, timeout)

    rep = Reporter("n1", Peers(Recording(limit=100)))  # type: ignore[arg-type]

    async def go() -> None:
        task = asyncio.create_task(rep.run())
        rep.push(Report("a", 1, 1, ReportKind.STARTED, 1.0))
        await asyncio.sleep(0.001)
        rep.push(Report("a", 1, 1, ReportKind.FINISHED, 2.0, exit_code=0))
        while rep.queue:
            await asyncio.sleep(0.001)
        rep.push(Report("b", 1, 2, ReportKind.STARTED, 3.0))  # long job: no FINISHED follows
        while rep.queue:
            await asyncio.sleep(0.001)
        task.cancel()

    asyncio.run(go())
    assert calls == [[("a", node_pb2.STARTED), ("a", node_pb2.FINISHED)], [("b", node_pb2.STARTED)]]
