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
import random
import time
import uuid
from collections import defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog

from raftsched import queue, retry
from raftsched.commands import Assign, FinishedItem, JobsFinished, NodeDown, NodeUp
from raftsched.fsm_semantics import attempt_outcome
from raftsched.model import Job, JobState, Node
from raftsched.placement import Candidate, place
from raftsched.proposer import NotLeader, OutcomeUnknown

if TYPE_CHECKING:
    from raftsched.node import NodeRuntime

log = structlog.get_logger("raftsched.leader")

PLACEMENT_BATCH = 2000
TICK = 0.05
RESEND_AFTER = 1.0  # re-send a start not confirmed by the worker after this long


def new_rid() -> str:
    return uuid.uuid4().hex


class Leader:
    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt
        self.kick = asyncio.Event()
        self.last_seen: dict[str, float] = {}  # node id -> monotonic time of last heartbeat
        self.reported: dict[str, set[tuple[str, int]]] = {}  # node -> attempts it runs
        self.armed_term: int | None = None
        self._last_resend = 0.0
        self.leader_changes = 0
        self.hb_wall: dict[str, float] = {}  # node -> wall time of its last heartbeat
        self.rr_after = ""  # round-robin cursor: the node used last
        self.rng = random.Random()  # retry jitter; the result is stamped into commands

    # ---- called by the NodeAgent servicer ------------------------------------------

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
        grace = time.monotonic() + self.rt.cfg.heartbeat_ttl
        st = self.rt.sm.state
        with self.rt.sm.lock:
            node_ids = list(st.nodes)
            assigned = [j for j in self._active_jobs() if j.state is JobState.ASSIGNED]
        # Re-arm: nobody is declared down before a full TTL under this leader.
        self.last_seen = {nid: grace for nid in node_ids}
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
                res = await self.rt.proposer.propose(
                    NodeDown(new_rid(), time.time(), node.id, reason)
                )
                if res.ok and res.value:
                    log.info("jobs returned to pending", node=node.id, jobs=len(res.value))

    async def _place(self) -> None:
        st = self.rt.sm.state
        cfg = self.rt.cfg
        now = time.time()
        with self.rt.sm.lock:
            if not st.pending:
                return
            pending = queue.runnable(st, now, cfg.queue_order, cfg.aging_rate, PLACEMENT_BATCH)
            cands = [
                Candidate(n, st.allocated(n.id).as_resources())
                for n in st.nodes.values()
                if n.alive
            ]
        items = place(pending, cands, cfg.strategy, self.rr_after)
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
    return (n.grpc_address, n.raft_address, n.capacity, n.labels)
