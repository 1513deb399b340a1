"""Placement on a real cluster (issue 18): sequential jobs spread over every shared node,
a dedicated pool node takes only its pool's jobs, a retry moves to another node, and
`explain` / `plan` name the check that holds a job (capacity, pool, sequence key,
dependency). One 4-node cluster: n1-n3 shared, n4 dedicated to pool `heavy`."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from raftsched.client.workflows_client import WorkflowsClient
from raftsched.v1 import jobs_pb2
from raftsched.v1 import workflows_pb2 as wpb
from tests.support.cluster import TERMINAL, TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(150)]

SHARED = {"n1", "n2", "n3"}


@pytest.fixture(scope="module")
def pools() -> Iterator[TestCluster]:
    c = TestCluster(n_nodes=4, labels=[{"pool": "default"}] * 3 + [{"pool": "heavy"}],
                    node_extra=["", "", "", "dedicated = true"])
    try:
        c.start()
        c.wait_ready()
        yield c
    finally:
        c.close()


def cli(c: TestCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "raftsched", "--config", str(c.config_path), *args],
                          capture_output=True, text=True, timeout=30)


def wait_done(client, jid: str, timeout: float = 20.0) -> jobs_pb2.Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            j = client.get(jid)
            if j.state in TERMINAL:
                return j
        except Exception:  # not yet on the replica that answered
            pass
        time.sleep(0.02)
    raise TimeoutError(f"job {jid} not done")


def test_sequential_jobs_spread_and_dedicated_pool_is_isolated(pools: TestCluster) -> None:
    client = pools.client()
    nodes = []
    for _ in range(60):  # one after another: the cluster is idle at every placement
        j = wait_done(client, client.submit(jobs_pb2.JobSpec(command=["true"])))
        assert j.state == jobs_pb2.SUCCEEDED
        nodes.append(j.node_id)
        # nothing waits: placed in the submission's own entry (node/fastplace.py), so
        # PENDING and ASSIGNED carry the same leader time
        pending, assigned = j.history[0], j.history[1]
        assert (pending.state, assigned.state) == (jobs_pb2.PENDING, jobs_pb2.ASSIGNED)
        assert pending.at == assigned.at, (pending, assigned)
    counts = collections.Counter(nodes)
    print("60 sequential jobs per node:", dict(sorted(counts.items())))
    assert set(counts) == SHARED  # every shared node, never the dedicated n4
    assert min(counts.values()) >= 15, counts

    heavy = client.submit_batch([jobs_pb2.JobSpec(command=["true"], pool="heavy")] * 4
                                + [jobs_pb2.JobSpec(command=["true"], constraints=[
                                    jobs_pb2.Constraint(key="pool", op="eq", value="heavy")])] * 4)
    out = cli(pools, "--json", "submit", "--pool", "heavy", "--wait", "--", "true")
    assert out.returncode == 0, out.stderr
    assert [j["node_id"] for j in json.loads(out.stdout)["jobs"]] == ["n4"]
    # templates (and so schedules) carry the pool; a pool no node serves is refused
    out = cli(pools, "template", "create", "render", "--pool", "heavy", "--", "true")
    assert out.returncode == 0, out.stderr
    out = cli(pools, "template", "submit", "render")
    assert out.returncode == 0, out.stderr
    heavy.append(out.stdout.strip())
    out = cli(pools, "template", "create", "nowhere", "--pool", "gpu", "--", "true")
    assert out.returncode == 4 and "pool=gpu" in out.stderr
    plain = client.submit_batch([jobs_pb2.JobSpec(command=["sleep", "0.2"])] * 12)
    done = pools.wait_terminal(heavy + plain, timeout=60)
    assert {done[i].node_id for i in heavy} == {"n4"}
    assert {done[i].node_id for i in plain} <= SHARED
    assert all(j.state == jobs_pb2.SUCCEEDED for j in done.values())


def test_retry_lands_on_another_node(pools: TestCluster) -> None:
    client = pools.client()
    spec = jobs_pb2.JobSpec(use_shell=True, shell='[ "$RAFTSCHED_ATTEMPT" -ge 2 ]',
                            retry=jobs_pb2.RetryPolicy(max_attempts=3, initial_delay_seconds=0.1))
    ids = client.submit_batch([spec] * 4)
    done = pools.wait_terminal(ids, timeout=60)
    for jid in ids:
        j = done[jid]
        assert j.state == jobs_pb2.SUCCEEDED and j.attempt == 2
        assert j.attempts[0].outcome == "FAILED"
        assert j.node_id != j.attempts[0].node_id and j.node_id in SHARED


def test_explain_names_what_holds_a_pending_job(pools: TestCluster) -> None:
    client = pools.client()
    big = jobs_pb2.Resources(cpu_millis=1500, memory_mib=64)
    hogs = client.submit_batch([jobs_pb2.JobSpec(command=["sleep", "60"], resources=big)] * 3)
    pools.wait_until(lambda: all(client.get(h).state == jobs_pb2.RUNNING for h in hogs), 20, "hogs")
    assert {client.get(h).node_id for h in hogs} == SHARED

    # too big for every node right now: each shared node names its CPU, n4 its pool
    stuck = client.submit(jobs_pb2.JobSpec(command=["true"], resources=jobs_pb2.Resources(cpu_millis=1000)))
    e = client.explain(stuck)
    assert e.state == jobs_pb2.PENDING and not e.node_id and not e.holds
    checks = {v.node_id: (v.check, v.detail) for v in e.nodes}
    assert checks == {**{n: ("cpu", "cpu 1500+1000m > 2000m") for n in SHARED},
                      "n4": ("pool", "dedicated to pool heavy, which the job does not ask for")}
    out = cli(pools, "explain", stuck)
    assert out.returncode == 0 and "cpu 1500+1000m > 2000m" in out.stdout, out.stderr
    out = cli(pools, "status", stuck)
    assert "pending    no node can take it now: n1: cpu 1500+1000m > 2000m" in out.stdout

    # a sequence key: the second job waits for the first
    first, second = client.submit_batch([jobs_pb2.JobSpec(command=["sleep", "60"], sequence_key="k")] * 2)
    pools.wait_until(lambda: client.get(first).state == jobs_pb2.RUNNING, 20, "sequence head")
    e = client.explain(second)
    assert list(e.holds) == [f"sequence: job {second} waits for job {first} (sequence_key 'k')"]
    assert e.summary.startswith("waiting: sequence:") and client.get(second).pending_reason == e.summary

    # a workflow dependency: the child waits for its parent
    wc = WorkflowsClient([pools.addr("n1")], token=pools.token, tls=pools.tls)
    r = wc.submit_workflow("deps", [
        wpb.WorkflowJobSpec(name="parent", spec=jobs_pb2.JobSpec(command=["sleep", "60"])),
        wpb.WorkflowJobSpec(name="child", spec=jobs_pb2.JobSpec(command=["true"]), depends_on=["parent"])])
    parent, child = f"{r.workflow_id}-parent", f"{r.workflow_id}-child"
    pools.wait_until(lambda: client.get(parent).state == jobs_pb2.RUNNING, 20, "parent")
    out = cli(pools, "--json", "explain", child)
    d = json.loads(out.stdout)
    assert d["state"] == "WAITING" and d["holds"] == [f"dependency: waits for job {parent} (RUNNING) to succeed"]

    # plan: where would a spec go now, without submitting it
    out = cli(pools, "plan", "--cpu", "400", "--", "true")
    assert out.returncode == 0 and "would be placed on n" in out.stdout, out.stderr
    p = client.plan(jobs_pb2.JobSpec(command=["true"], pool="heavy", resources=big))
    assert p.node_id == "n4" and {v.node_id: v.check for v in p.nodes}["n1"] == "labels"
    out = cli(pools, "plan", "--pool", "gpu", "--", "true")
    assert out.returncode == 4 and "pool=gpu" in out.stderr
    for jid in [*hogs, stuck, first, second, parent]:
        client.cancel(jid)
