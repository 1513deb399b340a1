"""`raftsched audit` on real node files: a single-node SafeSyncObj with the real job
state machine writes a snapshot and a journal; the audit replays them and checks the
invariants. An apply bug that lets a second Assign through (the test injects one) is
reported with the log index of the entry that broke the rule."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from pysyncobj import SyncObjConf

from raftsched.core import apply as applymod
from raftsched.core import codec
from raftsched.core.commands import (
    Assign,
    AssignItem,
    FinishedItem,
    GcJobs,
    JobsFinished,
    JobsStarted,
    NodeUp,
    StartedItem,
    SubmitJobs,
)
from raftsched.core.model import JobSpec, JobState, Node, Resources
from raftsched.replica.audit import audit_data_dir
from raftsched.replica.raft_node import JobStateMachine
from raftsched.replica.raftsafe import SafeSyncObj
from tests.unit.test_crash_consistency import NoNet

pytestmark = pytest.mark.timeout(60)

DIGESTS: list[str] = []  # the live state machine's digest at the end of each run_node


def run_node(d: Path, cmds: list[object]) -> list[object]:
    """Commit `cmds` (one entry each) on a single-node cluster writing to `d`."""
    sm = JobStateMachine()
    conf = SyncObjConf(autoTick=False, journalFile=str(d / "raft.journal"),
                       fullDumpFile=str(d / "raft.snapshot"), useFork=False,
                       logCompactionMinEntries=6, logCompactionMinTime=10_000,
                       raftMinTimeout=0.004, raftMaxTimeout=0.008, appendEntriesPeriod=0.001,
                       connectionTimeout=1.0)
    obj = SafeSyncObj("127.0.0.1:1", [], conf, consumers=[sm], transportClass=NoNet, fsync="always")
    results: list[object] = []
    try:
        deadline = time.monotonic() + 5
        while not obj._isLeader() and time.monotonic() < deadline:
            obj.doTick(0)
            time.sleep(0.001)
        for cmd in cmds:
            done: list[object] = []
            sm.apply_entry(codec.encode_entry([cmd]), callback=lambda r, _e, done=done: done.append(r))
            while not done and time.monotonic() < deadline + 10:
                obj.doTick(0)
            results.append(done[0][0] if done and done[0] else None)
        DIGESTS.append(sm.state.digest())
    finally:
        obj._doDestroy()
    return results


def workload() -> list[object]:
    spec = JobSpec(command=("true",), resources=Resources(500, 64))
    cmds: list[object] = [NodeUp(f"u{n}", 1.0, Node(n, "g", "r", Resources(1000, 1000))) for n in ("n1", "n2")]
    for i in range(6):
        jid = f"j{i}"
        cmds += [SubmitJobs(f"s{i}", 2.0 + i, ((jid, spec),)),
                 Assign(f"a{i}", 2.1 + i, (AssignItem(jid, "n1" if i % 2 else "n2", 0),)),
                 JobsStarted(f"t{i}", 2.2 + i, (StartedItem(jid, 1, i + 1),)),
                 JobsFinished(f"f{i}", 2.3 + i, (FinishedItem(jid, 1, i + 1, 0),))]
    return cmds


def test_audit_passes_on_a_correct_log_with_a_snapshot(tmp_path: Path) -> None:
    results = run_node(tmp_path, [*workload(), GcJobs("gc", 1e12, 5.0)])
    assert all(r is not None and r.ok for r in results), results
    rep = audit_data_dir(tmp_path)
    assert rep.snapshot_index > 0 and rep.entries > 0, rep.summary()
    assert rep.ok, rep.summary()
    assert rep.jobs == 3  # j0..j2 finished before the cutoff and were collected
    assert rep.digest == DIGESTS[-1]  # the replay rebuilt the node's state exactly


def _buggy_assign(state, cmd):  # an apply bug: no compare-and-swap at all
    out = []
    for item in cmd.items:
        job = state.jobs[item.job_id]
        state.put(job, replace(job, state=JobState.ASSIGNED, node_id=item.node_id, attempt=job.attempt + 1,
                               fencing_token=job.fencing_token + 1), cmd.ts)
        out.append(job.fencing_token + 1)
    return applymod.ok(tuple(out))


def test_audit_names_the_entry_of_an_injected_double_assignment(tmp_path: Path, monkeypatch) -> None:
    spec = JobSpec(command=("sleep", "9"), resources=Resources(100, 16))
    cmds = [NodeUp("u1", 1.0, Node("n1", "g", "r", Resources(1000, 1000))),
            NodeUp("u2", 1.0, Node("n2", "g", "r", Resources(1000, 1000))),
            SubmitJobs("s", 2.0, (("j", spec),)),
            Assign("a1", 3.0, (AssignItem("j", "n1", 0),)),
            Assign("a2", 4.0, (AssignItem("j", "n2", 1),))]  # refused by the real apply
    results = run_node(tmp_path, cmds)
    assert not isinstance(results[-1].value[0], int)  # the live node refused it
    assert audit_data_dir(tmp_path).ok
    monkeypatch.setitem(applymod.HANDLERS, Assign, _buggy_assign)
    rep = audit_data_dir(tmp_path)
    assert not rep.ok
    assert "assigned again" in rep.violation and "job j" in rep.violation, rep.violation
    last = rep.violation_index
    assert last == max(i for i in range(1, 100) if i <= last)  # an index, not a count
    out = subprocess.run([sys.executable, "-m", "raftsched", "audit", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr  # the real apply: no violation
    assert "every invariant holds" in out.stdout
