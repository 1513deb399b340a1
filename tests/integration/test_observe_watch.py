"""Live watch on a real cluster: every transition seen in order, resume on another node."""

from __future__ import annotations

import collections
import threading
import time

import grpc
import pytest

from raftsched.client.observe_client import JobWatcher, follow_output, get_output
from raftsched.v1 import events_pb2, events_pb2_grpc, jobs_pb2
from tests.support.cluster import TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

FULL = ["PENDING", "ASSIGNED", "RUNNING", "SUCCEEDED"]


def short_job(i: int, sleep: float = 0.05) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(use_shell=True, shell=f"sleep {sleep}; echo job-{i}", name=f"w-{i}",
                            resources=jobs_pb2.Resources(cpu_millis=100, memory_mib=16))


class Collector:
    """Runs a JobWatcher in a thread, keeping (position, job id, state) of every event."""

    def __init__(self, watcher: JobWatcher, ids: set[str] | None = None) -> None:
        self.w = watcher
        self.ids = ids
        self.events: list[tuple[tuple[int, int], str, str]] = []
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        assert self.ready.wait(10), "watch did not sync"

    def _run(self) -> None:
        try:
            for resp in self.w.responses():
                if resp.synced:
                    self.ready.set()
                with self.lock:
                    for ev in resp.events:
                        if self.ids is None or ev.job.id in self.ids:
                            self.events.append(((ev.position.index, ev.position.ordinal), ev.job.id,
                                                jobs_pb2.JobState.Name(ev.job.state)))
        except BaseException as e:  # surfaced by the test
            self.error = e
            self.ready.set()

    def snapshot(self) -> list[tuple[tuple[int, int], str, str]]:
        with self.lock:
            return list(self.events)

    def wait_for(self, pred, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error:
                raise self.error
            if pred(self.snapshot()):
                return
            time.sleep(0.05)
        raise TimeoutError(f"watch condition not met; have {len(self.snapshot())} events")

    def stop(self) -> None:
        self.w.cancel()
        self.t.join(10)


def per_job(events) -> dict[str, list[str]]:
    out: dict[str, list[str]] = collections.defaultdict(list)
    for _pos, jid, state in events:
        out[jid].append(state)
    return out


def all_succeeded(ids):
    def pred(evs):
        done = {jid for _p, jid, s in evs if s == "SUCCEEDED"}
        return set(ids) <= done
    return pred


def test_follower_watcher_sees_every_transition_in_order(cluster3: TestCluster) -> None:
    c = cluster3
    follower = c.followers()[0]
    w = Collector(JobWatcher([c.addr(follower)], token=c.token, tls=c.tls))
    try:
        client = c.client(follower)
        ids = client.submit_batch([short_job(i) for i in range(50)])
        ids += [client.submit(short_job(i)) for i in range(50, 100)]
        c.wait_terminal(ids, timeout=90, client=client)
        w.wait_for(all_succeeded(ids))
        evs = [e for e in w.snapshot() if e[1] in set(ids)]
        assert w.w.connected_to == c.addr(follower)
    finally:
        w.stop()
    positions = [p for p, _j, _s in w.snapshot()]
    assert positions == sorted(positions) and len(set(positions)) == len(positions), \
        "positions must strictly increase"
    seqs = per_job(evs)
    assert set(seqs) == set(ids)
    bad = {j: s for j, s in seqs.items() if s != FULL}
    assert not bad, f"{len(bad)} jobs with a different sequence, e.g. {list(bad.items())[:3]}"


def test_resume_on_another_node_misses_nothing(cluster3: TestCluster) -> None:
    c = cluster3
    f1, f2 = c.followers()[:2]
    leader = c.leader()
    # A reference watcher that stays connected to the leader all along.
    ref = Collector(JobWatcher([c.addr(leader)], token=c.token, tls=c.tls))
    first = Collector(JobWatcher([c.addr(f1)], token=c.token, tls=c.tls))
    client = c.client(f2)
    try:
        ids = client.submit_batch([short_job(i, sleep=0.05 + (i % 10) * 0.05) for i in range(100)])
        idset = set(ids)
        # disconnect mid-way: after about a third of the transitions
        first.wait_for(lambda evs: sum(1 for e in evs if e[1] in idset) >= 130)
        first.stop()
        before = [e for e in first.snapshot()]
        last = first.w.position
        assert last is not None
        time.sleep(0.5)  # changes keep being applied while nobody listens
        second = Collector(JobWatcher([c.addr(f2)], token=c.token, tls=c.tls, resume_from=last))
        try:
            c.wait_terminal(ids, timeout=90, client=client)
            second.wait_for(lambda evs: all_succeeded(ids)(before + evs))
            ref.wait_for(all_succeeded(ids))
            after = second.snapshot()
        finally:
            second.stop()
    finally:
        ref.stop()
        first.stop()
    assert before and after
    assert max(p for p, _j, _s in before) <= last < min(p for p, _j, _s in after)
    combined = [e for e in before + after if e[1] in idset]
    reference = [e for e in ref.snapshot() if e[1] in idset]
    assert combined == reference, "resumed stream differs from an uninterrupted one"
    seqs = per_job(combined)
    assert set(seqs) == idset and all(s == FULL for s in seqs.values())


def test_resume_positions_checked(cluster3: TestCluster) -> None:
    c = cluster3
    with c.channel(c.leader()) as ch:
        stub = events_pb2_grpc.EventsStub(ch)
        # a fresh cluster's nodes hold every change since the start: replay from the start works
        req = events_pb2.WatchJobsRequest(has_resume_from=True,
                                          resume_from=events_pb2.Position(index=0, ordinal=0xFFFFFFFF))
        it = iter(stub.WatchJobs(req, timeout=5))
        first = next(it)
        assert first.synced
        replay = next(it)
        assert replay.events and replay.events[0].job.state == jobs_pb2.PENDING
        assert (replay.events[0].position.index, replay.events[0].position.ordinal) > (0, 0xFFFFFFFF)
        bad = events_pb2.WatchJobsRequest(states=[99])
        with pytest.raises(grpc.RpcError) as ei:
            next(iter(stub.WatchJobs(bad, timeout=5)))
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "states" in ei.value.details()


def test_initial_listing_then_live(cluster3: TestCluster) -> None:
    c = cluster3
    client = c.client()
    done_id = client.submit(short_job(0, sleep=0))
    c.wait_terminal([done_id], client=client)
    w = JobWatcher([c.addr(c.followers()[0])], job_ids=[done_id], send_initial=True, token=c.token, tls=c.tls)
    it = w.responses()
    first = next(it)
    w.cancel()
    assert [e.job.id for e in first.events] == [done_id]
    assert first.events[0].initial and first.events[0].job.state == jobs_pb2.SUCCEEDED
    assert len(first.events[0].job.history) == 4
    assert [jobs_pb2.JobState.Name(t.state) for t in first.events[0].job.history] == FULL


def test_job_output_from_any_node_and_follow(cluster3: TestCluster) -> None:
    c = cluster3
    client = c.client()
    spec = jobs_pb2.JobSpec(use_shell=True, name="out",
                            shell="for i in 1 2 3 4 5; do echo line-$i; echo err-$i >&2; sleep 0.2; done",
                            resources=jobs_pb2.Resources(cpu_millis=100, memory_mib=16))
    jid = client.submit(spec)
    c.wait_until(lambda: client.get(jid).state == jobs_pb2.RUNNING, 30, "job running")
    ran_on = client.get(jid).node_id
    other = next(n.id for n in c.cfg.nodes if n.id != ran_on)
    chunks = list(follow_output([c.addr(other)], jid, token=c.token, tls=c.tls))
    assert chunks[-1].done
    assert len(chunks) >= 2, "follow should stream while the attempt runs"
    out = b"".join(ch.stdout for ch in chunks).decode()
    err = b"".join(ch.stderr for ch in chunks).decode()
    assert out == "".join(f"line-{i}\n" for i in range(1, 6))
    assert err == "".join(f"err-{i}\n" for i in range(1, 6))
    resp = get_output([c.addr(other)], jid, token=c.token, tls=c.tls)
    assert resp.source == events_pb2.NODE_FILE and resp.node_id == ran_on and resp.attempt == 1
    assert resp.stdout.decode() == out


def test_output_of_a_silent_job_is_the_nodes_not_a_fallback(cluster3: TestCluster) -> None:
    """A job that prints nothing leaves no files (they are created at the first byte);
    its node still answers for it, from any node, rather than "no longer keeps"."""
    c = cluster3
    client = c.client()
    silent = jobs_pb2.JobSpec(command=["sleep", "0.5"], resources=jobs_pb2.Resources(cpu_millis=100, memory_mib=16))
    jid = client.submit(silent)
    c.wait_until(lambda: client.get(jid).state == jobs_pb2.RUNNING, 30, "job running")
    ran_on = client.get(jid).node_id
    other = next(n.id for n in c.cfg.nodes if n.id != ran_on)
    running = get_output([c.addr(other)], jid, token=c.token, tls=c.tls)
    assert running.source == events_pb2.NODE_FILE and running.running and not running.note
    chunks = list(follow_output([c.addr(other)], jid, token=c.token, tls=c.tls))
    assert chunks[-1].done and chunks[-1].source == events_pb2.NODE_FILE
    assert b"".join(ch.stdout + ch.stderr for ch in chunks) == b""
    c.wait_terminal([jid], timeout=30, client=client)
    resp = get_output([c.addr(other)], jid, token=c.token, tls=c.tls)
    assert resp.source == events_pb2.NODE_FILE and resp.node_id == ran_on and not resp.note
    assert (resp.stdout, resp.stderr, resp.running) == (b"", b"", False)
