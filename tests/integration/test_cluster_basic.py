"""A real 3-node cluster: 200 jobs through a follower, capacity, replicas identical."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pytest

from raftsched.v1 import jobs_pb2
from tests.support.cluster import TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

CPU_SIZES = (250, 500, 1000)


def ledger_job(ledger: Path, i: int) -> jobs_pb2.JobSpec:
    """S and E lines around a short sleep, under a non-blocking per-job flock (next to the
    ledger): the kernel releases it only when every process of the attempt holding it is
    dead, so an attempt starting while another of its job is alive (even one killed
    without a trace) writes an O line instead (as dev/chaos.py)."""
    rec = '$RAFTSCHED_JOB_ID $RAFTSCHED_ATTEMPT $RAFTSCHED_FENCING_TOKEN $RAFTSCHED_NODE_ID'
    cpu = CPU_SIZES[i % len(CPU_SIZES)]
    sleep = 0.05 + (i % 7) * 0.03
    locks = ledger.parent / "locks"
    locks.mkdir(exist_ok=True)
    inner = (
        f'echo "S {rec} {cpu} $(date +%s.%N)" >> {ledger}; sleep {sleep}; '
        f'echo "E {rec} {cpu} $(date +%s.%N)" >> {ledger}'
    )
    script = (f"flock -n {locks}/$RAFTSCHED_JOB_ID -c '{inner}' "
              f'|| {{ echo "O {rec} {cpu} $(date +%s.%N)" >> {ledger}; exit 99; }}')
    return jobs_pb2.JobSpec(use_shell=True, shell=script, name=f"ledger-{i}",
                            resources=jobs_pb2.Resources(cpu_millis=cpu, memory_mib=64))


Record = tuple[str, str, int, int, str, int, float]  # kind, job, attempt, token, node, cpu, time


def read_ledger(ledger: Path) -> list[Record]:
    out = []
    for line in ledger.read_text().splitlines():
        kind, jid, attempt, token, node, cpu, t = line.split()
        out.append((kind, jid, int(attempt), int(token), node, int(cpu), float(t)))
    return out


def max_concurrent_cpu(records: list[Record]) -> dict[str, int]:
    events: dict[str, list[tuple[float, int, int]]] = collections.defaultdict(list)
    for kind, _jid, _a, _t, node, cpu, ts in records:
        # ends sort before starts at the same instant
        events[node].append((ts, 0 if kind == "E" else 1, cpu if kind == "S" else -cpu))
    peak = {}
    for node, evs in events.items():
        cur = best = 0
        for _ts, _order, delta in sorted(evs):
            cur += delta
            best = max(best, cur)
        peak[node] = best
    return peak


# An attempt lost to its node's lease: the lost report ("... lease expired; killed by the
# watchdog"), or the leader's NodeDown after heartbeat_ttl of silence, which comes only
# after the node's lease (shorter than the TTL) ran out and its watchdog killed its jobs.
LEASE_FENCED = ("lease expired; killed by the watchdog", " down: no heartbeat for ")
SLACK = 0.2  # the watchdog's own delay: the TTL - lease margin must cover it (config.py)


def check_ran_once(records: list[Record], done: dict[str, jobs_pb2.Job], ttl: float,
                   lease: float) -> int:
    """No job ran twice; returns the number of fenced completions.

    Every job ends as its final attempt (attempt, token, node), which started once. Under
    load a node can lapse: its attempts are lost to its lease and the job reruns as a new
    attempt with a new token. So any other start must be of an earlier attempt, started
    once, that the job's record shows lost to the lease, and that no later attempt ran
    beside (no O line: the flock was free when each attempt started). Such an attempt is
    SIGKILLed by the watchdog (no E line), or, if it had ended before its node fell silent
    and could not report it, it is a fenced completion (docs/failures.md, "Known limits":
    at-least-once, fenced; its result refused). One may end only before its node could
    have been declared down: its lease ran out at least TTL - lease before the NodeDown,
    and it had to be over by then. (A node leased while a stale NodeDown was on its way
    ran a job to its end 1 ms before being declared down: not a fenced completion.)"""
    assert not [r for r in records if r[0] == "O"], "two attempts of a job alive at once"
    twice = [jid for jid, j in done.items() if sum(h.state == jobs_pb2.SUCCEEDED for h in j.history) > 1]
    assert not twice, f"a result accepted twice: {twice}"
    for kind in "SE":
        runs = collections.Counter((r[1], r[2]) for r in records if r[0] == kind)
        assert max(runs.values()) == 1, f"an attempt {kind} twice: {runs.most_common(3)}"
        assert all((jid, j.attempt) in runs for jid, j in done.items()), f"a final attempt without {kind}"
    fenced = 0
    for kind, jid, attempt, token, node, _cpu, ts in records:
        j = done[jid]
        if attempt == j.attempt:
            assert (token, node) == (j.fencing_token, j.node_id), (kind, jid, attempt)
            continue
        lost = [a for a in j.attempts if (a.attempt, a.fencing_token, a.node_id) == (attempt, token, node)]
        assert attempt < j.attempt and token != j.fencing_token, (jid, attempt, token)
        assert len(lost) == 1 and lost[0].outcome == "LOST", (jid, attempt, list(j.attempts))
        assert any(w in lost[0].reason for w in LEASE_FENCED), (jid, attempt, lost[0].reason)
        if kind == "E":
            fenced += 1
            assert "down: no heartbeat" in lost[0].reason, (jid, attempt, lost[0].reason)
            assert ts <= lost[0].finished_at - (ttl - lease) + SLACK, (
                f"attempt {attempt} of {jid} ran to its end at {ts:.3f}, while its node {node} "
                f"could still hold a lease; declared down at {lost[0].finished_at:.3f}")
    return fenced


def lost_ends(records: list[Record], done: dict[str, jobs_pb2.Job]) -> list[Record]:
    """An E record for each lost attempt that has none, at the time its loss was
    committed: its node's capacity stayed held until then."""
    ended = {(r[1], r[2]) for r in records if r[0] == "E"}
    out = []
    for kind, jid, attempt, token, node, cpu, _ts in records:
        if kind == "S" and (jid, attempt) not in ended:
            rec = next(a for a in done[jid].attempts if a.attempt == attempt)
            out.append(("E", jid, attempt, token, node, cpu, rec.finished_at))
    return out


