"""SIGKILL at 50 random moments while the log compacts under load: every acknowledged
job survives every restart. `log_compaction_entries = 8` makes each node snapshot and
compact its journal several times a second under the submission load, so many kills
land inside a compaction or a snapshot install (replica/durable.py)."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import grpc
import pytest

from raftsched import config as configmod
from raftsched.client.client import Client
from raftsched.dev.chaos import TERMINAL, wait_identical
from raftsched.dev.launcher import LocalCluster, local_token, write_config
from raftsched.replica.audit import audit_data_dir
from raftsched.v1 import jobs_pb2

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(400)]

KILLS = 50


def test_sigkill_during_compaction_loses_no_acknowledged_job() -> None:
    root = Path(tempfile.mkdtemp(prefix="raftsched-compaction-kills-"))
    rng = random.Random(int(os.environ.get("RAFTSCHED_CHAOS_SEED", "20261202")))
    cfg = configmod.load(write_config(root, 3, cluster_extra='log_compaction_entries = 8\nfsync = "always"'))
    cluster = LocalCluster(cfg, log_dir=root / "logs")
    acked: list[str] = []
    stop = threading.Event()

    def submit() -> None:
        with Client([n.grpc for n in cfg.nodes], timeout=20, token=local_token(cfg), tls=cluster.tls()) as c:
            while not stop.is_set():
                with contextlib.suppress(grpc.RpcError):  # not acknowledged: not counted
                    acked.extend(c.submit_batch([jobs_pb2.JobSpec(command=["true"])] * rng.randint(1, 4)))
                time.sleep(0.02)

    def back(addr: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.RpcError), \
                    Client([addr], timeout=2, token=local_token(cfg), tls=cluster.tls()) as one:
                if one.status().leader_id:
                    return
            time.sleep(0.1)
        raise AssertionError(f"node at {addr} did not come back")

    cluster.start()
    sub = threading.Thread(target=submit, name="submitter")
    try:
        with Client([n.grpc for n in cfg.nodes], timeout=30, token=local_token(cfg), tls=cluster.tls()) as c:
            c.wait_for_leader(30)
            sub.start()
            for _ in range(KILLS):
                node = rng.choice(cfg.nodes)
                time.sleep(rng.uniform(0.1, 0.5))
                cluster.signal(node.id, signal.SIGKILL)
                time.sleep(rng.uniform(0.05, 0.3))
                cluster.start_node(node.id)
                back(node.grpc)  # one node down at a time: the cluster keeps its quorum
            stop.set()
            sub.join()
            want = set(acked)
            deadline = time.monotonic() + 120
            done: set[str] = set()
            while time.monotonic() < deadline:
                try:
                    done = {j.id for j in c.list_all() if j.state in TERMINAL}
                except grpc.RpcError:
                    done = set()
                if want <= done:
                    break
                time.sleep(0.5)
            lost = want - done
            snapshots = [n.id for n in cfg.nodes if (cfg.node_data_dir(n.id) / "raft.snapshot").exists()]
            print(f"\ncompaction kills: {KILLS} SIGKILLs, {len(want)} jobs acknowledged, "
                  f"{len(want) - len(lost)} terminal, lost {len(lost)}; snapshots on {snapshots}")
            assert len(want) > 200
            assert not lost, f"{len(lost)} acknowledged jobs lost, e.g. {sorted(lost)[:5]}"
            assert len(snapshots) == 3, "expected every node to have compacted its log"
            reps = wait_identical(c, 60)
            assert len({(r.applied_index, r.state_digest) for r in reps}) == 1
        cluster.stop()
        for n in cfg.nodes:
            rep = audit_data_dir(cfg.node_data_dir(n.id))
            print(rep.summary())
            assert rep.ok, rep.summary()
    finally:
        stop.set()
        if sub.is_alive():
            sub.join()
        cluster.stop()
        if not os.environ.get("RAFTSCHED_KEEP_TEST_DIRS"):
            shutil.rmtree(root, ignore_errors=True)
