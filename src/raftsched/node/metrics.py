"""Prometheus metrics of one node (prometheus-client), served over HTTP.

Two kinds:
- read at scrape time from this node's replica and runtime (a custom collector):
  jobs by state, node capacity and use, Raft role/term/commit index, missed
  heartbeats (leader view), proposal counts and latency, executor counts;
- counted as changes are applied (a `WatchHub` listener, on the event loop):
  submissions, completions by state, transitions, submit-to-start latency and
  run-time histograms. Times come from the job's own leader-stamped timestamps,
  so every replica observes the same values.
"""

from __future__ import annotations

import collections
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from raftsched.core.lagstats import LagStats
from raftsched.core.model import TERMINAL_STATES, JobState
from raftsched.node.executor import Executor
from raftsched.node.lease import Lease
from raftsched.ports import LeaderDuties, RaftStatus, ReplicaView
from raftsched.replica.proposer import ProposerStats
from raftsched.replica.watch import Change, WatchHub

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class JobMetrics:
    """Counters and histograms fed with applied job changes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.submissions = Counter("raftsched_job_submissions", "Jobs submitted (applied on this replica)",
                                   registry=registry)
        self.completions = Counter("raftsched_job_completions",
                                   "Jobs that reached a terminal state, by state", ["state"],
                                   registry=registry)
        self.transitions = Counter("raftsched_job_transitions", "Job state transitions, by new state",
                                   ["state"], registry=registry)
        self.submit_to_start = Histogram(
            "raftsched_job_submit_to_start_seconds",
            "Leader time from submission to the first attempt running",
            buckets=LATENCY_BUCKETS, registry=registry)
        self.run_time = Histogram("raftsched_job_run_seconds",
                                  "Leader time from an attempt running to its end",
                                  buckets=LATENCY_BUCKETS, registry=registry)
        self._last: dict[str, tuple[JobState, int]] = {}  # non-terminal jobs: last (state, attempt)

    def observe(self, changes: list[Change]) -> None:
        """Counted per call, then one `inc` per label: a prometheus `labels()` lookup and
        a locked `inc` per change were 18% of a follower's samples applying batches."""
        moved: collections.Counter[JobState] = collections.Counter()
        ended: collections.Counter[JobState] = collections.Counter()
        submitted = 0
        for c in changes:
            j = c.job
            key = (j.state, j.attempt)
            prev = self._last.get(j.id)
            if prev is None:
                # unseen since this node started: a transition if its history says so
                h = j.history[-1] if j.history else None
                is_transition = h is not None and (h.state, h.attempt) == key
            else:
                is_transition = prev != key
            if j.state in TERMINAL_STATES:
                self._last.pop(j.id, None)
            else:
                self._last[j.id] = key
            if not is_transition:
                continue
            moved[j.state] += 1
            if j.state is JobState.PENDING and j.attempt == 0:
                submitted += 1
            elif j.state is JobState.RUNNING and j.attempt == 1 and j.started_at:
                self.submit_to_start.observe(max(0.0, j.started_at - j.submitted_at))
            if j.state in TERMINAL_STATES:
                ended[j.state] += 1
                if j.started_at and j.finished_at:
                    self.run_time.observe(max(0.0, j.finished_at - j.started_at))
        for state, n in moved.items():
            self.transitions.labels(state.value).inc(n)
        for state, n in ended.items():
            self.completions.labels(state.value).inc(n)
        if submitted:
            self.submissions.inc(submitted)


@dataclass
class Sources:
    """What the scrape reads: the node's parts, as ports."""

    me_id: str
    heartbeat_interval: float
    replica: ReplicaView
    raft: RaftStatus
    leader: LeaderDuties
    proposer_stats: ProposerStats
    executor: Executor
    watch: WatchHub
    leader_changes: Callable[[], int]
    loop_lag: LagStats
    tick_lag: LagStats
    lease: Lease | None = None
    lease_refusals: dict[str, int] | None = None  # leader: heartbeats answered without a lease


