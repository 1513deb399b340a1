"""The worker side of a node: reports to the leader (heartbeats: node/heartbeat.py).

Reports (attempt started / finished) are queued and sent in batches, one RPC
in flight; a failed send is retried against whoever is leader then, until the
leader has committed them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re

import grpc
import structlog

from raftsched.node.reports import Report, ReportKind
from raftsched.ports import Peers
from raftsched.rpc.refusal import Refused, status_of
from raftsched.v1 import node_pb2

log = structlog.get_logger("raftsched.node.worker")

MAX_REPORTS_PER_CALL = 5000
# A STARTED report waits this long (seconds) for more reports, e.g. its own FINISHED:
# one call and one commit round for both (see push). RUNNING shows that much later.
STARTED_HOLD = 0.01
ERROR_CHARS = 4000  # below the NodeAgent bounds (rpc/bounds.py): a report is never refused
ISOLATION_CHARS = 512
REFUSED = "the attempt's report was refused by the leader: "


def report_to_pb(r: Report) -> node_pb2.JobReport:
    return node_pb2.JobReport(
        job_id=r.job_id,
        attempt=r.attempt,
        fencing_token=r.token,
        kind=node_pb2.STARTED if r.kind is ReportKind.STARTED else node_pb2.FINISHED,
        at=r.at,
        exit_code=r.exit_code if r.exit_code is not None else 0,
        has_exit_code=r.exit_code is not None,
        timed_out=r.timed_out,
        error=r.error[:ERROR_CHARS],
        stdout_tail=r.stdout_tail,
        stderr_tail=r.stderr_tail,
        lost=r.lost,
        oom_killed=r.oom_killed,
        isolation=r.isolation[:ISOLATION_CHARS],
        result_json=r.result,
    )


class Reporter:
    def __init__(self, me_id: str, peers: Peers) -> None:
        self.me_id = me_id
        self.peers = peers
        self.queue: list[Report] = []
        self.wake = asyncio.Event()
        self.sent = 0
        self._hold: asyncio.TimerHandle | None = None

    def push(self, r: Report) -> None:
        """Queue a report. A STARTED one waits up to STARTED_HOLD for more: a short job's
        FINISHED then goes in the same call, and the leader commits both in one entry."""
        self.queue.append(r)
        if r.kind is ReportKind.STARTED:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on the event loop (tests): no hold
                self.wake.set()
                return
            if self._hold is None:
                self._hold = loop.call_later(STARTED_HOLD, self._release)
        else:
            self.wake.set()

    def _release(self) -> None:
        self._hold = None
        self.wake.set()

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                batch = self.queue[:MAX_REPORTS_PER_CALL]
                req = node_pb2.ReportJobsRequest(
                    node_id=self.me_id, reports=[report_to_pb(r) for r in batch]
                )
                try:
                    if not await self.peers.send_reports(req):  # no leader known yet
                        await asyncio.sleep(0.05)
                        continue
                except (grpc.aio.AioRpcError, Refused) as e:
                    code, details = status_of(e)
                    if code == grpc.StatusCode.INVALID_ARGUMENT:
                        self._refused(len(batch), details)
                        continue
                    log.debug("report not delivered; retrying", code=str(code), details=details, n=len(batch))
                    await asyncio.sleep(0.05)
                    continue
                del self.queue[: len(batch)]
                self.sent += len(batch)

    def _refused(self, n: int, details: str) -> None:
        """The leader refused a batch as malformed (a report out of the NodeAgent bounds;
        the node is meant never to make one). Retrying it as it is would block every later
        report forever: the named report is replaced by a bare failure of its attempt
        (a STARTED one dropped; a bare report refused again is dropped too)."""
        m = re.match(r"reports\[(\d+)\]", details)
        i = int(m.group(1)) if m and int(m.group(1)) < n else None
        if i is None:
            log.error("report batch refused; dropped", details=details, n=n)
            del self.queue[:n]
            return
        r = self.queue[i]
        log.error("report refused; replaced by a failure", job=r.job_id, attempt=r.attempt,
                  details=details)
        if r.kind is ReportKind.STARTED or r.error.startswith(REFUSED):
            del self.queue[i]
        else:
            self.queue[i] = dataclasses.replace(
                r, exit_code=None, error=f"{REFUSED}{details}"[:ERROR_CHARS], stdout_tail="",
                stderr_tail="", isolation="", result="", timed_out=False)
