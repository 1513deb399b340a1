"""Load limits of one node: expensive reads run in worker threads a few at a time,
and open streams are capped per node and per client.

One process, one GIL: a long step on the event loop delays heartbeats and lease
renewals, and a long step holding the GIL delays Raft ticks. Work that is
O(state) or O(count) (full listings, cron previews) therefore runs in a worker
thread, where the interpreter switches away from it every few milliseconds,
and only `slots` at a time; up to `queue` more wait, and beyond that a call is
refused with RESOURCE_EXHAUSTED (the client retries later or elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, TypeVar

import grpc

T = TypeVar("T")

READ_SLOTS = 2
READ_QUEUE = 32
MAX_STREAMS = 1000  # open watch streams on one node
MAX_STREAMS_PER_CLIENT = 256  # ... from one client connection


def helper_processes(n: int = 1) -> ProcessPoolExecutor:
    """Processes for pure CPU work that needs no state (cron previews): they compete for
    the CPU, not for this process's GIL. Spawned (never forked: gRPC and Raft threads),
    on first use; each exits when the node process is gone (even SIGKILLed)."""
    return ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_exit_with_parent, initargs=(os.getpid(),))


def _exit_with_parent(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


class ReadLimiter:
    def __init__(self, slots: int = READ_SLOTS, queue: int = READ_QUEUE,
                 executor: Executor | None = None) -> None:
        self.executor = executor  # None: a worker thread of the event loop's default pool
        self._sem = asyncio.Semaphore(slots)
        self.slots = slots
        self.queue = queue
        self.waiting = 0
        self.refused = 0

    async def run(self, context: grpc.aio.ServicerContext, what: str,
                  fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker thread (or the executor), at most `slots` at a time."""
        if self._sem.locked() and self.waiting >= self.queue:
            self.refused += 1
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{what}: this node already serves {self.slots + self.waiting} expensive reads; "
                "retry in a moment or ask another node")
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        try:
            if self.executor is None:
                return await asyncio.to_thread(fn, *args)
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        finally:
            self._sem.release()


def client_of(context: grpc.aio.ServicerContext) -> str:
    """The client a stream counts against: its connection (peer address and port)."""
    return context.peer() or "unknown"


class StreamLimiter:
    def __init__(self, total: int = MAX_STREAMS, per_client: int = MAX_STREAMS_PER_CLIENT) -> None:
        self.total = total
        self.per_client = per_client
        self.open: Counter[str] = Counter()
        self.count = 0
        self.refused = 0

    def __len__(self) -> int:
        return self.count

    @contextlib.asynccontextmanager
    async def hold(self, context: grpc.aio.ServicerContext, what: str) -> AsyncIterator[None]:
        """Count one open stream for the duration of the block, or refuse it."""
        client = client_of(context)
        if len(self) >= self.total:
            self.refused += 1
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{what}: this node has {self.total} open streams, its limit; "
                                "close some or use another node")
        if self.open[client] >= self.per_client:
            self.refused += 1
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{what}: this connection has {self.per_client} open streams, "
                                "the limit per client")
        self.open[client] += 1
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1
            self.open[client] -= 1
            if self.open[client] <= 0:
                del self.open[client]