def test_200_jobs_through_a_follower(cluster3: TestCluster) -> None:
    c = cluster3
    follower = c.followers()[0]
    client = c.client(follower)
    ledger = c.root / "ledger-200.txt"
    ledger.touch()
    # 100 single submissions and one batch of 100, all sent to the follower
    ids = [client.submit(ledger_job(ledger, i)) for i in range(100)]
    ids += client.submit_batch([ledger_job(ledger, i) for i in range(100, 200)])
    assert len(set(ids)) == 200
    done = c.wait_terminal(ids, timeout=120, client=client)
    states = collections.Counter(jobs_pb2.JobState.Name(j.state) for j in done.values())
    assert states == {"SUCCEEDED": 200}, states
    nodes_used = collections.Counter(j.node_id for j in done.values())
    assert set(nodes_used) == {"n1", "n2", "n3"}, nodes_used

    records = read_ledger(ledger)
    fenced = check_ran_once(records, done, c.cfg.heartbeat_ttl, c.cfg.lease)
    tokens = [j.fencing_token for j in done.values()]
    assert len(set(tokens)) == 200, "fencing tokens must be unique per assignment"

    peak = max_concurrent_cpu(records + lost_ends(records, done))
    for node in c.cfg.nodes:
        assert peak[node.id] <= node.capacity.cpu_millis, (node.id, peak[node.id])
    print(f"jobs per node {dict(nodes_used)}; peak cpu per node {peak}; "
          f"attempts lost {sum(r[0] == 'S' for r in records) - 200}, fenced completions {fenced}")

    reps = c.replicas_identical()
    print("replicas:", [(r.node_id, r.applied_index, r.state_digest[:12]) for r in reps])


def test_jobs_get_environment_and_output(cluster3: TestCluster) -> None:
    client = cluster3.client()
    jid = client.submit(jobs_pb2.JobSpec(
        command=["sh", "-c", 'echo "$RAFTSCHED_JOB_ID/$RAFTSCHED_ATTEMPT/$GREETING"; echo err >&2; exit 7'],
        env={"GREETING": "hi"}))
    j = cluster3.wait_terminal([jid])[jid]
    assert j.state == jobs_pb2.FAILED
    assert j.has_exit_code and j.exit_code == 7
    assert j.stdout_tail.strip() == f"{jid}/1/hi"
    assert j.stderr_tail.strip() == "err"
    assert "exit code 7" in j.reason


def test_command_not_found_fails_with_reason(cluster3: TestCluster) -> None:
    client = cluster3.client()
    jid = client.submit(jobs_pb2.JobSpec(command=["/no/such/program-xyz"]))
    j = cluster3.wait_terminal([jid])[jid]
    assert j.state == jobs_pb2.FAILED
    assert "could not start" in j.reason and "/no/such/program-xyz" in j.reason


def test_timeout_kills_the_job(cluster3: TestCluster) -> None:
    client = cluster3.client()
    t0 = time.time()
    jid = client.submit(jobs_pb2.JobSpec(command=["sleep", "30"], timeout_seconds=0.5))
    j = cluster3.wait_terminal([jid], timeout=30)[jid]
    assert j.state == jobs_pb2.TIMED_OUT
    assert j.reason == "timed out after 0.5s"
    assert time.time() - t0 < 15


def test_cancel_pending_job(cluster3: TestCluster) -> None:
    client = cluster3.client(cluster3.followers()[0])
    # fill every node, then one more job must wait
    blockers = client.submit_batch([
        jobs_pb2.JobSpec(command=["sleep", "3"], resources=jobs_pb2.Resources(cpu_millis=2000))
        for _ in range(3)
    ])
    cluster3.wait_until(
        lambda: all(client.get(b).state == jobs_pb2.RUNNING for b in blockers), 20, "blockers running")
    waiting = client.submit(jobs_pb2.JobSpec(command=["true"], resources=jobs_pb2.Resources(cpu_millis=2000)))
    time.sleep(0.3)
    assert client.get(waiting).state == jobs_pb2.PENDING
    job = client.cancel(waiting)
    assert job.state == jobs_pb2.CANCELLED
    cluster3.wait_terminal(blockers, timeout=30)
    time.sleep(0.3)
    assert client.get(waiting).state == jobs_pb2.CANCELLED


def test_list_filters_and_paging(cluster3: TestCluster) -> None:
    client = cluster3.client()
    ids = client.submit_batch([jobs_pb2.JobSpec(command=["true"]) for _ in range(25)])
    cluster3.wait_terminal(ids)
    page1 = client.list_page(states=[jobs_pb2.SUCCEEDED], page_size=10)
    assert len(page1.jobs) == 10 and page1.next_page_token
    assert all(j.state == jobs_pb2.SUCCEEDED for j in page1.jobs)
    seen = [j.id for j in client.list_all(states=[jobs_pb2.SUCCEEDED])]
    assert len(seen) == len(set(seen)) == page1.total
    assert set(ids) <= set(seen)
    seqs = [j.seq for j in client.list_all()]
    assert seqs == sorted(seqs)
    on_n1 = list(client.list_all(node_id="n1"))
    assert on_n1 and all(j.node_id == "n1" for j in on_n1)
