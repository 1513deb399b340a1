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
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog

from raftsched.core import retry
from raftsched.core import runqueue as queue
from raftsched.core.commands import Assign, FinishedItem, GcJobs, JobsFinished, NodeDown, NodeUp
from raftsched.core.jobs import attempt_outcome
from raftsched.core.model import Job, JobState, Node
from raftsched.core.placement import Candidate, place
from raftsched.node.schedule_firer import fire_schedules
from raftsched.replica.proposer import NotLeader, OutcomeUnknown

if TYPE_CHECKING:
    from raftsched.node.runtime import NodeRuntime

log = structlog.get_logger("raftsched.node.leader")

PLACEMENT_BATCH = 2000
TICK = 0.05
RESEND_AFTER = 1.0
GC_INTERVAL = 2.0  # re-send a start not confirmed by the worker after this long


def new_rid() -> str:
    return uuid.uuid4().hex


class Leader:
    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt
        self.kick = asyncio.Event()
        self.last_seen: dict[str, float] = {}  # node id -> monotonic time of last heartbeat
        self.reported: dict[str, set[tuple[str, int]]] = {}  # node -> attempts it runs
        self.armed_term: int | None = None
        self.downing: set[str] = set()
        self._last_resend = 0.0
        self.fresh: list[str] = []  # jobs that became PENDING since the last placement round
        self._free_after: dict[str, tuple[int, int]] | None = None
        self._last_full_scan = 0.0
        self._last_gc = 0.0
        self._delayed: list[tuple[float, str]] = []  # (not_before, job) of waiting retries
        self.leader_changes = 0
        self.hb_wall: dict[str, float] = {}  # node -> wall time of its last heartbeat
        self.rr_after = ""  # round-robin cursor: the node used last
        self.rng = random.Random()  # retry jitter; the result is stamped into commands

    # ---- called by the NodeAgent servicer ------------------------------------------

    def lease_for(self, node_id: str) -> tuple[float, int]:
        """(lease seconds, generation) to grant a node that just heartbeated. No lease
        unless the committed state has it alive and no NodeDown for it is in flight:
        a node declared down must not keep (or start) jobs that are being reassigned."""
        node = self.rt.sm.state.nodes.get(node_id)
        if node is None or not node.alive or node_id in self.downing or not self.rt.leader_confirmed():
            return 0.0, node.generation if node else 0
        return self.rt.cfg.lease, node.generation

    def heartbeat(self, node: Node, running: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
        """Record a heartbeat; returns the attempts the node must kill."""
        self.last_seen[node.id] = time.monotonic()
        self.hb_wall[node.id] = time.time()
        self.reported[node.id] = {(j, a) for j, a, _ in running}
        st = self.rt.sm.state
        known = st.nodes.get(node.id)
        if known is None or not known.alive or _describe(known) != _describe(node):
            self.rt.spawn(self._propose_node_up(node))
        # Attempts of jobs no longer ASSIGNED/RUNNING here are revoked: this is also how a
        # cancel of a running job reaches its node (state CANCELLING).
        revoke = []
        with self.rt.sm.lock:
            for job_id, attempt, token in running:
                job = st.jobs.get(job_id)
                if (
                    job is None
                    or job.node_id != node.id
                    or job.attempt != attempt
                    or job.fencing_token != token
                    or job.state not in (JobState.ASSIGNED, JobState.RUNNING)
                ):
                    revoke.append((job_id, attempt, token))
        return revoke

    async def _propose_node_up(self, node: Node) -> None:
        try:
            await self.rt.proposer.propose(NodeUp(new_rid(), time.time(), node))
            log.info("node up", node=node.id)
        except (NotLeader, OutcomeUnknown) as e:
            log.debug("node up not proposed", node=node.id, error=str(e))

    # ---- the loop -------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.kick.wait(), TICK)
            self.kick.clear()
            if not self.rt.proposer.is_leader():
                self.armed_term = None
                continue
            try:
                term = self.rt.term()
                if self.armed_term != term:
                    self._on_elected(term)
                await self._liveness()
                await self._place()
                await self._collect_garbage()
                await fire_schedules(self.rt)  # issue 5: cron schedules
                if time.monotonic() - self._last_resend > RESEND_AFTER / 2:
                    self._last_resend = time.monotonic()
                    self._resend_unconfirmed()
                    await self._resolve_cancelling()
            except (NotLeader, OutcomeUnknown) as e:
                log.info("leader step interrupted", error=str(e))
            except Exception:
                log.exception("leader loop error")
                await asyncio.sleep(TICK)

    def _on_elected(self, term: int) -> None:
        self.armed_term = term
        self.leader_changes += 1
        # Re-arm: count every node as heard from now, so nobody is declared down before
        # a full TTL under this leader. That is enough for fencing: any lease granted by
        # an earlier leader was granted before this election and is shorter than the TTL.
        armed = time.monotonic()
        st = self.rt.sm.state
        with self.rt.sm.lock:
            node_ids = list(st.nodes)
            assigned = [j for j in self._active_jobs() if j.state is JobState.ASSIGNED]
        self.last_seen = {nid: armed for nid in node_ids}
        self._free_after = None
        now = time.time()
        with self.rt.sm.lock:
            self._delayed = [(j.not_before, j.id) for j in (st.jobs[i] for i in st.pending) if j.not_before > now]
        heapq.heapify(self._delayed)
        self.reported = {}
        log.info("became leader", term=term, nodes=len(node_ids), resend=len(assigned))
        self._dispatch(assigned)

    async def _liveness(self) -> None:
        now = time.monotonic()
        ttl = self.rt.cfg.heartbeat_ttl
        st = self.rt.sm.state
        for node in list(st.nodes.values()):
            if not node.alive:
                continue
            seen = self.last_seen.get(node.id)
            if seen is None:
                self.last_seen[node.id] = now  # first time this leader hears of it
                continue
            if now - seen > ttl:
                reason = f"no heartbeat for {now - seen:.2f}s (ttl {ttl:g}s)"
                log.warning("node down", node=node.id, reason=reason)
                self.downing.add(node.id)  # no lease renewals while this is in flight
                try:
                    res = await self.rt.proposer.propose(
                        NodeDown(new_rid(), time.time(), node.id, reason)
                    )
                finally:
                    self.downing.discard(node.id)
                if res.ok and res.value:
                    log.info("jobs returned to pending", node=node.id, jobs=len(res.value))

    def _scan(self, now: float) -> tuple[list[Job], list[Candidate], dict[str, tuple[int, int]]] | None:
        """What placement should look at this round (caller holds the state lock).

        A full scan of the queue (`queue.runnable`: retry times, sequence heads,
        priority with aging or FIFO) happens when some node gained room since the
        last round, and at least once a second; otherwise only jobs that became
        PENDING (or whose retry time came) since then are looked at: nothing else
        can fit where it did not fit before.
        """
        st = self.rt.sm.state
        cfg = self.rt.cfg
        fresh, self.fresh = self.fresh, []
        if not st.pending:
            return None
        cands = [Candidate(n, st.allocated(n.id).as_resources()) for n in st.nodes.values() if n.alive]
        free = {
            c.node.id: (c.node.capacity.cpu_millis - c.allocated.cpu_millis,
                        c.node.capacity.memory_mib - c.allocated.memory_mib)
            for c in cands
        }
        base = self._free_after
        gained = base is None or any(
            nid not in base or f[0] > base[nid][0] or f[1] > base[nid][1] for nid, f in free.items()
        )
        due = self._delayed_due(now)
        if gained or due or time.monotonic() - self._last_full_scan > 1.0:
            self._last_full_scan = time.monotonic()
            pending = queue.runnable(st, now, cfg.queue_order, cfg.aging_rate, PLACEMENT_BATCH)
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
        st = self.rt.sm.state
        cfg = self.rt.cfg
        now = time.time()
        with self.rt.sm.lock:
            scan = self._scan(now)
        if scan is None:
            return
        pending, cands, free = scan
        items = place(pending, cands, cfg.strategy, self.rr_after) if pending else []
        # Room left after this round's own assignments: the baseline for "gained".
        for item in items:
            r = st.jobs[item.job_id].spec.resources
            cpu, mem = free[item.node_id]
            free[item.node_id] = (cpu - r.cpu_millis, mem - r.memory_mib)
        self._free_after = free
        if not items:
            return
        self.rr_after = items[-1].node_id
        res = await self.rt.proposer.propose(Assign(new_rid(), time.time(), tuple(items)))
        if not res.ok:
            log.error("assign refused", message=res.message)
            return
        started = []
        refused = 0
        with self.rt.sm.lock:
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
        cutoff = time.time() - self.rt.cfg.job_retention
        with self.rt.sm.lock:
            due = self.rt.sm.state.has_finished_before(cutoff)
        if due:
            res = await self.rt.proposer.propose(GcJobs(new_rid(), time.time(), cutoff))
            if res.ok and res.value:
                log.info("finished jobs garbage-collected", jobs=res.value)

    def _resend_unconfirmed(self) -> None:
        """Re-send starts of ASSIGNED jobs their node has not confirmed for a while."""
        now = time.time()
        with self.rt.sm.lock:
            stale = [
                j
                for j in self._active_jobs()
                if j.state is JobState.ASSIGNED
                and now - j.assigned_at > RESEND_AFTER
                and (j.id, j.attempt) not in self.reported.get(j.node_id, ())
            ]
        if stale:
            log.info("re-sending unconfirmed starts", jobs=len(stale))
            self._dispatch(stale)

    async def _resolve_cancelling(self) -> None:
        """End CANCELLING attempts their node no longer runs.

        The normal path is the worker's FINISHED report after the kill. This
        covers an attempt that never started there (start lost): once a
        heartbeat sent well after the cancel does not list it, it is over.
        """
        slack = 2 * self.rt.cfg.heartbeat_interval
        with self.rt.sm.lock:
            gone = [
                j for j in self._active_jobs()
                if j.state is JobState.CANCELLING
                and self.hb_wall.get(j.node_id, 0.0) > j.cancel_requested_at + slack
                and (j.id, j.attempt) not in self.reported.get(j.node_id, ())
            ]
        if gone:
            items = tuple(
                FinishedItem(j.id, j.attempt, j.fencing_token, None,
                             error="not running on its node when cancelled")
                for j in gone
            )
            await self.rt.proposer.propose(JobsFinished(new_rid(), time.time(), items))
            log.info("cancelled attempts not running on their node", jobs=len(gone))

    def stamp_retries(self, items: list[FinishedItem], now: float) -> list[FinishedItem]:
        """Put the leader's retry time (backoff with jitter) into failed attempts' reports."""
        st = self.rt.sm.state
        out = []
        with self.rt.sm.lock:
            for it in items:
                job = st.jobs.get(it.job_id)
                if (
                    job is not None
                    and job.attempt == it.attempt
                    and job.state in (JobState.ASSIGNED, JobState.RUNNING)
                    and attempt_outcome(it)[0] is not JobState.SUCCEEDED
                    and retry.should_retry(job.spec.retry, job.failures + 1)
                ):
                    delay = retry.backoff_delay(job.spec.retry, job.failures + 1, self.rng.random())
                    it = replace(it, retry_at=now + delay)
                out.append(it)
        return out

    def _active_jobs(self) -> list[Job]:
        """Jobs ASSIGNED or RUNNING anywhere (caller holds the state lock)."""
        st = self.rt.sm.state
        return [st.jobs[jid] for u in st.usage.values() for jid in u.jobs]

    def _dispatch(self, jobs: list[Job]) -> None:
        by_node: dict[str, list[Job]] = defaultdict(list)
        for j in jobs:
            by_node[j.node_id].append(j)
        for node_id, js in by_node.items():
            self.rt.spawn(self.rt.send_starts(node_id, js))


def _describe(n: Node) -> tuple:
    return (n.grpc_address, n.raft_address, n.capacity, n.labels, n.incarnation)
