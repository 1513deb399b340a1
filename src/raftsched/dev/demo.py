"""`raftsched demo`: start the local cluster, run a mixed workload a newcomer can watch."""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from raftsched import config as configmod
from raftsched.client.client import Client
from raftsched.dev.launcher import LocalCluster
from raftsched.v1 import jobs_pb2

TERMINAL = {jobs_pb2.SUCCEEDED, jobs_pb2.FAILED, jobs_pb2.CANCELLED, jobs_pb2.TIMED_OUT, jobs_pb2.DEAD}


def _workload(n: int) -> list[jobs_pb2.JobSpec]:
    specs = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            specs.append(jobs_pb2.JobSpec(
                name=f"sleep-{i}", command=["sleep", "1.5"], priority=0,
                resources=jobs_pb2.Resources(cpu_millis=500, memory_mib=256)))
        elif kind == 1:
            specs.append(jobs_pb2.JobSpec(
                name=f"hash-{i}", use_shell=True,
                shell="head -c 2000000 /dev/urandom | sha256sum", priority=5,
                resources=jobs_pb2.Resources(cpu_millis=250, memory_mib=64)))
        elif kind == 2:
            specs.append(jobs_pb2.JobSpec(
                name=f"py-{i}", command=[sys.executable, "-c",
                                         "import os; print('hello from', os.environ['RAFTSCHED_NODE_ID'])"],
                resources=jobs_pb2.Resources(cpu_millis=200, memory_mib=128)))
        elif kind == 3:
            specs.append(jobs_pb2.JobSpec(
                name=f"urgent-{i}", command=["sleep", "0.5"], priority=100,
                resources=jobs_pb2.Resources(cpu_millis=1000, memory_mib=512)))
        elif kind == 4:
            specs.append(jobs_pb2.JobSpec(
                name=f"date-{i}", command=["date", "+%s.%N"],
                resources=jobs_pb2.Resources(cpu_millis=100, memory_mib=32)))
        else:
            specs.append(jobs_pb2.JobSpec(
                name=f"fails-{i}", use_shell=True, shell="echo oops >&2; exit 3",
                resources=jobs_pb2.Resources(cpu_millis=100, memory_mib=32)))
    return specs


def run_demo(config_path: str, n_jobs: int) -> int:
    cfg = configmod.load(config_path)
    with tempfile.TemporaryDirectory(prefix="raftsched-demo-") as tmp:
        # A fresh data directory so the demo always starts from an empty cluster.
        text = Path(config_path).read_text()
        demo_cfg_path = Path(tmp) / "cluster.toml"
        demo_cfg_path.write_text(text.replace('data_dir = "data"', f'data_dir = "{tmp}/data"'))
        cfg = configmod.load(demo_cfg_path)
        print(f"== starting {len(cfg.nodes)} nodes (logs in {tmp}/logs)")
        cluster = LocalCluster(cfg, log_dir=Path(tmp) / "logs")
        cluster.start()
        token = cluster.token
        try:
            with Client([n.grpc for n in cfg.nodes], tls=cluster.tls(), token=token) as c:
                st = c.wait_for_leader(30)
                print(f"== leader is {st.leader_id} (term {st.term})")
                time.sleep(1.0)  # let every node heartbeat in
                follower = next(n for n in cfg.nodes if n.id != st.leader_id)
                print(f"== submitting {n_jobs} jobs through follower {follower.id}")
                with Client([follower.grpc], tls=cluster.tls(), token=token) as fc:
                    ids = fc.submit_batch(_workload(n_jobs))
                t0 = time.time()
                while True:
                    jobs = list(c.list_all())
                    jobs = [j for j in jobs if j.id in set(ids)]
                    by_state = Counter(jobs_pb2.JobState.Name(j.state) for j in jobs)
                    running = Counter(j.node_id for j in jobs if j.state == jobs_pb2.RUNNING)
                    nodes = "  ".join(f"{n.id}:{running.get(n.id, 0)} running" for n in cfg.nodes)
                    print(f"t={time.time() - t0:5.1f}s  " +
                          " ".join(f"{k}={v}" for k, v in sorted(by_state.items())) + f"   | {nodes}")
                    if all(j.state in TERMINAL for j in jobs):
                        break
                    time.sleep(0.5)
                per_node = Counter(j.node_id for j in jobs)
                print("== finished. jobs per node: " +
                      ", ".join(f"{k}={v}" for k, v in sorted(per_node.items())))
                failed = [j for j in jobs if j.state == jobs_pb2.FAILED]
                if failed:
                    print(f"== {len(failed)} jobs failed on purpose, e.g. {failed[0].id}: "
                          f"{failed[0].reason}, stderr {failed[0].stderr_tail.strip()!r}")
                sample = next(j for j in jobs if j.spec.name.startswith("py-"))
                print(f"== sample output of {sample.id}: {sample.stdout_tail.strip()!r}")
                st = c.status(include_replicas=True)
                for r in st.replicas:
                    print(f"   replica {r.node_id}: {r.raft_state:9s} applied={r.applied_index} "
                          f"digest={r.state_digest[:16]}")
                same = len({(r.applied_index, r.state_digest) for r in st.replicas}) == 1
                print("== replicas identical" if same else "== replicas differ (still settling?)")
        finally:
            print("== stopping the cluster")
            cluster.stop()
    return 0
