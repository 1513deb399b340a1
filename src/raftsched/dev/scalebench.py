"""Scale figures of the replicated state (issue 12), for `scripts/bench --scenario scale`.

Builds, in this process and through `core.apply` exactly as a replica does, a state
retaining `jobs` jobs: half pending, half finished after a full attempt (history
and attempt record), then measures:
- memory per retained job (RSS growth / jobs), pending and finished separately,
- the snapshot: its size as pysyncobj writes it (pickle of the versioned dict) and
  the stall of the process that takes it (a node forks; the child serializes): the
  fork itself and the longest gap seen by a 1 ms ticker thread meanwhile,
- reading the first page of ListJobs (100 and 1000 jobs, with the protobuf),
- the state digest: a full hash (after a restore) and an incremental one.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from pathlib import Path
from typing import Any

from raftsched.core import apply as fsm
from raftsched.core import batches
from raftsched.core.commands import (
    Assign,
    AssignItem,
    FinishedItem,
    JobsFinished,
    JobsStarted,
    NodeUp,
    StartedItem,
    SubmitJobs,
)
from raftsched.core.model import JobSpec, JobState, Node, Resources
from raftsched.core.state import ClusterState
from raftsched.rpc.public import _first_page, list_page

SPEC = JobSpec(command=("python3", "-c", "print(42)"), resources=Resources(10, 16), name="scale")


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _Ticker:
    """Longest gap between the wake-ups of a thread sleeping 1 ms (a Raft tick's view)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            time.sleep(0.001)
            now = time.monotonic()
            self.worst = max(self.worst, now - last - 0.001)
            last = now

    def __enter__(self) -> _Ticker:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def _build(s: ClusterState, n: int, finish: bool, prefix: str, ts: float) -> None:
    """n jobs through apply, in entries of at most batches.PART jobs (as the proposer bounds them)."""
    step = batches.PART
    for start in range(0, n, step):
        ids = [f"{prefix}{i:08d}" for i in range(start, min(n, start + step))]
        fsm.apply(s, SubmitJobs(f"{prefix}s{start}", ts, tuple((i, SPEC) for i in ids)))
        if not finish:
            continue
        fsm.apply(s, Assign(f"{prefix}a{start}", ts + 1, tuple(AssignItem(i, "n1", 0) for i in ids)))
        toks = {i: s.jobs[i].fencing_token for i in ids}
        fsm.apply(s, JobsStarted(f"{prefix}b{start}", ts + 2,
                                 tuple(StartedItem(i, 1, toks[i]) for i in ids)))
        fsm.apply(s, JobsFinished(f"{prefix}f{start}", ts + 3, tuple(
            FinishedItem(i, 1, toks[i], 0, stdout_tail="42\n") for i in ids)))


def run(root: Path, jobs: int) -> dict[str, Any]:
    r: dict[str, Any] = {"jobs": jobs}
    s = ClusterState()
    fsm.apply(s, NodeUp("up", 1.0, Node("n1", "127.0.0.1:1", "127.0.0.1:2",
                                       Resources(10**9, 10**9))))
    s.digest()
    half = jobs // 2
    base = _rss_mib()
    t = time.monotonic()
    _build(s, half, True, "f", 10.0)
    mid = _rss_mib()
    _build(s, jobs - half, False, "p", 20.0)
    r["build_s"] = time.monotonic() - t
    r["rss_mib"] = _rss_mib()
    r["bytes_per_finished_job"] = (mid - base) * 2**20 / max(1, half)
    r["bytes_per_pending_job"] = (r["rss_mib"] - mid) * 2**20 / max(1, jobs - half)
    assert s.counts[JobState.SUCCEEDED] == half and s.counts[JobState.PENDING] == jobs - half

    # the snapshot, as a node takes it: fork; the child pickles the state's dict
    path = root / "snapshot"
    with _Ticker() as tick:
        t = time.monotonic()
        pid = os.fork()
        if pid == 0:  # child
            try:
                with open(path, "wb") as f:
                    pickle.dump(s.to_dict(), f, protocol=pickle.HIGHEST_PROTOCOL)
            finally:
                os._exit(0)
        r["fork_ms"] = (time.monotonic() - t) * 1000
        os.waitpid(pid, 0)
        r["snapshot_write_s"] = time.monotonic() - t
    r["snapshot_stall_ms"] = tick.worst * 1000
    r["snapshot_mib"] = path.stat().st_size / 2**20

    for size in (100, 1000):
        t = time.monotonic()
        jl = _first_page(s.jobs, set(), size)  # under the replica lock in the servicer
        assert jl is not None
        copy_ms = (time.monotonic() - t) * 1000
        page = list_page(jl, set(), "", 0, size, len(s.jobs))
        r[f"first_page_{size}_ms"] = (time.monotonic() - t) * 1000
        r[f"first_page_{size}_lock_ms"] = copy_ms
        assert len(page.jobs) == size
    t = time.monotonic()
    page = list_page(list(s.jobs.values()), {JobState.PENDING}, "", 0, 100, None)
    r["first_pending_page_100_counted_ms"] = (time.monotonic() - t) * 1000

    t = time.monotonic()
    work = s.digest_work()
    r["digest_take_ms"] = (time.monotonic() - t) * 1000
    t = time.monotonic()
    sums, _ = work.compute()
    s.dig.settle(sums)
    r["digest_full_s"] = time.monotonic() - t
    _build(s, 1000, False, "x", 30.0)
    t = time.monotonic()
    s.digest()
    r["digest_incremental_1000_changes_ms"] = (time.monotonic() - t) * 1000
    return r


def report(r: dict[str, Any]) -> str:
    return "\n".join([
        f"== scale: {r['jobs']} retained jobs (half finished with history, half pending); "
        f"built through apply in {r['build_s']:.0f}s",
        f"memory: RSS {r['rss_mib']:.0f} MiB; {r['bytes_per_finished_job']:.0f} B per finished job, "
        f"{r['bytes_per_pending_job']:.0f} B per pending job",
        f"snapshot: {r['snapshot_mib']:.0f} MiB written in {r['snapshot_write_s']:.1f}s by a forked child; "
        f"fork {r['fork_ms']:.1f} ms; longest stall seen by a 1 ms ticker {r['snapshot_stall_ms']:.1f} ms",
        f"first page of ListJobs: 100 jobs {r['first_page_100_ms']:.1f} ms, 1000 jobs "
        f"{r['first_page_1000_ms']:.1f} ms (of which {r['first_page_1000_lock_ms']:.1f} ms under the "
        f"lock); first 100 PENDING with a counted total (copy of the table) "
        f"{r['first_pending_page_100_counted_ms']:.1f} ms",
        f"digest: take {r['digest_take_ms']:.2f} ms (under the lock), full hash {r['digest_full_s']:.1f}s "
        f"(worker thread, once after a restore), 1000 changes {r['digest_incremental_1000_changes_ms']:.1f} ms",
    ])
