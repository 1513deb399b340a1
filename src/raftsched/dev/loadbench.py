"""The control-plane load scenario (issue 12), used by `scripts/bench --scenario load`
and, scaled down, by tests/integration/test_load.py.

On a 3-node loopback cluster whose nodes have little CPU (so submitted jobs queue)
with one long job running per node, at the same time:
- `raftsched submit --count B` run `jobs / B` times, one after the other (as an operator),
- `raftsched nodes` several times in parallel, then `raftsched list --all --json`,
- `watches` open WatchJobs streams spread over the nodes,
- `cron_calls` parallel NextFireTimes(count=1000) callers for `cron_seconds`.
Counted: elections (Raft term changes), NODE_DOWN events, restarts of the long jobs;
measured: event-loop and Raft tick lag (p99 from the Prometheus histograms' deltas,
max of the recent window), per-node RSS, how long each CLI command took.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from raftsched import config as configmod
from raftsched.client.client import Client
from raftsched.client.credentials import local_files, open_aio_channel, token_metadata
from raftsched.dev.launcher import LocalCluster, write_config
from raftsched.v1 import (
    events_pb2,
    events_pb2_grpc,
    jobs_pb2,
    workflows_pb2,
    workflows_pb2_grpc,
)

LONG = jobs_pb2.JobSpec(command=["sleep", "3600"], resources=jobs_pb2.Resources(cpu_millis=300, memory_mib=8))


@dataclass
class Params:
    jobs: int = 100_000
    batch: int = 10_000
    nodes_calls: int = 3
    watches: int = 2000
    unfiltered_every: int = 50  # every Nth watch stream takes every change; the others watch a few jobs
    cron_calls: int = 16
    cron_seconds: float = 8.0
    cpu: int = 300
    node_pythonpath: str = ""  # run the nodes from another source tree (a "before" figure)
    # The load generator (CLI processes, watch and preview clients) runs at this lower CPU
    # priority than the nodes: on a real cluster it runs on other machines; here it
    # shares 2 cores with them, and the question is whether the nodes starve themselves.
    client_nice: int = 10
    echo: bool = False


@dataclass
class Figures:
    elections: int = 0
    node_down: int = 0
    long_job_restarts: int = 0
    submitted: int = 0
    submit_seconds: list[float] = field(default_factory=list)
    nodes_seconds: list[float] = field(default_factory=list)
    nodes_rpc_seconds: list[float] = field(default_factory=list)  # the same calls, no CLI start-up
    list_all_seconds: float = 0.0
    watches_open: int = 0
    watches_refused: int = 0
    cron_calls_done: int = 0
    cron_refused: int = 0
    lag: dict[str, dict[str, float]] = field(default_factory=dict)
    rss_mib: dict[str, float] = field(default_factory=dict)
    # per node: its lease expirations, and (as leader) heartbeats refused a lease, by reason
    leases: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _cli(cfg: configmod.ClusterConfig, *args: str, timeout: float = 300) -> tuple[float, str]:
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "raftsched", "--config", str(cfg.path), *args],
                       capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"raftsched {' '.join(args)}: exit {p.returncode}: {p.stderr[-500:]}")
    return time.monotonic() - t, p.stdout


def _scrape(addr: str) -> dict[str, float]:
    """The lag histogram series of one node's /metrics."""
    out: dict[str, float] = {}
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(("raftsched_event_loop_lag", "raftsched_raft_tick_lag",
                                "raftsched_lease_expirations_total", "raftsched_lease_refusals_total")):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
    return out


