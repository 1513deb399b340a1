"""Failures: a frozen worker's jobs die before their replacements start and its late
results are refused; a whole-cluster restart loses nothing; a SIGKILLed node rejoins."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import pytest

from raftsched.v1 import jobs_pb2
from tests.support.cluster import TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

REC = "$RAFTSCHED_JOB_ID $RAFTSCHED_ATTEMPT $RAFTSCHED_FENCING_TOKEN $RAFTSCHED_NODE_ID"


def running(pid: int) -> bool:
    """True if the process exists and is not a zombie (a frozen parent cannot reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def ledger_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def test_frozen_worker_is_fenced_in_time_and_its_late_results_refused(cluster_factory) -> None:
    c: TestCluster = cluster_factory()
    c.start()
    c.wait_ready()
    client = c.client()
    ledger, go, locks = c.root / "ledger.txt", c.root / "go", c.root / "locks"
    ledger.touch()
    locks.mkdir()
    # waiters finish as soon as `go` exists; sleepers run for a long time
    waiter = (f'echo "S {REC} $$ $(date +%s.%N)" >> {ledger}; '
              f"while [ ! -f {go} ]; do sleep 0.05; done; "
              f'echo "E {REC} $$ $(date +%s.%N)" >> {ledger}')
    sleeper = (f"flock -n {locks}/$RAFTSCHED_JOB_ID -c '"
               f'echo "S {REC} $$ $(date +%s.%N)" >> {ledger}; sleep 25; '
               f'echo "E {REC} $$ $(date +%s.%N)" >> {ledger}\' '
               f'|| echo "OVERLAP {REC} $$ $(date +%s.%N)" >> {ledger}')
    res = jobs_pb2.Resources(cpu_millis=100, memory_mib=8)
    waiters = client.submit_batch([jobs_pb2.JobSpec(use_shell=True, shell=waiter, resources=res)] * 6)
    sleepers = client.submit_batch([jobs_pb2.JobSpec(use_shell=True, shell=sleeper, resources=res)] * 3)
    c.wait_until(lambda: all(client.get(j).state == jobs_pb2.RUNNING for j in waiters + sleepers),
                 30, "all jobs running")
    leader = c.leader()
    jobs = {j: client.get(j) for j in waiters + sleepers}
    frozen = next(n for n in ("n1", "n2", "n3")
                  if n != leader and any(x.node_id == n for j, x in jobs.items() if j in sleepers)
                  and any(x.node_id == n for j, x in jobs.items() if j in waiters))
    on_frozen = {j: x for j, x in jobs.items() if x.node_id == frozen}
    # the pid of each attempt on the frozen node, from its S line (the job's own shell);
    # RUNNING is reported when the process is spawned, the S line comes a little later
    def started_pids() -> dict[str, int]:
        return {ln[1]: int(ln[5]) for ln in ledger_lines(ledger) if ln[0] == "S" and ln[4] == frozen}

    c.wait_until(lambda: set(on_frozen) <= set(started_pids()), 10, "S lines of the frozen node's jobs")
    pids = started_pids()

    c.kill(frozen, signal.SIGSTOP)
    go.touch()  # the frozen node's waiters now finish, but it cannot report them
    live = c.client(*[n for n in ("n1", "n2", "n3") if n != frozen])
    for j, old in on_frozen.items():
        c.wait_until(lambda j=j, old=old: live.get(j).attempt > old.attempt
                     and live.get(j).state in (jobs_pb2.RUNNING, jobs_pb2.SUCCEEDED), 30,
                     f"replacement of {j}")
        # the frozen node's attempt is dead by the time its replacement runs
        if j in sleepers:
            assert not running(pids[j]), f"attempt {old.attempt} of {j} still alive (pid {pids[j]})"
    c.kill(frozen, signal.SIGCONT)
    c.wait_terminal(waiters, timeout=60)
    time.sleep(3.0)  # let the thawed node deliver its late reports

    lines = ledger_lines(ledger)
    assert not [ln for ln in lines if ln[0] == "OVERLAP"], "two attempts of one job alive at once"
    for j, old in on_frozen.items():
        starts = sorted((float(ln[6]), int(ln[2])) for ln in lines if ln[0] == "S" and ln[1] == j)
        assert [a for _, a in starts][:2] == [old.attempt, old.attempt + 1], starts
        now = live.get(j)
        assert now.fencing_token > old.fencing_token
        # the stale attempt never reaches the state machine as a result
        assert all(not (h.attempt == old.attempt and h.state in (jobs_pb2.SUCCEEDED, jobs_pb2.FAILED))
                   for h in now.history), now.history
    # a waiter on the frozen node finished its first attempt while frozen: its result was late
    late = [j for j in on_frozen if j in waiters]
    finished_first = {ln[1] for ln in lines if ln[0] == "E" and ln[4] == frozen}
    assert set(late) <= finished_first
    for j in late:
        assert live.get(j).state == jobs_pb2.SUCCEEDED and live.get(j).node_id != frozen
    assert "report refused" in c.logs() and "stale report" in c.logs()
    c.replicas_identical()


def test_whole_cluster_restart_loses_no_acknowledged_job(cluster_factory) -> None:
    c: TestCluster = cluster_factory(cluster_extra="log_compaction_entries = 8")
    c.start()
    c.wait_ready()
    client = c.client()
    done = client.submit_batch([jobs_pb2.JobSpec(command=["sh", "-c", f"echo out-{i}; exit {i % 3}"])
                                for i in range(30)])
    c.wait_terminal(done)
    running = client.submit_batch([jobs_pb2.JobSpec(command=["sleep", "2"])] * 3)
    blocked = [client.submit(jobs_pb2.JobSpec(command=["true"], resources=jobs_pb2.Resources(cpu_millis=2000)))
               for _ in range(2)]
    cancelled = client.submit(jobs_pb2.JobSpec(command=["true"], resources=jobs_pb2.Resources(cpu_millis=2000)))
    with contextlib.suppress(Exception):  # it may have started already: then it is just another job
        client.cancel(cancelled)
    acked = done + running + blocked + [cancelled]
    before = {j.id: j for j in client.list_all()}
    assert set(acked) <= set(before)

    for n in ("n1", "n2", "n3"):
        c.kill(n, signal.SIGKILL)
    for n in ("n1", "n2", "n3"):
        c.start_node(n)
    c.wait_ready(60)
    # reads are served by each node's replica: wait until every replica has caught up,
    # then every node must have every acknowledged job
    c.replicas_identical(30)
    for n in ("n1", "n2", "n3"):
        on_n = {j.id for j in c.client(n).list_all()}
        assert set(acked) <= on_n, f"acknowledged jobs missing on {n}: {set(acked) - on_n}"
    client = c.client()
    after = {j.id: j for j in client.list_all()}
    for j in done:
        a, b = before[j], after[j]
        assert (a.state, a.exit_code, a.fencing_token, a.stdout_tail, a.node_id) == (
            b.state, b.exit_code, b.fencing_token, b.stdout_tail, b.node_id)
    final = c.wait_terminal(acked, timeout=90)
    for j in running + blocked:
        assert final[j].state == jobs_pb2.SUCCEEDED, (j, final[j].reason)
    assert any((c.root / "data" / n / "raft.snapshot").exists() for n in ("n1", "n2", "n3")), \
        "expected log compaction to have written a snapshot"
    c.replicas_identical()


def test_killed_follower_recovers_from_its_data_dir_and_rejoins(cluster_factory) -> None:
    c: TestCluster = cluster_factory(cluster_extra="log_compaction_entries = 8")
    c.start()
    c.wait_ready()
    victim = c.followers()[0]
    client = c.client()
    first = client.submit_batch([jobs_pb2.JobSpec(command=["true"])] * 20)
    c.wait_terminal(first)
    c.kill(victim, signal.SIGKILL)
    live = c.client(*[n for n in ("n1", "n2", "n3") if n != victim])
    more = live.submit_batch([jobs_pb2.JobSpec(command=["true"])] * 40)
    c.wait_terminal(more, client=live)
    c.start_node(victim)
    c.wait_ready(60)
    reps = c.replicas_identical(30)
    assert {r.node_id for r in reps} == {"n1", "n2", "n3"}
    mine = c.client(victim)
    assert all(mine.get(j).state == jobs_pb2.SUCCEEDED for j in first + more)
