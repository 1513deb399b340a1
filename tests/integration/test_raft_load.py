"""Bounded load test: 3 SafeSyncObj processes, >= 100,000 replicated commands.

Without raftsafe, appendEntriesUseBatch=False reliably makes followers log
"truncating already-applied log entries" within ~30k commands on loopback.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from raft_load_node import Cluster

COMMANDS = 100_000
WINDOW = 2000  # async calls in flight


@pytest.fixture
def cluster_factory(tmp_path):
    clusters: list[Cluster] = []

    def make(**kw) -> Cluster:
        c = Cluster(tmp_path / "cluster", **kw)
        clusters.append(c)
        c.start()
        return c

    yield make
    for c in clusters:  # every process is SIGKILLed, even on failure
        c.stop()


@pytest.mark.cluster
@pytest.mark.timeout(120)
@pytest.mark.parametrize("use_batch", [True, False], ids=["batch", "nobatch"])
def test_load_no_truncation_and_identical_state(cluster_factory, use_batch):
    t0 = time.monotonic()
    c = cluster_factory(batch=use_batch)
    leader = c.wait_leader(timeout=20)
    drv = c.drive(leader, COMMANDS, WINDOW, timeout=90 if not use_batch else 60)
    st = c.wait_converged(COMMANDS, timeout=20)
    elapsed = time.monotonic() - t0

    bad = c.bad_log_lines()
    assert not bad, "\n".join(bad[:20])
    counts = {(s["applied_count"], s["last_applied"], s["digest"]) for s in st.values()}
    assert len(counts) == 1
    count, last_applied, digest = counts.pop()
    assert count >= COMMANDS
    stats = {n: s["raftsafe"] for n, s in st.items()}
    assert all(s["truncations_refused"] == 0 for s in stats.values())
    print(f"\nappendEntriesUseBatch={use_batch}: {drv['ok']} ok / {drv['failed']} failed "
          f"commands in {drv['elapsed']:.1f}s = {drv['throughput']:.0f} cmd/s, "
          f"commit latency p50 {drv['p50_ms']:.1f} ms p99 {drv['p99_ms']:.1f} ms; "
          f"applied={count} last_applied={last_applied} digest={digest[:16]} "
          f"total {elapsed:.1f}s")
    for name, s in sorted(stats.items()):
        print(f"  {name}: {s}")
