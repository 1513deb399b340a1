"""Bad requests are refused with a clear status and change nothing; the CLI works on a follower."""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import pytest

from raftsched.v1 import jobs_pb2, scheduler_pb2, scheduler_pb2_grpc
from tests.support.cluster import TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def _state(c: TestCluster) -> tuple:
    reps = c.replicas_identical()
    return reps[0].applied_index, reps[0].state_digest


def _expect(fn, code: grpc.StatusCode, *fragments: str) -> None:
    with pytest.raises(grpc.RpcError) as ei:
        fn()
    assert ei.value.code() == code, (ei.value.code(), ei.value.details())
    for f in fragments:
        assert f in ei.value.details(), ei.value.details()


def test_bad_requests_are_refused_and_change_nothing(cluster3: TestCluster) -> None:
    c = cluster3
    follower = c.followers()[0]
    done_id = c.client().submit(jobs_pb2.JobSpec(command=["true"]))
    c.wait_terminal([done_id])
    before = _state(c)
    ch = c.channel(follower)
    stub = scheduler_pb2_grpc.SchedulerStub(ch)
    invalid = grpc.StatusCode.INVALID_ARGUMENT

    def submit(**kw):
        return stub.SubmitJob(scheduler_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(**kw)), timeout=10)

    _expect(lambda: submit(), invalid, "command is empty")
    _expect(lambda: stub.SubmitJob(scheduler_pb2.SubmitJobRequest(), timeout=10), invalid, "no job specs")
    _expect(lambda: submit(command=["true"], resources=jobs_pb2.Resources(cpu_millis=-5)),
            invalid, "cpu_millis", ">= 0")
    _expect(lambda: submit(command=["true"], resources=jobs_pb2.Resources(memory_mib=-1)),
            invalid, "memory_mib")
    _expect(lambda: submit(command=["true"], resources=jobs_pb2.Resources(cpu_millis=64000)),
            invalid, "could never run", "cpu_millis=2000")
    _expect(lambda: submit(command=["true"], priority=5000), invalid, "priority")
    _expect(lambda: submit(command=["true"], timeout_seconds=-1), invalid, "timeout_seconds")
    _expect(lambda: submit(shell="echo hi"), invalid, "use_shell")
    _expect(lambda: submit(command=["true"], env={"A=B": "x"}), invalid, "env name")
    _expect(lambda: submit(command=["true"], working_dir="relative/dir"), invalid, "absolute")
    batch = scheduler_pb2.SubmitJobsRequest(specs=[jobs_pb2.JobSpec(command=["true"]), jobs_pb2.JobSpec()])
    _expect(lambda: stub.SubmitJobs(batch, timeout=10), invalid, "specs[1]", "command is empty")
    _expect(lambda: stub.GetJob(scheduler_pb2.GetJobRequest(job_id="no-such-job"), timeout=10),
            grpc.StatusCode.NOT_FOUND, "no-such-job")
    _expect(lambda: stub.CancelJob(scheduler_pb2.CancelJobRequest(job_id="no-such-job"), timeout=10),
            grpc.StatusCode.NOT_FOUND, "no-such-job")
    _expect(lambda: stub.CancelJob(scheduler_pb2.CancelJobRequest(job_id=done_id), timeout=10),
            grpc.StatusCode.FAILED_PRECONDITION, "already finished", "SUCCEEDED")
    _expect(lambda: stub.ListJobs(scheduler_pb2.ListJobsRequest(page_token="garbage"), timeout=10),
            invalid, "page_token")
    ch.close()
    assert _state(c) == before, "a refused request changed the replicated state"


def cli(c: TestCluster, node_id: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftsched", "--config", str(c.config_path), "--node", c.addr(node_id),
         *args],
        capture_output=True, text=True, timeout=60,
    )


def test_cli_against_a_follower(cluster3: TestCluster) -> None:
    c = cluster3
    f = c.followers()[0]
    r = cli(c, f, "--json", "submit", "--wait", "--", "sh", "-c", "echo cli-works")
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)["jobs"][0]
    assert job["state"] == "SUCCEEDED" and job["stdout_tail"].strip() == "cli-works"

    r = cli(c, f, "status", job["id"])
    assert r.returncode == 0 and "SUCCEEDED" in r.stdout and "cli-works" in r.stdout

    r = cli(c, f, "submit", "--wait", "--shell", "--", "exit 4")
    assert r.returncode == 1 and "FAILED" in r.stdout

    r = cli(c, f, "--json", "list", "--state", "succeeded", "--limit", "5")
    assert r.returncode == 0 and all(j["state"] == "SUCCEEDED" for j in json.loads(r.stdout)["jobs"])

    r = cli(c, f, "cancel", job["id"])
    assert r.returncode == 4 and "FAILED_PRECONDITION" in r.stderr and "already finished" in r.stderr

    r = cli(c, f, "status", "does-not-exist")
    assert r.returncode == 3 and "not found" in r.stderr

    r = cli(c, f, "submit", "--cpu", "-3", "--", "true")
    assert r.returncode == 4 and "cpu_millis" in r.stderr

    r = cli(c, f, "submit")  # a usage error, found before any call (issue 17)
    assert r.returncode == 2 and "no command given" in r.stderr

    r = cli(c, f, "nodes")
    assert r.returncode == 0
    for n in ("n1", "n2", "n3"):
        assert n in r.stdout
    assert "leader" in r.stdout and "follower" in r.stdout

    r = cli(c, f, "--json", "leader")
    assert r.returncode == 0 and json.loads(r.stdout)["leader_id"] == c.leader()

    r = cli(c, f, "--help")
    assert r.returncode == 0 and "exit codes" in r.stdout


def test_cli_reports_unreachable_cluster(tmp_path) -> None:
    r = subprocess.run([sys.executable, "-m", "raftsched", "--node", "127.0.0.1:9", "--timeout", "1",
                        "leader"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 5 and "UNAVAILABLE" in r.stderr
