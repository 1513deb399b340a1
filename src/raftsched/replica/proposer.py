"""Group commit on the leader: many commands, one Raft log entry.

Callers `await propose(cmd)`. A drain task packs every command queued since the
last entry into one entry (up to a size bound) and keeps a few entries in
flight. pysyncobj calls back on its tick thread; results are handed back to the
event loop. A missing callback (leader died mid-flight) surfaces as
`OutcomeUnknown` after a timeout: the caller retries with the same request id,
and the state machine's dedup table makes the retry harmless.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from pysyncobj import FAIL_REASON

from raftsched.core import codec
from raftsched.core.batches import weight
from raftsched.core.commands import Command
from raftsched.core.state import Result

log = structlog.get_logger("raftsched.replica.proposer")

MAX_ENTRY_COMMANDS = 2000
MAX_ENTRY_BYTES = 4 << 20
# Jobs one entry may touch (core.batches.weight): applying an entry on the Raft tick
# thread must take a few milliseconds at most.
MAX_ENTRY_WEIGHT = 512
MAX_IN_FLIGHT = 8


class NotLeader(Exception):
    pass


class TooLarge(Exception):
    """One command alone exceeds the Raft entry size bound: it is never proposed."""


class OutcomeUnknown(Exception):
    """The command may or may not have committed; retry with the same request id."""


@dataclass
class _Pending:
    cmd: Command
    fut: asyncio.Future[Result]
    size: int = 0


@dataclass
class ProposerStats:
    entries: int = 0
    commands: int = 0
    failures: int = 0
    latencies: list[float] = field(default_factory=list)


class Proposer:
    def __init__(self, is_leader: Callable[[], bool], sm: Any,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.is_leader = is_leader
        self._sm = sm
        self._loop = loop
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._task: asyncio.Task[None] | None = None
        self.stats = ProposerStats()

    def start(self) -> None:
        self._task = self._loop.create_task(self._drain(), name="proposer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        for p in self._queue:
            if not p.fut.done():
                p.fut.set_exception(NotLeader("node shutting down"))
        self._queue.clear()

    async def propose(self, cmd: Command, timeout: float = 5.0) -> Result:
        return (await self.propose_all([cmd], timeout))[0]

    async def propose_all(self, cmds: list[Command], timeout: float = 5.0) -> list[Result]:
        """Several commands queued at once, in this order: they share an entry when they
        fit in one (one commit round instead of one per command), and commit in order."""
        if not self.is_leader():
            raise NotLeader("this node is not the leader")
        futs: list[asyncio.Future[Result]] = []
        for cmd in cmds:
            futs.append(self._loop.create_future())
            self._queue.append(_Pending(cmd, futs[-1]))
        self._wake.set()
        if not await self._all_done(futs, timeout):
            raise OutcomeUnknown(f"no commit within {timeout:.1f}s")
        errors = [e for e in (f.exception() for f in futs) if e is not None]
        if errors:
            raise errors[0]
        return [f.result() for f in futs]

    async def _all_done(self, futs: list[asyncio.Future[Result]], timeout: float) -> bool:
        """Wait until every future is done (True) or `timeout` passes (False), without
        cancelling them: the commands stay queued or in flight if the caller goes away,
        as a retry after a timeout expects. One waiter for them all: a gather/shield/
        wait_for chain cost the caller a loop iteration per layer after the commit, and
        asyncio.wait's argument checks (isinstance against the coroutine ABCs) ~5% of the
        leader's GIL time at 64 submissions in flight."""
        left = len(futs)
        if not left:
            return True
        waiter = self._loop.create_future()

        def one_done(_f: asyncio.Future[Result]) -> None:
            nonlocal left
            left -= 1
            if left == 0 and not waiter.done():
                waiter.set_result(True)

        def expired() -> None:
            if not waiter.done():
                waiter.set_result(False)

        for f in futs:
            f.add_done_callback(one_done)
        timer = self._loop.call_later(timeout, expired)
        try:
            return bool(await waiter)
        finally:
            timer.cancel()
            for f in futs:
                f.remove_done_callback(one_done)

    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._slots.acquire()
                batch = self._take()
                batch = [p for p in batch if not p.fut.done()]
                if not batch:
                    self._slots.release()
                    continue
                try:
                    blob = codec.encode_entry([p.cmd for p in batch])
                except Exception as e:  # a bug: fail the callers, keep going
                    log.exception("cannot encode entry")
                    for p in batch:
                        p.fut.set_exception(e)
                    self._slots.release()
                    continue
                while len(blob) > MAX_ENTRY_BYTES and len(batch) > 1:
                    # too big: split and requeue the second half in front
                    half = len(batch) // 2
                    self._queue[:0] = batch[half:]
                    batch = batch[:half]
                    blob = codec.encode_entry([p.cmd for p in batch])
                if len(blob) > MAX_ENTRY_BYTES:
                    batch[0].fut.set_exception(TooLarge(
                        f"the request encodes to {len(blob)} bytes; one Raft entry holds at most "
                        f"{MAX_ENTRY_BYTES}: split it into smaller requests"))
                    self._slots.release()
                    continue
                self._submit(batch, blob)

    def _take(self) -> list[_Pending]:
        """The next entry's commands: bounded in count and in jobs touched."""
        total, n = 0, 0
        for p in self._queue[:MAX_ENTRY_COMMANDS]:
            w = weight(p.cmd)
            if n and total + w > MAX_ENTRY_WEIGHT:
                break
            total += w
            n += 1
        batch = self._queue[:n]
        del self._queue[:n]
        return batch

    def _submit(self, batch: list[_Pending], blob: bytes) -> None:
        started = time.perf_counter()
        loop = self._loop

        def on_done(results: Any, err: Any) -> None:  # pysyncobj tick thread
            loop.call_soon_threadsafe(self._resolve, batch, results, err, started)

        self.stats.entries += 1
        self.stats.commands += len(batch)
        try:
            self._sm.apply_entry(blob, callback=on_done)
        except Exception as e:
            self._resolve(batch, None, e, started)

    def _resolve(self, batch: list[_Pending], results: Any, err: Any, started: float) -> None:
        self._slots.release()
        lat = time.perf_counter() - started
        lats = self.stats.latencies
        lats.append(lat)
        if len(lats) > 10_000:
            del lats[:5_000]
        if err == FAIL_REASON.SUCCESS and isinstance(results, list) and len(results) == len(batch):
            for p, r in zip(batch, results, strict=True):
                if not p.fut.done():
                    p.fut.set_result(r)
            return
        self.stats.failures += 1
        if isinstance(err, Exception):
            exc: Exception = OutcomeUnknown(f"proposal failed: {err}")
        elif err in (FAIL_REASON.NOT_LEADER, FAIL_REASON.MISSING_LEADER):
            exc = NotLeader(f"leadership lost while proposing (reason {err})")
        else:
            exc = OutcomeUnknown(f"proposal not confirmed (pysyncobj reason {err})")
        for p in batch:
            if not p.fut.done():
                p.fut.set_exception(exc)
