"""The leader-only loop: liveness -> placement -> Assign -> StartJobs.

Runs on every node but acts only while this node is the Raft leader.
Heartbeats are leader-local soft state: only "node down" goes through Raft.
When this node wins an election it re-arms every node with a grace period
before anyone can be declared down, and re-sends the starts of every ASSIGNED
job (starts are idempotent on the worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from raftsched.config import ClusterConfig
from raftsched.core import batches, liveness, nodes, reconcile, settings
from raftsched.core import runqueue as queue
from raftsched.core.commands import Assign, FinishedItem, GcJobs, JobsFinished, NodeDown, NodeUp
from raftsched.core.model import Job, JobState, Node
from raftsched.core.nodeops import DrainDeadline
from raftsched.core.placement import Candidate, place
from raftsched.node.fastplace import SubmitPlacer
from raftsched.ports import Peers, Propose, RaftStatus, ReplicaView
from raftsched.replica.proposer import NotLeader, OutcomeUnknown

Spawn = Callable[[Coroutine[Any, Any, Any]], None]  # callable from any thread

log = structlog.get_logger("raftsched.node.leader")

PLACEMENT_BATCH = 2000
FULL_SCAN_EVERY = 1.0  # seconds; five times that with a queue of LONG_QUEUE jobs or more
LONG_QUEUE = 10_000
TICK = 0.05
RESEND_AFTER = 1.0
GC_INTERVAL = 2.0  # re-send a start not confirmed by the worker after this long


@dataclass
class FullScan:
    """The whole queue is to be ordered (outside the lock): its ids and sequence heads."""

    ids: list[str]
    heads: set[str]


def new_rid() -> str:
    return uuid.uuid4().hex


class Leader:
    def __init__(self, cfg: ClusterConfig, replica: ReplicaView, raft: RaftStatus,
                 proposer: Propose, peers: Peers, spawn: Spawn) -> None:
        self.cfg = cfg
        self.replica = replica
        self.raft = raft
        self.proposer = proposer
        self.peers = peers
        self.spawn = spawn
        self.schedules = reconcile.ScheduleClock()
        self.kick = asyncio.Event()
        self.last_seen: dict[str, float] = {}  # node id -> monotonic time of last heartbeat
        self.reported: dict[str, set[tuple[str, int]]] = {}  # node -> attempts it runs
        self.armed_term: int | None = None
        self.downing: set[str] = set()
        self._last_resend = 0.0
        self.fresh: list[str] = []  # jobs that became PENDING since the last placement round
        self._free_after: dict[str, tuple[int, int]] | None = None
        self._labels = 0  # hash of the candidate nodes' labels at the last round
        self._last_full_scan = 0.0
        self._last_gc = 0.0
        self._delayed: list[tuple[float, str]] = []  # (not_before, job) of waiting retries
        self.leader_changes = 0
        self.hb_wall: dict[str, float] = {}  # node -> wall time of its last heartbeat
        self.rng = random.Random()  # retry jitter; the result is stamped into commands
        self._bad_schedules: set[str] = set()
        # small submissions on an idle queue: placed in their own entry (node/fastplace.py)
        self.submit_placer = SubmitPlacer(replica, raft, lambda: self.armed_term == raft.term(),
                                          self._settings, self._dispatch, new_rid)
        self._awake_at = time.monotonic()  # when the event loop last ran (watch_stalls)
        self.stalls_credited = 0.0  # seconds of the leader's own stalls not counted as silence

    # ---- called by the NodeAgent servicer ------------------------------------------

    def lease_for(self, node_id: str) -> tuple[float, int]:
        """(lease seconds, generation) to grant a node that just heartbeated."""
        return liveness.lease_grant(self.replica.state, node_id, self.downing,
                                    self.raft.leader_confirmed(), self.cfg.lease)

    def heartbeat(self, node: Node, running: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
        """Record a heartbeat; returns the attempts the node must kill. Runs on a thread
        of the control port (rpc/control.py), not on the event loop."""
        self.last_seen[node.id] = time.monotonic()
        self.hb_wall[node.id] = time.time()
        self.reported[node.id] = {(j, a) for j, a, _ in running}
        with self.replica.lock:
            if liveness.needs_node_up(self.replica.state, node):
                self.spawn(self._propose_node_up(node))
            return liveness.revoked(self.replica.state, node.id, running)

    async def _propose_node_up(self, node: Node) -> None:
        try:
            await self.proposer.propose(NodeUp(new_rid(), time.time(), node))
            log.info("node up", node=node.id)
        except (NotLeader, OutcomeUnknown) as e:
            log.debug("node up not proposed", node=node.id, error=str(e))

    # ---- the loop -------------------------------------------------------------------

    async def watch_stalls(self) -> None:
        """Notice the event loop not running (see _awake); runs on every node."""
        while True:
            self._awake()
            await asyncio.sleep(TICK)

    def _awake(self) -> None:
        """The loop runs now. Had it not run for over a heartbeat interval, this process
        was stalled (CPU starvation, SIGSTOP, a blocked loop) and may not have heard
        heartbeats: that time is nobody's silence. Else, resuming, it would declare every
        node down, itself too, and rerun jobs that ended during the stall unreported."""
        now = time.monotonic()
        gap, self._awake_at = now - self._awake_at, now
        if gap > self.cfg.heartbeat_interval + TICK:
            stall = gap - TICK
            self.stalls_credited += stall
            # in place: the heartbeat threads write this dict (a heartbeat written meanwhile
            # is overwritten by a time at most `now`, no earlier than its pre-stall one + stall)
            self.last_seen.update(liveness.credit_stall(dict(self.last_seen), stall, now))
            if stall > self.cfg.heartbeat_ttl / 2 and self.raft.is_leader():
                log.info("leader stalled; that time is not counted as any node's silence",
                         stalled=round(stall, 3))

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.kick.wait(), TICK)
            self.kick.clear()
            if not self.raft.is_leader():
                self.armed_term = None
                continue
            try:
                term = self.raft.term()
                if self.armed_term != term:
                    await self._on_elected(term)
                await self._liveness()
                await self._drain_deadlines()
                await self._place()
                await self._collect_garbage()
                await self._fire_schedules()
                if time.monotonic() - self._last_resend > RESEND_AFTER / 2:
                    self._last_resend = time.monotonic()
                    self._resend_unconfirmed()
                    await self._resolve_cancelling()
            except (NotLeader, OutcomeUnknown) as e:
                log.info("leader step interrupted", error=str(e))
            except Exception:
                log.exception("leader loop error")
                await asyncio.sleep(TICK)

    async def _on_elected(self, term: int) -> None:
        self.armed_term = term
        self.leader_changes += 1
        st = self.replica.state
        with self.replica.lock:
            self.last_seen = liveness.rearm(st, time.monotonic())
            assigned = [j for j in reconcile.active_jobs(st) if j.state is JobState.ASSIGNED]
            # C-speed copies under the lock; the O(pending) scan runs in a worker thread
            # (100k pending jobs held the lock and the loop ~100 ms right after an election)
            pending, jobs = list(st.pending), st.jobs.copy()
        self._free_after = None
        self._delayed = await asyncio.to_thread(_delayed_heap, pending, jobs, time.time())
        self.reported = {}
        log.info("became leader", term=term, nodes=len(self.last_seen), resend=len(assigned))
        self._dispatch(assigned)

    async def _liveness(self) -> None:
        self._awake()  # before watch_stalls, if this round resumed first after a stall
        now = time.monotonic()
        with self.replica.lock:
            down, unseen = liveness.down_nodes(self.replica.state, self.last_seen, now,
                                               self.cfg.heartbeat_ttl)
        for nid in unseen:
            self.last_seen[nid] = now  # first time this leader hears of it
        for nid, _ in down:
            self.downing.add(nid)  # no lease renewals while this is in flight
            try:
                # `down` was decided before the NodeDowns proposed ahead of this one were
                # committed (each takes a while under load). A heartbeat answered since
                # then may have granted the node a lease, under which it runs and starts
                # jobs: it is not down, and declaring it so would run them twice. Checked
                # after `downing` is set, which refuses any later grant: the heartbeat
                # thread writes last_seen before it reads `downing` (heartbeat, lease_for).
                self._awake()
                reason = liveness.silence(self.last_seen, nid, time.monotonic(),
                                          self.cfg.heartbeat_ttl)
                if not reason:
                    log.info("node heard from again; not declared down", node=nid)
                    continue
                log.warning("node down", node=nid, reason=reason)
                res = await self.proposer.propose(NodeDown(new_rid(), time.time(), nid, reason))
            finally:
                self.downing.discard(nid)
            if res.ok and res.value:
                log.info("jobs returned to pending", node=nid, jobs=len(res.value))

    async def _drain_deadlines(self) -> None:
        """Stop the attempts still running on nodes whose drain deadline passed."""
        now = time.time()
        with self.replica.lock:
            due = nodes.due_drains(self.replica.state, now)
        for nid, generation, attempts in due:
            res = await self.proposer.propose(DrainDeadline(new_rid(), now, nid, generation, attempts))
            log.info("drain deadline: stopping attempts", node=nid, jobs=len(attempts),
                     refused=res.message)

    async def _fire_schedules(self) -> None:
        with self.replica.lock:
            active = reconcile.active_schedules(self.replica.state)
        for cmd in self.schedules.fires(active, time.time()):
            res = await self.proposer.propose(cmd)
            if res.ok:
                created, refused = res.value
                log.info("schedule fired", schedule=cmd.schedule_id, jobs=list(created),
                         refused=refused, through=cmd.through)
            else:
                log.info("schedule fire refused", schedule=cmd.schedule_id, message=res.message)
        for sid, error in self.schedules.unevaluable.items():
            if sid not in self._bad_schedules:
                self._bad_schedules.add(sid)
                log.error("schedule cannot be evaluated", schedule=sid, error=error)

    def _settings(self) -> settings.Settings:
        """cluster.toml's settings with the replicated runtime overrides (operator config
        set). Caller holds the lock."""
        return settings.effective(self.replica.state, settings.base_of(self.cfg))

    def _scan(self, now: float, cfg: settings.Settings
              ) -> tuple[list[Job] | FullScan, list[Candidate], dict[str, tuple[int, int]]] | None:
        """What placement should look at this round (caller holds the state lock).

        A full scan of the queue (`queue.runnable`: retry times, sequence heads,
        priority with aging or FIFO) happens when some node gained room since the
        last round, and at least once a second; otherwise only jobs that became
        PENDING (or whose retry time came) since then are looked at: nothing else
        can fit where it did not fit before.
        """
        st = self.replica.state
        fresh, self.fresh = self.fresh, []
        if not st.pending:
            return None
        # a node made eligible again has "gained" room: the next round scans the whole queue
        cands = self.submit_placer.candidates()  # open nodes, less in-flight reservations
        free = {
            c.node.id: (c.node.capacity.cpu_millis - c.allocated.cpu_millis,
                        c.node.capacity.memory_mib - c.allocated.memory_mib)
            for c in cands
        }
        base = self._free_after
        gained = base is None or any(
            nid not in base or f[0] > base[nid][0] or f[1] > base[nid][1] for nid, f in free.items()
        )
        # labels changed at runtime (`node update`) may open nodes to waiting jobs too
        labels = hash(tuple((c.node.id, c.node.labels) for c in cands))
        gained, self._labels = gained or labels != self._labels, labels
        due = self._delayed_due(now)
        # A long queue is scanned less often when nothing changed (aging still applies).
        every = FULL_SCAN_EVERY if len(st.pending) < LONG_QUEUE else FULL_SCAN_EVERY * 5
        if gained or due or time.monotonic() - self._last_full_scan > every:
            self._last_full_scan = time.monotonic()
            # O(queue): ordered in a worker thread from a copy of the ids (see _place)
            heads = queue.sequence_heads(st) if st.sequences else set()
            return FullScan(list(st.pending), heads), cands, free
        else:
            jobs = [st.jobs[j] for j in set(fresh) if j in st.pending]
            for j in jobs:
                if j.not_before > now:
                    heapq.heappush(self._delayed, (j.not_before, j.id))
            if any(j.spec.sequence_key for j in jobs):
                pending = queue.runnable(st, now, cfg.queue_order, cfg.aging_rate, PLACEMENT_BATCH)
            else:
                ready = [j for j in jobs if j.not_before <= now]
                pending = queue.order_jobs(ready, now, cfg.queue_order, cfg.aging_rate, PLACEMENT_BATCH)
        return pending, cands, free

    def _delayed_due(self, now: float) -> bool:
        """True if a retry seen earlier has reached its not-before time."""
        due = False
        while self._delayed and self._delayed[0][0] <= now:
            heapq.heappop(self._delayed)
            due = True
        return due

    async def _place(self) -> None:
        st = self.replica.state
        now = time.time()
        with self.replica.lock:
            cfg = self._settings()
            scan = self._scan(now, cfg)
        if scan is None:
            return
        pending, cands, free = scan
        if isinstance(pending, FullScan):
            pending = await asyncio.to_thread(queue.runnable_of, st, pending.ids, pending.heads, now,
                                              cfg.queue_order, cfg.aging_rate, PLACEMENT_BATCH)
        items = place(pending, cands, cfg.strategy) if pending else []
        # Room left after this round's own assignments: the baseline for "gained".
        for item in items:
            r = st.jobs[item.job_id].spec.resources
            cpu, mem = free[item.node_id]
            free[item.node_id] = (cpu - r.cpu_millis, mem - r.memory_mib)
        self._free_after = free
        if not items:
            return
        res = await self.proposer.propose(Assign(new_rid(), time.time(), tuple(items)))
        if not res.ok:
            log.error("assign refused", message=res.message)
            return
        started = []
        refused = 0
        with self.replica.lock:
            for item, out in zip(items, res.value, strict=True):
                if isinstance(out, int):
                    started.append(st.jobs[item.job_id])
                else:
                    refused += 1
        if refused:
            log.debug("assignments refused at apply", refused=refused)
        self._dispatch(started)
        if len(items) == PLACEMENT_BATCH:
            self.kick.set()

    async def _collect_garbage(self) -> None:
        """Forget terminal jobs older than the retention, so state and snapshots stay bounded."""
        if time.monotonic() - self._last_gc < GC_INTERVAL:
            return
        self._last_gc = time.monotonic()
        with self.replica.lock:
            cutoff = time.time() - self._settings().job_retention
            due = self.replica.state.has_finished_before(cutoff)
        if due:
            res = await self.proposer.propose(GcJobs(new_rid(), time.time(), cutoff))
            if res.ok and res.value:
                log.info("finished jobs garbage-collected", jobs=res.value)
        with self.replica.lock:
            work = batches.leader_work(self.replica.state, time.time(), new_rid())
        if work:  # submissions whose client went away: finish committed ones, drop the rest
            log.info("finishing left-behind submissions", commands=len(work))
            await asyncio.gather(*(self.proposer.propose(c) for c in work))

    def _resend_unconfirmed(self) -> None:
        """Re-send starts of ASSIGNED jobs their node has not confirmed for a while."""
        with self.replica.lock:
            # copies (one C call each): the heartbeat thread writes these dicts
            stale = reconcile.unconfirmed_starts(self.replica.state, dict(self.reported), time.time(),
                                                 RESEND_AFTER)
        if stale:
            log.info("re-sending unconfirmed starts", jobs=len(stale))
            self._dispatch(stale)

    async def _resolve_cancelling(self) -> None:
        """End CANCELLING attempts, and attempts a drain stops, that their node no longer
        runs (reconcile.cancelled_gone, nodes.evicted_gone)."""
        reported, hb_wall = dict(self.reported), dict(self.hb_wall)  # see _resend_unconfirmed
        with self.replica.lock:
            items = reconcile.cancelled_gone(self.replica.state, reported, hb_wall,
                                             2 * self.cfg.heartbeat_interval)
            items += nodes.evicted_gone(self.replica.state, reported, hb_wall,
                                        2 * self.cfg.heartbeat_interval)
        if items:
            await self.proposer.propose(JobsFinished(new_rid(), time.time(), tuple(items)))
            log.info("cancelled or drained attempts not running on their node", jobs=len(items))

    def stamp_retries(self, items: list[FinishedItem], now: float) -> list[FinishedItem]:
        """Put the leader's retry time (backoff with jitter) into failed attempts' reports."""
        with self.replica.lock:
            return reconcile.stamp_retries(self.replica.state, items, now, self.rng.random)

    def _dispatch(self, jobs: list[Job]) -> None:
        by_node: dict[str, list[Job]] = defaultdict(list)
        for j in jobs:
            by_node[j.node_id].append(j)
        for node_id, js in by_node.items():
            self.spawn(self.peers.send_starts(node_id, js))


def _delayed_heap(pending: list[str], jobs: dict[str, Job], now: float) -> list[tuple[float, str]]:
    """(not_before, id) of the pending jobs not yet due, as a heap (worker thread)."""
    out = [(j.not_before, i) for i in pending if (j := jobs.get(i)) is not None and j.not_before > now]
    heapq.heapify(out)
    return out
