"""WatchCluster on a follower: leader change and node down/up when the leader is killed and restarted;
job output falls back to the replicated tail while the node that ran it is down."""

from __future__ import annotations

import threading
import time

import pytest

from raftsched.client.observe_client import ClusterWatcher, JobWatcher, follow_output, get_output
from raftsched.v1 import events_pb2, jobs_pb2

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

KIND = events_pb2.ClusterEventKind.Name


def test_leader_change_node_down_and_up(cluster_factory) -> None:
    c = cluster_factory(n_nodes=3).start()
    c.wait_ready()
    old = c.leader()
    watcher_node = c.followers()[0]
    events: list[events_pb2.ClusterEvent] = []
    watcher = ClusterWatcher([c.addr(watcher_node)], token=c.token, tls=c.tls, send_initial=True)

    def run() -> None:
        try:
            for ev in watcher.events():
                events.append(ev)
        except Exception:
            pass

    t = threading.Thread(target=run, daemon=True)
    t.start()

    def seen(pred, what: str, timeout: float = 30) -> events_pb2.ClusterEvent:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in list(events):
                if pred(ev):
                    return ev
            time.sleep(0.05)
        raise AssertionError(f"no {what} among {[(KIND(e.kind), e.node_id, e.initial) for e in events]}")

    seen(lambda e: e.initial and e.kind == events_pb2.LEADER_CHANGED and e.node_id == old, "initial leader")
    assert {e.node_id for e in events if e.initial and e.kind == events_pb2.NODE_UP} == {"n1", "n2", "n3"}
    # one job per node (1500m of 2000m each), to read output after its node dies
    client = c.client(watcher_node)
    spec = jobs_pb2.JobSpec(use_shell=True, shell="echo from-$RAFTSCHED_NODE_ID; echo e >&2",
                            resources=jobs_pb2.Resources(cpu_millis=1500, memory_mib=16))
    ids = client.submit_batch([spec] * 3)
    done = c.wait_terminal(ids, client=client)
    on_old = next(j for j in done.values() if j.node_id == old)
    before = get_output([c.addr(watcher_node)], on_old.id, token=c.token, tls=c.tls)
    assert before.source == events_pb2.NODE_FILE and before.stdout == f"from-{old}\n".encode()

    # a job watcher connected to the leader, with the follower as its next address
    jw = JobWatcher([c.addr(old), c.addr(watcher_node)], token=c.token, tls=c.tls)
    seen_jobs: list[tuple[tuple[int, int], str, int]] = []

    def run_jobs() -> None:
        try:
            for ev in jw.events():
                seen_jobs.append(((ev.position.index, ev.position.ordinal), ev.job.id, ev.job.state))
        except Exception:
            pass

    tj = threading.Thread(target=run_jobs, daemon=True)
    tj.start()
    time.sleep(0.5)
    assert jw.connected_to == c.addr(old)
    small = jobs_pb2.JobSpec(command=["true"], resources=jobs_pb2.Resources(cpu_millis=100, memory_mib=16))
    first_ids = client.submit_batch([small] * 5)
    c.wait_terminal(first_ids, client=client)

    c._expect_dead = True
    c.kill(old)
    later_ids = client.submit_batch([small] * 5)
    c.wait_terminal(later_ids, client=client, timeout=60)
    deadline = time.monotonic() + 30
    want = set(first_ids + later_ids)
    while time.monotonic() < deadline:
        if want <= {j for _p, j, s in seen_jobs if s == jobs_pb2.SUCCEEDED}:
            break
        time.sleep(0.1)
    jw.cancel()
    assert jw.connected_to == c.addr(watcher_node), "the watcher moved to the next node"
    states: dict[str, list[int]] = {}
    for _p, j, s in seen_jobs:
        states.setdefault(j, []).append(s)
    # Jobs placed on the dead node before it was declared down went back to PENDING and
    # ran again elsewhere: the watcher must have seen exactly the job's replicated history.
    history = {j: [t.state for t in client.get(j).history] for j in want}
    assert {j: states.get(j) for j in want} == history
    assert all(h[-1] == jobs_pb2.SUCCEEDED for h in history.values())
    positions = [p for p, _j, _s in seen_jobs]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    new = seen(lambda e: not e.initial and e.kind == events_pb2.LEADER_CHANGED and e.node_id != old,
               "leader change")
    assert new.term > 0 and new.observed_by == watcher_node
    down = seen(lambda e: e.kind == events_pb2.NODE_DOWN and e.node_id == old and not e.initial, "node down")
    assert down.raft_index > 0 and "no heartbeat" in down.reason
    # the node that ran the attempt is gone: the cluster's replicated tail answers
    after = get_output([c.addr(watcher_node)], on_old.id, token=c.token, tls=c.tls)
    assert after.source == events_pb2.REPLICATED_TAIL and after.truncated
    assert after.stdout == f"from-{old}\n".encode() and after.stderr == b"e\n"
    assert old in after.note
    chunks = list(follow_output([c.addr(watcher_node)], on_old.id, token=c.token, tls=c.tls))
    assert len(chunks) == 1 and chunks[0].done and chunks[0].source == events_pb2.REPLICATED_TAIL
    assert chunks[0].stdout == f"from-{old}\n".encode()
    c.start_node(old)
    up = seen(lambda e: e.kind == events_pb2.NODE_UP and e.node_id == old and not e.initial, "node up")
    assert up.raft_index > down.raft_index
    order = [e for e in events if not e.initial]
    assert order.index(down) < order.index(up)
    watcher.cancel()
    t.join(5)
    assert not t.is_alive()
