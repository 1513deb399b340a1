"""Real cluster: one-second schedules across a leader SIGKILL.

Three schedules fire every second (skip, run_once, run_all misfire policies).
The leader is killed just before an instant, so that instant is due while no
leader exists; the killed node is restarted later. From the jobs' own records:
one job per scheduled instant, job id derived from the instant, no instant
fired twice, and missed instants handled as each policy says.
"""

from __future__ import annotations

import collections
import itertools
import math
import signal
import time

import grpc
import pytest

from raftsched.client.workflows_client import WorkflowsClient
from raftsched.v1 import jobs_pb2
from raftsched.v1 import workflows_pb2 as wpb
from tests.support.cluster import TERMINAL, TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

THRESHOLD = 0.15  # seconds late after which an instant counts as missed
POLICIES = {"sk": wpb.MISFIRE_SKIP, "once": wpb.MISFIRE_RUN_ONCE, "all": wpb.MISFIRE_RUN_ALL}


def wclient(c: TestCluster, *ids: str) -> WorkflowsClient:
    ids = ids or tuple(n.id for n in c.cfg.nodes)
    return WorkflowsClient([c.addr(i) for i in ids], token=c.token, tls=c.tls)


def runs_of(c: TestCluster, client_nodes: list[str]) -> dict[str, list[jobs_pb2.Job]]:
    out: dict[str, list[jobs_pb2.Job]] = collections.defaultdict(list)
    for j in c.client(*client_nodes).list_all():
        if j.schedule_id:
            out[j.schedule_id].append(j)
    return out


# Elections slower than the default 0.3-0.6 s: the instant after the kill must come while
# no leader exists. With the default a follower may stand at kill + 0.225 s (its last
# append_entries up to 0.075 s before the kill) and fire the instant 0.125 s late, under
# THRESHOLD: the scenario then did not happen (one clean-clone CI run hit that).
ELECTIONS = "election_timeout_min = 1.2\nelection_timeout_max = 1.6"


def test_one_second_schedules_survive_leader_sigkill(cluster_factory) -> None:
    c: TestCluster = cluster_factory(n_nodes=3, cluster_extra=ELECTIONS).start()
    c.wait_ready()
    wc = wclient(c)
    spec = jobs_pb2.JobSpec(command=["true"], resources=jobs_pb2.Resources(cpu_millis=10, memory_mib=8))
    for sid, policy in POLICIES.items():
        wc.add_schedule(wpb.Schedule(id=sid, cron="* * * * * *", spec=spec, misfire=policy,
                                     misfire_threshold_seconds=THRESHOLD,
                                     misfire_deadline_seconds=60))
    c.wait_until(lambda: all(wc.schedule(s).runs >= 3 for s in POLICIES), 30, "first runs")

    leader = c.leader()
    survivors = [n.id for n in c.cfg.nodes if n.id != leader]
    now = time.time()
    time.sleep((math.floor(now) + 0.9 - now) % 1.0)  # 0.1 s before an instant
    killed_at = time.time()
    c.kill(leader, signal.SIGKILL)
    missed_instant = float(math.ceil(killed_at))
    sc = c.client(*survivors)
    c.wait_until(lambda: sc.wait_for_leader(30).leader_id not in ("", leader), 30, "a new leader")
    wc2 = wclient(c, *survivors)
    c.wait_until(lambda: all(wc2.schedule(s).last_fired >= missed_instant + 3 for s in POLICIES),
                 30, "fires under the new leader")
    c.start_node(leader)
    c.wait_ready()
    time.sleep(2.0)
    for sid in POLICIES:
        for attempt in range(50):
            try:
                wc2.call("PauseSchedule", wpb.ScheduleRef(id=sid))
                break
            except grpc.RpcError:
                if attempt == 49:
                    raise
                time.sleep(0.2)
    c.wait_until(lambda: all(j.state in TERMINAL for js in runs_of(c, survivors).values() for j in js),
                 60, "all runs finished")
    c.replicas_identical()

    runs = runs_of(c, survivors)
    scheds = {s: wc2.schedule(s) for s in POLICIES}
    for sid, jobs in runs.items():
        instants = [j.scheduled_at for j in jobs]
        counts = collections.Counter(instants)
        assert max(counts.values()) == 1, f"{sid}: an instant fired twice: {counts.most_common(3)}"
        for j in jobs:
            assert j.scheduled_at == int(j.scheduled_at), "instants of a per-second cron are whole seconds"
            assert j.id == f"{sid}-{int(j.scheduled_at)}", "job id derives from the instant"
            assert j.scheduled_at > scheds[sid].created_at
            assert j.submitted_at >= j.scheduled_at, "never fired early"
        assert scheds[sid].runs == len(jobs)

    def late(j: jobs_pb2.Job) -> bool:
        return j.submitted_at - j.scheduled_at > THRESHOLD

    # run_all: every instant from the first run to the last has exactly one job,
    # including the instant that was due while there was no leader.
    all_inst = sorted(j.scheduled_at for j in runs["all"])
    assert all_inst == [all_inst[0] + i for i in range(len(all_inst))], "run_all left a hole"
    assert missed_instant in all_inst
    by_inst = {j.scheduled_at: j for j in runs["all"]}
    assert late(by_inst[missed_instant]), "the instant due during the failover was caught up late"

    # skip: nothing ran late; the instant due without a leader did not run
    assert not [j.id for j in runs["sk"] if late(j)]
    sk_inst = {j.scheduled_at for j in runs["sk"]}
    assert missed_instant not in sk_inst

    # run_once: each hole (instants not run) is closed by one late catch-up run, and
    # the outage around the missed instant was caught up exactly once, late
    once = sorted(runs["once"], key=lambda j: j.scheduled_at)
    for a, b in itertools.pairwise(once):
        if b.scheduled_at - a.scheduled_at > 1:
            assert late(b), f"run_once: {b.id} after a hole should be the catch-up run"
    caught = [j for j in once if late(j) and missed_instant <= j.scheduled_at <= missed_instant + 3]
    assert caught, "run_once did not run the instant missed during the failover"
