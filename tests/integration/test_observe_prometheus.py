"""A real Prometheus server scrapes all three nodes; PromQL sees the jobs the test ran.

Uses Debian's `prometheus` binary (installed by .ci/run), started here as our
own process on a free port with a temporary TSDB: never a system service.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from raftsched.v1 import jobs_pb2
from tests.support.cluster import TestCluster, free_ports

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

PROMETHEUS = shutil.which("prometheus")
N_JOBS = 37


@pytest.fixture(scope="module")
def cluster() -> Iterator[TestCluster]:
    c = TestCluster(n_nodes=3).start()
    try:
        c.wait_ready()
        yield c
    finally:
        c.close()


@pytest.fixture
def prometheus(cluster: TestCluster) -> Iterator[str]:
    if PROMETHEUS is None:
        pytest.skip("the prometheus binary is not installed (Debian package `prometheus`; .ci/run installs it)")
    targets = [n.metrics for n in cluster.cfg.nodes]
    assert all(targets), "test cluster nodes must have metrics addresses"
    root = cluster.root / "prometheus"
    root.mkdir()
    (root / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: raftsched\n    static_configs:\n"
        f"      - targets: {json.dumps(targets)}\n"
    )
    port = free_ports(1)[0]
    log = open(root / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("prometheus did not start:\n" + (root / "prometheus.log").read_text()[-3000:])
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def query(url: str, promql: str) -> list[dict]:
    q = urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_query(url: str, promql: str, pred, timeout: float = 40.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    res: list[dict] = []
    while time.monotonic() < deadline:
        res = query(url, promql)
        if pred(res):
            return res
        time.sleep(0.5)
    raise AssertionError(f"{promql} never satisfied the condition; last result {res}")


def by_instance(res: list[dict]) -> dict[str, float]:
    return {r["metric"]["instance"]: float(r["value"][1]) for r in res}


def test_prometheus_scrapes_every_node_and_counts_completed_jobs(cluster: TestCluster, prometheus: str) -> None:
    c = cluster
    client = c.client(c.followers()[0])
    specs = [jobs_pb2.JobSpec(command=["sh", "-c", f"sleep 0.{i % 5}"], name=f"p-{i}",
                              resources=jobs_pb2.Resources(cpu_millis=100, memory_mib=16))
             for i in range(N_JOBS)]
    ids = client.submit_batch(specs)
    done = c.wait_terminal(ids, timeout=90, client=client)
    assert all(j.state == jobs_pb2.SUCCEEDED for j in done.values())
    instances = {n.metrics for n in c.cfg.nodes}

    up = wait_query(prometheus, 'up{job="raftsched"}',
                    lambda r: by_instance(r) == dict.fromkeys(instances, 1.0))
    assert len(up) == 3

    # The query the issue asks for: completed jobs, as counted by each node's replica.
    res = wait_query(prometheus, 'raftsched_job_completions_total{state="SUCCEEDED"}',
                     lambda r: by_instance(r) == dict.fromkeys(instances, float(N_JOBS)))
    assert len(res) == 3
    assert float(query(prometheus, 'max(raftsched_job_completions_total{state="SUCCEEDED"})')[0]["value"][1]) \
        == N_JOBS
    subs = wait_query(prometheus, "raftsched_job_submissions_total",
                      lambda r: by_instance(r) == dict.fromkeys(instances, float(N_JOBS)))
    assert len(subs) == 3
    # the gauge read from each replica agrees
    gauge = wait_query(prometheus, 'raftsched_jobs{state="SUCCEEDED"}',
                       lambda r: by_instance(r) == dict.fromkeys(instances, float(N_JOBS)))
    assert len(gauge) == 3
    # histograms: every job observed once per node; run time at least the shortest sleep (0s)
    hist = wait_query(prometheus, "raftsched_job_run_seconds_count",
                      lambda r: by_instance(r) == dict.fromkeys(instances, float(N_JOBS)))
    assert len(hist) == 3
    lat = query(prometheus, "raftsched_job_submit_to_start_seconds_count")
    assert by_instance(lat) == dict.fromkeys(instances, float(N_JOBS))
    # exactly one leader, all nodes agree on the term, capacity is exported per node
    leaders = query(prometheus, 'sum(raftsched_raft_role{role="leader"})')
    assert float(leaders[0]["value"][1]) == 1.0
    terms = by_instance(query(prometheus, "raftsched_raft_term"))
    assert len(terms) == 3 and len(set(terms.values())) == 1
    cap = query(prometheus, 'raftsched_node_capacity_cpu_millis{node="n1"}')
    assert {float(r["value"][1]) for r in cap} == {2000.0}
    missed = query(prometheus, "raftsched_node_missed_heartbeats")
    assert {r["metric"]["node"] for r in missed} == {"n1", "n2", "n3"}
    assert query(prometheus, "raftsched_proposal_entries_total")
