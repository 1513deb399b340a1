"""Load limits (rpc/limits.py): expensive reads beyond the slots and queue are refused
with RESOURCE_EXHAUSTED, streams are capped per node and per client, and the helper
process of cron previews does not outlive a SIGKILLed node."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import grpc
import pytest

from raftsched.rpc.limits import ReadLimiter, StreamLimiter


class Aborted(Exception):
    pass


class FakeContext:
    def __init__(self, peer: str = "ipv4:127.0.0.1:5000") -> None:
        self._peer = peer
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def peer(self) -> str:
        return self._peer

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise Aborted(details)


def test_reads_beyond_slots_and_queue_are_refused() -> None:
    async def main() -> list[object]:
        lim = ReadLimiter(slots=1, queue=2)
        gate = threading.Event()
        ctxs = [FakeContext() for _ in range(5)]
        calls = [asyncio.ensure_future(lim.run(c, "ListJobs", gate.wait, 10)) for c in ctxs]
        await asyncio.sleep(0.2)  # 1 running, 2 waiting, 2 refused at once
        refused = [c for c in ctxs if c.code is grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert len(refused) == 2 and "ListJobs" in refused[0].details
        gate.set()
        return await asyncio.gather(*calls, return_exceptions=True)

    out = asyncio.run(main())
    assert sum(r is True for r in out) == 3 and sum(isinstance(r, Aborted) for r in out) == 2


def test_streams_capped_per_client_and_per_node() -> None:
    async def main() -> None:
        lim = StreamLimiter(total=3, per_client=2)
        a, b = FakeContext("ipv4:127.0.0.1:1"), FakeContext("ipv4:127.0.0.1:2")
        async with lim.hold(a, "WatchJobs"), lim.hold(a, "WatchJobs"):
            with pytest.raises(Aborted):
                async with lim.hold(FakeContext("ipv4:127.0.0.1:1"), "WatchJobs"):
                    pass
            async with lim.hold(b, "WatchJobs"):
                c = FakeContext("ipv4:127.0.0.1:3")
                with pytest.raises(Aborted):
                    async with lim.hold(c, "WatchJobs"):
                        pass
                assert c.code is grpc.StatusCode.RESOURCE_EXHAUSTED and "limit" in c.details
            assert len(lim) == 2
        assert len(lim) == 0 and not lim.open  # released when the streams end

    asyncio.run(main())


def test_preview_helper_exits_with_a_killed_node() -> None:
    code = (
        "import os, time\n"
        "from raftsched.rpc.limits import helper_processes\n"
        "from raftsched.core import cron\n"
        "p = helper_processes(1)\n"
        "print(p.submit(cron.preview, '* * * * *', 'UTC', 0.0, 3).result()[0][0], flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and float(proc.stdout.readline()) == 60.0
        kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert kids
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_running(k) for k in kids):
        time.sleep(0.1)
    assert not any(_running(k) for k in kids), "helper outlived its node"


def _running(pid: str) -> bool:
    """Alive and not a zombie (an orphan may be re-parented to a subreaper that has not
    reaped it yet: it exited all the same)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
