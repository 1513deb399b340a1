"""Per-node ring buffer of applied job changes, for watchers and metrics.

Every replica applies the same Raft entries, and within an entry the fsm
writes job versions in the same order, so the pair (Raft index of the entry,
ordinal of the change within it) names the same change on every node. That
pair is the resume position of `Events.WatchJobs`: a client that reconnects to
any node with its last position gets everything after it, as long as that node
still holds the position in its buffer.

The buffer is bounded (`capacity` changes). A position older than the oldest
buffered change (or older than this node's start, or than a snapshot it
installed from the leader) cannot be resumed from: `TooOld` is raised and the
client must re-list (WatchJobs with send_initial) and continue from there.

Feeding: `JobStateMachine.hooks` run on pysyncobj's tick thread. `tick_hook`
does no work there beyond noticing a snapshot install; it hands the entry's
changes to the event loop with `call_soon_threadsafe`, where `feed` stores
them (FIFO, so entries arrive in Raft order).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from raftsched.core.commands import Command, NodeDown, NodeUp
from raftsched.core.model import Job
from raftsched.core.nodeops import DrainNode, SetEligibility
from raftsched.core.runtimeops import SetSetting, UpdateNode

ENTRY_END = 0xFFFFFFFF  # ordinal meaning "the whole entry"
DEFAULT_CAPACITY = 100_000

Pos = tuple[int, int]


class TooOld(Exception):
    """The requested position is no longer (or was never) in this node's buffer."""


@dataclass(frozen=True, slots=True)
class Change:
    pos: Pos
    job: Job


@dataclass(frozen=True, slots=True)
class ClusterChange:
    kind: str  # LEADER_CHANGED, NODE_DOWN, NODE_UP, NODE_SCHEDULING, NODE_UPDATED, CLUSTER_CONFIG
    node_id: str
    term: int = 0
    at: float = 0.0
    raft_index: int = 0
    reason: str = ""


Listener = Callable[[list[Change]], None]


