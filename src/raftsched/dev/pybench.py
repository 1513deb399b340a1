"""Python task figures (issue 14), used by `scripts/bench --scenario pytasks`.

On a fresh 3-node loopback cluster (TLS, ACLs, every state change committed on a
Raft quorum, `python_workers` warm workers per node):
- end to end: `tasks` no-op Python tasks submitted in batches through
  `raftsched.Client.submit_many`, until all are SUCCEEDED: tasks/s;
- the same for `tasks` no-op command jobs (`true`, a process each), on the same
  cluster right after: the subprocess baseline under the same machine load;
- round trip: one at a time, `Client.submit` then `Client.result` (a watch of the
  job) on a client of the leader: submit -> result latency p50/p99.
The no-op task is `raftsched.dev.noop:noop` (a module importing nothing), importable
from raftsched's source. Printed with them: the CPU each task costs (leader, follower,
workers) and the rate that allows on this machine's cores, and the round trip's floor
(a gRPC-only echo plus two commits of pysyncobj alone: dev/benchbase.py).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from raftsched import config as configmod
from raftsched.client.api import Client
from raftsched.dev import benchbase, cpustat, profile
from raftsched.dev.benchbase import pct
from raftsched.dev.launcher import LocalCluster, write_config

NOOP = "raftsched.dev.noop:noop"


@dataclass
class Figures:
    tasks: int
    workers_per_node: int
    e2e_seconds: float
    e2e_tasks_per_s: float
    submit_seconds: float
    failed: int
    command_jobs_per_s: float
    failed_reasons: list[str]
    round_trips: int
    rt_p50_ms: float
    rt_p99_ms: float
    rt_mean_ms: float
    cpu_leader_ms: float  # CPU per task, end-to-end phase: the leader's node process
    cpu_follower_ms: float  # a follower's node process
    cpu_workers_ms: float  # the Python workers of all nodes together
    echo_p50_ms: float = 0.0  # baselines (0: not run): a gRPC-only unary echo at c=1
    commit_p50_ms: float = 0.0  # pysyncobj alone, one commit at a time, fsync always


def run(tmp: Path, tasks: int = 5000, workers: int = 2, round_trips: int = 200,
        profile_dir: Path | None = None, baselines: bool = True, profile_gil: bool = False) -> Figures:
    """`profile_dir`: py-spy every node during the Python-task end-to-end phase
    (pytasks-<node>-<leader|follower>.txt; the top own-time functions are printed)."""
    path = write_config(tmp, 3, cpu=200_000, mem=200_000, cluster_extra='log_level = "warning"',
                        node_extra=[f"python_workers = {workers}"] * 3)
    cfg = configmod.load(path)
    lc = LocalCluster(cfg, log_dir=tmp / "logs")
    lc.start()
    try:
        with Client(config=path) as c:
            leader = c.jobs.wait_for_leader(30).leader_id
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and sum(n.alive for n in c.jobs.nodes()) < 3:
                time.sleep(0.1)
            # warm: every worker imports the task's module on first use (a batch this size
            # reaches every worker of every node), then the pool is measured as it runs
            c.wait_all(c.submit_many([{"python": NOOP}] * (20 * workers * 3)), timeout=120)
            spies = _profile(lc, leader, profile_dir, profile_gil) if profile_dir is not None else []
            cpu0 = _cpu(lc)
            e2e = _end_to_end(c, tasks, {"python": NOOP})
            cpu = _per_task(cpu0, _cpu(lc), leader, tasks)
            for spy, _ in spies:  # py-spy writes its file when stopped
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            for _, out in spies:
                print(profile.summary(out))
            baseline = _end_to_end(c, tasks, {"command": ["true"]})[1]
            reasons = sorted({f"{j.spec.python.target or 'command'}: {j.reason}"
                              for j in c.list(["FAILED"])})[:10]
        with Client([cfg.node(leader).grpc], config=path) as c:
            lats = _round_trips(c, round_trips)
    finally:
        lc.stop()
    echo = commit = 0.0
    if baselines:  # what bounds the round trip: one gRPC call and two commit rounds
        echo = benchbase.grpc_echo(cfg, b"x" * 200, (1,), 3.0)[0]["p50_ms"]
        commit = benchbase.raft_only(tmp / "raft", "always", 1500, 1)["p50_ms"]
    return Figures(tasks, workers, *e2e, baseline, reasons, round_trips, pct(lats, 50) * 1e3, pct(lats, 99) * 1e3,
                   statistics.fmean(lats) * 1e3, *cpu, echo, commit)


def _cpu(lc: LocalCluster) -> dict[str, tuple[float, float]]:
    return {nid: cpustat.tree_seconds(p.pid) for nid, p in lc.procs.items()}


def _per_task(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]],
              leader: str, n: int) -> tuple[float, float, float]:
    """CPU ms per task: the leader node process, a follower node process (mean), and
    all Python worker processes (and the lease watchdogs) together."""
    own = {nid: after[nid][0] - before[nid][0] for nid in after}
    workers = sum(after[nid][1] - before[nid][1] for nid in after)
    followers = [v for nid, v in own.items() if nid != leader]
    return (1e3 * own[leader] / n, 1e3 * statistics.fmean(followers) / n if followers else 0.0,
            1e3 * workers / n)


def _profile(lc: LocalCluster, leader: str, out_dir: Path,
             gil: bool = False) -> list[tuple[subprocess.Popen[bytes], Path]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    spies = []
    for nid, proc in lc.procs.items():
        out = out_dir / f"pytasks-{nid}-{'leader' if nid == leader else 'follower'}.txt"
        spies.append((profile.attach(proc.pid, out, gil=gil), out))
    return spies


def _end_to_end(c: Client, n: int, what: dict[str, Any]) -> tuple[float, float, float, int]:
    before = c.jobs.status().jobs_by_state.get("SUCCEEDED", 0)
    t0 = time.perf_counter()
    for i in range(0, n, 500):
        c.submit_many([{**what, "cpu_millis": 10, "memory_mib": 1}] * min(500, n - i))
    t_sub = time.perf_counter() - t0
    while True:
        st = c.jobs.status().jobs_by_state
        done = st.get("SUCCEEDED", 0) - before + st.get("FAILED", 0)
        if done >= n:
            break
        if time.perf_counter() - t0 > 600:
            raise TimeoutError(f"only {done}/{n} tasks finished")
        time.sleep(0.05)  # a status call costs the node ~1 ms: poll gently
    el = time.perf_counter() - t0
    return el, n / el, t_sub, st.get("FAILED", 0)


def _round_trips(c: Client, n: int) -> list[float]:
    lats = []
    for _ in range(n):
        t = time.perf_counter()
        c.result(c.submit(python=NOOP, cpu_millis=10, memory_mib=1), timeout=60)
        lats.append(time.perf_counter() - t)
    return lats


def report(f: Figures) -> str:
    return (f"python tasks end to end  {f.e2e_tasks_per_s:8.0f} no-op tasks/s ({f.tasks} tasks in "
            f"{f.e2e_seconds:.2f}s, submit {f.submit_seconds:.2f}s, {f.failed} failed, "
            f"{f.workers_per_node} workers/node)\n"
            f"command jobs end to end  {f.command_jobs_per_s:8.0f} no-op jobs/s (`true`, same cluster, "
            f"for comparison)\n"
            + "".join(f"  failed: {r}\n" for r in f.failed_reasons)
            + f"python submit->result    p50 {f.rt_p50_ms:.2f} ms  p99 {f.rt_p99_ms:.2f} ms  "
            f"mean {f.rt_mean_ms:.2f} ms ({f.round_trips} sequential round trips via Client.result)\n"
            f"CPU per task             leader {f.cpu_leader_ms:.3f} ms, follower {f.cpu_follower_ms:.3f} ms, "
            f"workers {f.cpu_workers_ms:.3f} ms: at most {_bound(f):.0f} tasks/s on "
            f"{os.cpu_count()} cores with all three nodes here"
            + (f"\nbound submit->result    p50 >= {f.echo_p50_ms + 2 * f.commit_p50_ms:.2f} ms: a gRPC round trip "
               f"({f.echo_p50_ms:.2f} ms) + two commits (the submission with its placement, then FINISHED; "
               f"{f.commit_p50_ms:.2f} ms each, pysyncobj alone)" if f.commit_p50_ms else ""))


def _bound(f: Figures) -> float:
    per_task = (f.cpu_leader_ms + 2 * f.cpu_follower_ms + f.cpu_workers_ms) / 1e3
    return (os.cpu_count() or 1) / per_task if per_task > 0 else float("inf")


def as_dict(f: Figures) -> dict[str, Any]:
    return asdict(f)