class RuntimeCollector(Collector):
    """Gauges read from the replica and the runtime at scrape time (HTTP thread)."""

    def __init__(self, src: Sources) -> None:
        self.src = src

    def collect(self) -> Iterator[Any]:
        rt = self.src
        me = rt.me_id
        st = rt.replica.state
        with rt.replica.lock:
            counts = {s.value: st.counts.get(s, 0) for s in JobState}
            nodes = list(st.nodes.values())
            usage = {nid: (u.cpu_millis, u.memory_mib, len(u.jobs)) for nid, u in st.usage.items()}
            applied = st.applied_index
        g = GaugeMetricFamily("raftsched_jobs", "Jobs in this replica, by state", labels=["state"])
        for state, count in counts.items():
            g.add_metric([state], count)
        yield g

        role = rt.raft.role()
        g = GaugeMetricFamily("raftsched_raft_role", "1 for this node's current Raft role", labels=["role"])
        for r in ("leader", "follower", "candidate"):
            g.add_metric([r], 1.0 if role == r else 0.0)
        yield g
        yield GaugeMetricFamily("raftsched_raft_term", "Current Raft term", value=rt.raft.term())
        yield GaugeMetricFamily("raftsched_raft_commit_index", "Raft commit index",
                                value=rt.raft.commit_index())
        yield GaugeMetricFamily("raftsched_raft_applied_index", "Last Raft index applied to the state",
                                value=applied)
        safety = CounterMetricFamily("raftsched_raft_safety_events",
                                     "Raft-safety layer interventions, pre-vote and check-quorum events "
                                     "(docs/raft-safety.md)",
                                     labels=["event"])
        for event, n in sorted(rt.raft.safety_stats().items()):
            safety.add_metric([event], n)
        yield safety
        yield CounterMetricFamily("raftsched_raft_leader_changes", "Leader changes observed by this node",
                                  value=rt.leader_changes())

        labels = ["node"]
        cap_cpu = GaugeMetricFamily("raftsched_node_capacity_cpu_millis", "Node CPU capacity", labels=labels)
        cap_mem = GaugeMetricFamily("raftsched_node_capacity_memory_mib", "Node memory capacity",
                                    labels=labels)
        use_cpu = GaugeMetricFamily("raftsched_node_allocated_cpu_millis",
                                    "CPU requested by jobs assigned/running on the node", labels=labels)
        use_mem = GaugeMetricFamily("raftsched_node_allocated_memory_mib",
                                    "Memory requested by jobs assigned/running on the node", labels=labels)
        running = GaugeMetricFamily("raftsched_node_active_jobs", "Jobs assigned/running on the node",
                                    labels=labels)
        alive = GaugeMetricFamily("raftsched_node_alive", "1 if the node is up (as committed)", labels=labels)
        for n in nodes:
            cpu, mem, nj = usage.get(n.id, (0, 0, 0))
            cap_cpu.add_metric([n.id], n.capacity.cpu_millis)
            cap_mem.add_metric([n.id], n.capacity.memory_mib)
            use_cpu.add_metric([n.id], cpu)
            use_mem.add_metric([n.id], mem)
            running.add_metric([n.id], nj)
            alive.add_metric([n.id], 1.0 if n.alive else 0.0)
        yield from (cap_cpu, cap_mem, use_cpu, use_mem, running, alive)

        # Missed heartbeats: only the leader tracks them (leader-local soft state).
        if rt.raft.is_leader():
            now = time.monotonic()
            interval = rt.heartbeat_interval
            age = GaugeMetricFamily("raftsched_node_heartbeat_age_seconds",
                                    "Seconds since the leader last heard from the node", labels=labels)
            missed = GaugeMetricFamily("raftsched_node_missed_heartbeats",
                                       "Heartbeat intervals missed in a row (leader view)", labels=labels)
            for nid, seen in dict(rt.leader.last_seen).items():
                a = max(0.0, now - seen)
                age.add_metric([nid], a)
                missed.add_metric([nid], max(0, int(a / interval) - 1))
            yield age
            yield missed

        ps = rt.proposer_stats
        yield CounterMetricFamily("raftsched_proposal_entries", "Raft entries proposed by this node",
                                  value=ps.entries)
        yield CounterMetricFamily("raftsched_proposal_commands", "Commands proposed by this node",
                                  value=ps.commands)
        yield CounterMetricFamily("raftsched_proposal_failures", "Proposals not confirmed",
                                  value=ps.failures)
        lats = list(ps.latencies[-2000:])
        q = GaugeMetricFamily("raftsched_proposal_latency_seconds",
                              "Proposal-to-commit latency over the last 2000 entries", labels=["quantile"])
        if lats:
            lats.sort()
            for qq in (0.5, 0.9, 0.99):
                q.add_metric([str(qq)], lats[min(len(lats) - 1, int(qq * len(lats)))])
            q.add_metric(["mean"], statistics.fmean(lats))
        yield q

        ex = rt.executor
        yield CounterMetricFamily("raftsched_executor_started", "Attempts started on this node",
                                  value=ex.started_total)
        yield CounterMetricFamily("raftsched_executor_finished", "Attempts finished on this node",
                                  value=ex.finished_total)
        yield GaugeMetricFamily("raftsched_executor_running", "Attempts running on this node",
                                value=len(ex.running))
        yield CounterMetricFamily("raftsched_executor_oom_killed", "Attempts on this node ended by the "
                                  "OOM killer (OOM_KILLED)", value=ex.oom_killed_total)
        iso = GaugeMetricFamily("raftsched_isolation_info", "Job isolation mode of this node", labels=["mode"])
        iso.add_metric([ex.isolation.mode], 1)
        yield iso
        yield GaugeMetricFamily("raftsched_watch_buffer_changes", "Job changes held for watchers",
                                value=len(rt.watch))
        for name, doc, lag in (
            ("raftsched_event_loop_lag_seconds",
             "How late the event loop (gRPC requests, placement, reports) woke from a 50 ms sleep",
             rt.loop_lag),
            ("raftsched_raft_tick_lag_seconds", "How far a Raft tick overran its period", rt.tick_lag),
        ):
            yield HistogramMetricFamily(name, doc, buckets=lag.cumulative(), sum_value=lag.total)
            yield GaugeMetricFamily(name.replace("_seconds", "_max_seconds"),
                                    "Largest since the node started: " + doc[0].lower() + doc[1:],
                                    value=lag.max)
        if rt.lease is not None:
            yield CounterMetricFamily("raftsched_lease_expirations", "Times this node's lease ran out "
                                      "(its watchdog killed the node's jobs)", value=rt.lease.expirations)
        if rt.lease_refusals is not None:
            c = CounterMetricFamily("raftsched_lease_refusals", "Heartbeats this node answered without "
                                    "a lease while leading, by reason", labels=["reason"])
            for reason, n in dict(rt.lease_refusals).items():
                c.add_metric([reason], n)
            yield c
        g = GaugeMetricFamily("raftsched_node_info", "This node", labels=["node"])
        g.add_metric([me], 1)
        yield g


class NodeMetrics:
    def __init__(self, src: Sources) -> None:
        self.registry = CollectorRegistry()
        self.jobs = JobMetrics(self.registry)
        self.registry.register(RuntimeCollector(src))
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def serve(self, addr: str) -> None:
        host, _, port = addr.rpartition(":")
        self._server, self._thread = start_http_server(int(port), host, registry=self.registry)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