class WatchHub:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, floor: Pos = (0, ENTRY_END)) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._buf: list[Change] = []
        self._keys: list[Pos] = []  # positions of _buf, for bisect
        self._ids: list[str] = []  # job ids of _buf: id-filtered watchers skip at C speed
        self._base = 0  # sequence number of _buf[0]
        # Every change after `floor` is (or was, before eviction) in the buffer.
        self.floor: Pos = floor
        self.last_pos: Pos = floor  # position of the last entry fed
        self.generation = 0  # bumped when the buffer is reset (snapshot installed)
        self._wake = asyncio.Event()
        self._pulse: asyncio.TimerHandle | None = None  # wakes idle waiters (wait)
        # watchers of named jobs: job id -> their waits; woken only by those jobs' changes
        self._keyed: dict[str, set[_KeyedWait]] = {}
        self._keyed_all: set[_KeyedWait] = set()
        self.listeners: list[Listener] = []
        self.cluster_subscribers: set[asyncio.Queue[ClusterChange | None]] = set()

    # ---- feeding (event loop) ------------------------------------------------------

    def feed(self, index: int, changes: list[Job], reset: bool = False) -> None:
        """Store the changes of the entry at `index` (called in Raft order)."""
        if reset:
            self._base += len(self._buf)
            self._buf.clear()
            self._keys.clear()
            self._ids.clear()
            self.floor = (index - 1, ENTRY_END)
            self.generation += 1
        new = [Change((index, i), job) for i, job in enumerate(changes)]
        self._buf.extend(new)
        self._keys.extend(c.pos for c in new)
        self._ids.extend(j.id for j in changes)
        self.last_pos = (index, ENTRY_END)
        excess = len(self._buf) - self.capacity
        if excess > 0:
            # evict in chunks so the cost stays amortised O(1) per change
            cut = max(excess, min(len(self._buf), self.capacity // 10))
            self.floor = self._keys[cut - 1]
            del self._buf[:cut]
            del self._keys[:cut]
            del self._ids[:cut]
            self._base += cut
        for fn in self.listeners:
            fn(new)
        self._wake.set()
        self._wake = asyncio.Event()
        if reset:
            for w in list(self._keyed_all):
                w.wake(relevant=True)
        elif self._keyed:
            for i in self._keyed.keys() & {j.id for j in changes}:
                for w in list(self._keyed[i]):
                    w.wake(relevant=True)

    def publish_cluster(self, ev: ClusterChange) -> None:
        for q in list(self.cluster_subscribers):
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:  # a stuck subscriber: end its stream
                self.cluster_subscribers.discard(q)
                q._queue.clear()  # type: ignore[attr-defined]
                q.put_nowait(None)

    # ---- reading --------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._buf)

    @property
    def end(self) -> int:
        """Sequence number one past the newest buffered change."""
        return self._base + len(self._buf)

    def cursor_after(self, pos: Pos) -> int:
        """Sequence number of the first buffered change after `pos`."""
        if pos < self.floor:
            raise TooOld(
                f"position {pos[0]}.{pos[1]} is older than this node's watch buffer "
                f"(it starts after {self.floor[0]}.{self.floor[1]}); re-list the jobs "
                "(WatchJobs with send_initial) and continue from the position given then"
            )
        return self._base + bisect.bisect_right(self._keys, pos)

    def read(self, cursor: int, limit: int, generation: int) -> list[Change]:
        if generation != self.generation:
            raise TooOld("this node installed a snapshot from the leader and lost its watch "
                         "buffer; resume from your last position (on another node) or re-list")
        if cursor < self._base:
            raise TooOld(
                f"the watcher fell behind: changes after its position were evicted from the "
                f"buffer ({self.capacity} changes); re-list and continue"
            )
        start = cursor - self._base
        return self._buf[start:start + limit]

    def ids(self, cursor: int, limit: int) -> list[str]:
        """Job ids of the changes `read(cursor, limit)` returns (same checks first)."""
        start = cursor - self._base
        return self._ids[start:start + limit]

    async def wait(self, cursor: int, timeout: float, ids: Collection[str] = ()) -> bool:
        """Return when changes past `cursor` exist, or after at most `timeout`.

        One shared pulse timer wakes every idle waiter instead of an `asyncio.wait_for`
        per waiter (a task and a timer each: with 2,000 open streams, 13% of the event
        loop under the load scenario went to those). A waiter that names `ids` (it
        watches those jobs only) is woken only by a change of one of them, a snapshot
        install or the pulse: thousands of `Client.wait` streams cost nothing per
        entry (issue 12: they were a third of the loop's time). Returns True when no
        change since `cursor` can concern such a waiter (woken by the pulse alone): it
        may continue from `end` without reading them."""
        if cursor < self.end:
            return False
        loop = asyncio.get_running_loop()
        if self._pulse is None:
            self._pulse = loop.call_later(timeout, self._on_pulse)
        if not ids:
            await self._wake.wait()
            return False
        w = _KeyedWait(loop.create_future())
        self._keyed_all.add(w)
        for i in ids:
            self._keyed.setdefault(i, set()).add(w)
        try:
            await w.future
        finally:  # no await from here to the return: nothing is fed in between
            self._keyed_all.discard(w)
            for i in ids:
                waiting = self._keyed.get(i)
                if waiting is not None:
                    waiting.discard(w)
                    if not waiting:
                        del self._keyed[i]
        return not w.relevant

    def _on_pulse(self) -> None:
        self._pulse = None
        self._wake.set()
        self._wake = asyncio.Event()
        for w in list(self._keyed_all):
            w.wake(relevant=False)


class _KeyedWait:
    """One wait of a watcher of named jobs: its future, and whether anything it watches
    (or a snapshot install) happened since it began."""

    __slots__ = ("future", "relevant")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.relevant = False

    def wake(self, relevant: bool) -> None:
        self.relevant = self.relevant or relevant
        if not self.future.done():
            self.future.set_result(None)


def tick_hook(hub: WatchHub, sm: Any, loop: asyncio.AbstractEventLoop
              ) -> Callable[[list[Command], list[Any], list[Job], int], None]:
    """A `JobStateMachine` hook: runs on the tick thread, never blocks."""
    seen = {"state": sm.state}

    def hook(cmds: list[Command], results: list[Any], changes: list[Job], index: int) -> None:
        reset = sm.state is not seen["state"]  # replaced by a snapshot install
        seen["state"] = sm.state
        loop.call_soon_threadsafe(hub.feed, index, list(changes), reset)
        nodes = sm.state.nodes
        for cmd, res in zip(cmds, results, strict=False):
            if not getattr(res, "ok", False):
                continue
            if isinstance(cmd, NodeDown):
                ev = ClusterChange("NODE_DOWN", cmd.node_id, 0, cmd.ts, index, cmd.reason)
                loop.call_soon_threadsafe(hub.publish_cluster, ev)
            elif isinstance(cmd, NodeUp):
                n = nodes.get(cmd.node.id)
                if n is not None and n.alive and n.since == cmd.ts:  # it was down or new
                    ev = ClusterChange("NODE_UP", cmd.node.id, 0, cmd.ts, index, "")
                    loop.call_soon_threadsafe(hub.publish_cluster, ev)
            elif isinstance(cmd, DrainNode | SetEligibility):
                ev = ClusterChange("NODE_SCHEDULING", cmd.node_id, 0, cmd.ts, index, scheduling_reason(cmd))
                loop.call_soon_threadsafe(hub.publish_cluster, ev)
            elif isinstance(cmd, UpdateNode | SetSetting):
                ev = runtime_change(cmd, index)
                loop.call_soon_threadsafe(hub.publish_cluster, ev)

    return hook


def runtime_change(cmd: UpdateNode | SetSetting, index: int) -> ClusterChange:
    """NODE_UPDATED ("labels zone=b, -gpu; cpu_millis 2000") or CLUSTER_CONFIG ("strategy = binpack")."""
    if isinstance(cmd, SetSetting):
        what = f"{cmd.key} = {cmd.value}" if cmd.value else f"{cmd.key} reset to cluster.toml"
        return ClusterChange("CLUSTER_CONFIG", "", 0, cmd.ts, index, what)
    labels = [f"{k}={v}" for k, v in cmd.set_labels] + [f"-{k}" for k in cmd.remove_labels]
    parts = [f"labels {', '.join(labels)}"] if labels else []
    parts += [f"{name} {v}" for name, v in (("cpu_millis", cmd.cpu_millis), ("memory_mib", cmd.memory_mib)) if v]
    return ClusterChange("NODE_UPDATED", cmd.node_id, 0, cmd.ts, index, "; ".join(parts))


def scheduling_reason(cmd: DrainNode | SetEligibility) -> str:
    """The reason of a NODE_SCHEDULING event: draining (deadline in epoch seconds),
    ineligible or eligible."""
    if isinstance(cmd, DrainNode):
        return f"draining: no new jobs; running ones requeued at {cmd.deadline:.3f}"
    return "eligible" if cmd.eligible else "ineligible"


class JobFilter:
    """Which job versions a watcher wants. Empty criteria match everything."""

    def __init__(self, job_ids: set[str] | None = None, workflow_id: str = "",
                 states: set[str] | None = None, node_id: str = "",
                 visible: Callable[[str], bool] | None = None) -> None:
        self.job_ids = job_ids or set()
        self.workflow_id = workflow_id
        self.states = states or set()
        self.node_id = node_id
        self.visible = visible  # namespaces the watcher may see (None: all)

    @property
    def everything(self) -> bool:
        return not (self.job_ids or self.workflow_id or self.states or self.node_id
                    or self.visible is not None)

    def __call__(self, job: Job) -> bool:
        if self.job_ids and job.id not in self.job_ids:
            return False
        if self.visible is not None and not self.visible(job.spec.namespace):
            return False
        # Jobs get a workflow id with workflows (issue 5); until then none match a filter.
        if self.workflow_id and getattr(job, "workflow_id", "") != self.workflow_id:
            return False
        if self.states and str(job.state.value) not in self.states:
            return False
        return not (self.node_id and job.node_id != self.node_id)


async def observe_leader(current: Callable[[], tuple[str, int]], hub: WatchHub,
                         on_change: Callable[[str, int], None], interval: float = 0.1) -> None:
    """Publish LEADER_CHANGED whenever this node sees a new (leader, term)."""
    last: tuple[str, int] | None = None
    while True:
        now = current()
        if now[0] and now != last:
            on_change(*now)
            last = now
            hub.publish_cluster(ClusterChange("LEADER_CHANGED", now[0], now[1], time.time()))
        await asyncio.sleep(interval)