def _p99(before: dict[str, float], after: dict[str, float], metric: str) -> float:
    """Upper bound of the bucket holding the 99th percentile of the samples in between."""
    buckets = []
    for k, v in after.items():
        if k.startswith(metric + "_bucket"):
            le = k.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), v - before.get(k, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    for le, cum in buckets:
        if total and cum >= 0.99 * total:
            return le
    return 0.0


def _rss(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class _Background:
    """Watch streams, cluster-event counters and cron previews on their own event loop."""

    def __init__(self, cfg: configmod.ClusterConfig, p: Params, f: Figures, token: str | None) -> None:
        self.cfg, self.p, self.f = cfg, p, f
        self.md = token_metadata(token)  # every call carries the cluster's management token
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.tasks: list[asyncio.Future[Any]] = []
        self.channels: list[grpc.aio.Channel] = []
        self.downs: set[tuple[str, int]] = set()
        self.watched: list[str] = []  # the long jobs: what the filtered streams watch

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)

    async def _start(self) -> None:
        addrs = [n.grpc for n in self.cfg.nodes]
        for a in addrs:  # NODE_DOWN events, as every node observes them
            ch = open_aio_channel(a, local_files(self.cfg.data_dir))
            self.channels.append(ch)
            self.tasks.append(asyncio.ensure_future(self._cluster_events(ch)))
        per_channel = 100
        for i in range(self.p.watches):
            if i % per_channel == 0:  # its own connection: stands for another client
                ch = open_aio_channel(addrs[(i // per_channel) % len(addrs)], local_files(self.cfg.data_dir),
                                      [("grpc.use_local_subchannel_pool", 1)])
                self.channels.append(ch)
            everything = self.p.unfiltered_every and i % self.p.unfiltered_every == 0
            req = events_pb2.WatchJobsRequest(
                job_ids=[] if everything else [*self.watched, f"no-such-job-{i}"])
            self.tasks.append(asyncio.ensure_future(self._watch(ch, req)))

    async def _cluster_events(self, ch: grpc.aio.Channel) -> None:
        stub = events_pb2_grpc.EventsStub(ch)
        try:
            async for ev in stub.WatchCluster(events_pb2.WatchClusterRequest(), metadata=self.md):
                if ev.kind == events_pb2.NODE_DOWN:
                    self.downs.add((ev.node_id, ev.raft_index))
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                self.f.errors.append(f"WatchCluster: {e.code().name} {e.details()}")

    async def _watch(self, ch: grpc.aio.Channel, req: events_pb2.WatchJobsRequest) -> None:
        stub = events_pb2_grpc.EventsStub(ch)
        opened = False
        try:
            async for _ in stub.WatchJobs(req, metadata=self.md):
                if not opened:
                    opened = True
                    self.f.watches_open += 1
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                self.f.watches_refused += 1
            elif e.code() != grpc.StatusCode.CANCELLED:
                self.f.errors.append(f"WatchJobs: {e.code().name} {e.details()}")

    def cron(self) -> None:
        asyncio.run_coroutine_threadsafe(self._cron(), self.loop).result(self.p.cron_seconds + 120)

    async def _cron(self) -> None:
        end = time.monotonic() + self.p.cron_seconds
        addrs = [n.grpc for n in self.cfg.nodes]

        async def caller(i: int) -> None:
            async with open_aio_channel(addrs[i % len(addrs)], local_files(self.cfg.data_dir)) as ch:
                stub = workflows_pb2_grpc.WorkflowsStub(ch)
                while time.monotonic() < end:
                    try:
                        await stub.NextFireTimes(workflows_pb2.NextFireTimesRequest(
                            cron="* * * * *", count=1000), timeout=60, metadata=self.md)
                        self.f.cron_calls_done += 1
                    except grpc.aio.AioRpcError as e:
                        if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                            raise
                        self.f.cron_refused += 1
                        await asyncio.sleep(0.1)

        await asyncio.gather(*(caller(i) for i in range(self.p.cron_calls)))

    def stop(self) -> None:
        async def _stop() -> None:
            for t in self.tasks:
                t.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            for ch in self.channels:
                await ch.close()
        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def run(root: Path, p: Params) -> Figures:
    f = Figures()
    path = write_config(root, 3, cpu=p.cpu, mem=100_000,
                        cluster_extra='log_level = "warning"\nlease = 1.0')
    cfg = configmod.load(path)
    if p.node_pythonpath:
        os.environ["PYTHONPATH"] = p.node_pythonpath
    lc = LocalCluster(cfg, log_dir=root / "logs", echo=p.echo)
    lc.start()
    bg: _Background | None = None
    prio = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, prio + p.client_nice)  # this thread and those it starts
    try:
        with Client([n.grpc for n in cfg.nodes], timeout=60, tls=lc.tls(), token=lc.token) as c:
            c.wait_for_leader(60)
            deadline = time.monotonic() + 30
            while sum(n.alive for n in c.nodes()) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            long_ids = c.submit_batch([LONG] * 3)
            while any(c.get(i).state != jobs_pb2.RUNNING for i in long_ids):
                time.sleep(0.1)
            term0 = c.status().term
            scrape0 = {n.id: _scrape(n.metrics) for n in cfg.nodes}
            bg = _Background(cfg, p, f, lc.token)
            bg.watched = list(long_ids)
            bg.start()
            cron = threading.Thread(target=bg.cron)
            cron.start()
            for _ in range(p.jobs // p.batch if p.batch else 0):
                dt, _out = _cli(cfg, "submit", "--count", str(p.batch), "--cpu", "100", "--", "true")
                f.submit_seconds.append(dt)
                f.submitted += p.batch
            threads = [threading.Thread(target=lambda: f.nodes_seconds.append(_cli(cfg, "nodes")[0]))
                       for _ in range(p.nodes_calls)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for _ in range(p.nodes_calls):  # what `raftsched nodes` asks, from this process
                t = time.monotonic()
                c.nodes()
                c.status(include_replicas=True)
                f.nodes_rpc_seconds.append(time.monotonic() - t)
            f.list_all_seconds = _cli(cfg, "list", "--all", "--json")[0]
            cron.join()
            time.sleep(2.0)  # let a late NODE_DOWN or election show
            st = c.status(include_replicas=True)
            f.elections = st.term - term0
            f.long_job_restarts = sum(c.get(i).attempt - 1 for i in long_ids)
            for r in st.replicas:
                f.lag[r.node_id] = {"loop_max": r.loop_lag_max, "tick_max": r.tick_lag_max}
            for n in cfg.nodes:
                s1 = _scrape(n.metrics)
                f.lag[n.id]["loop_p99"] = _p99(scrape0[n.id], s1, "raftsched_event_loop_lag_seconds")
                f.lag[n.id]["tick_p99"] = _p99(scrape0[n.id], s1, "raftsched_raft_tick_lag_seconds")
                f.lag[n.id]["loop_max_ever"] = s1.get("raftsched_event_loop_lag_max_seconds", 0.0)
                f.lag[n.id]["tick_max_ever"] = s1.get("raftsched_raft_tick_lag_max_seconds", 0.0)
                f.leases[n.id] = {
                    "expired": s1.get("raftsched_lease_expirations_total", 0.0)
                    - scrape0[n.id].get("raftsched_lease_expirations_total", 0.0),
                    **{k.split('reason="')[1].rstrip('"}'): v - scrape0[n.id].get(k, 0.0)
                       for k, v in s1.items() if k.startswith("raftsched_lease_refusals_total")},
                }
            f.node_down = len(bg.downs)
        f.rss_mib = {nid: _rss(proc.pid) for nid, proc in lc.procs.items()}
    finally:
        if bg is not None:
            bg.stop()
        lc.stop()
        with contextlib.suppress(PermissionError):  # not root: this process stays nicer
            os.setpriority(os.PRIO_PROCESS, 0, prio)
    return f


def report(f: Figures) -> str:
    lines = [
        f"elections={f.elections} node_down={f.node_down} long_job_restarts={f.long_job_restarts}",
        f"submitted={f.submitted} in {len(f.submit_seconds)} batches, "
        f"{sum(f.submit_seconds):.1f}s total (slowest {max(f.submit_seconds, default=0):.2f}s)",
        "raftsched nodes: " + ", ".join(f"{s:.2f}s" for s in f.nodes_seconds)
        + " (its RPCs alone: " + ", ".join(f"{s:.3f}s" for s in f.nodes_rpc_seconds) + ")"
        + f"; list --all --json: {f.list_all_seconds:.2f}s",
        f"watch streams open={f.watches_open} refused={f.watches_refused}; "
        f"cron previews done={f.cron_calls_done} refused={f.cron_refused}",
    ]
    for nid, lag in sorted(f.lag.items()):
        lines.append(f"{nid}: loop lag p99<={lag.get('loop_p99', 0) * 1000:.0f}ms "
                     f"max={lag.get('loop_max', 0) * 1000:.0f}ms; tick lag p99<="
                     f"{lag.get('tick_p99', 0) * 1000:.0f}ms max={lag.get('tick_max', 0) * 1000:.0f}ms "
                     f"(since start: loop {lag.get('loop_max_ever', 0) * 1000:.0f}ms, "
                     f"tick {lag.get('tick_max_ever', 0) * 1000:.0f}ms); "
                     f"peak RSS {f.rss_mib.get(nid, 0):.0f} MiB; lease "
                     + ", ".join(f"{k} {v:.0f}" for k, v in f.leases.get(nid, {}).items()))
    if f.errors:
        lines.append(f"errors ({len(f.errors)}): {f.errors[:5]}")
    return "\n".join(lines)
