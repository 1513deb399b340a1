"""Bounds and early refusals on a real TLS + ACL cluster:
- NodeAgent requests from a valid node certificate with oversized fields are
  INVALID_ARGUMENT naming the field (after the identity check, which comes first);
- submissions from a template, workflows and a schedule's run-now are refused by the
  namespace quota (RESOURCE_EXHAUSTED) before anything is proposed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from raftsched.client.acl_client import AclClient
from raftsched.client.credentials import ClientTLS, open_channel
from raftsched.v1 import jobs_pb2, node_pb2, node_pb2_grpc, workflows_pb2, workflows_pb2_grpc
from tests.support.cluster import TestCluster, status_of

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

S = grpc.StatusCode


@pytest.fixture(scope="module")
def sec() -> Iterator[TestCluster]:
    c = TestCluster(n_nodes=3).start()
    try:
        c.wait_ready()
        yield c
    finally:
        c.close()


def agent(c: TestCluster, target: str, as_node: str | None) -> node_pb2_grpc.NodeAgentStub:
    d = c.cfg.data_dir / "tls"
    tls = ClientTLS(d / "ca.pem", d / f"{as_node}.pem", d / f"{as_node}-key.pem") if as_node \
        else c.tls
    return node_pb2_grpc.NodeAgentStub(open_channel(c.addr(target), tls))


def heartbeat(c: TestCluster, node_id: str, **kw: Any) -> node_pb2.HeartbeatRequest:
    n = c.cfg.node(node_id)
    kw.setdefault("incarnation", "forged")
    return node_pb2.HeartbeatRequest(node_id=n.id, grpc_address=n.grpc, raft_address=n.raft, **kw,
                                     capacity=jobs_pb2.Resources(cpu_millis=1000, memory_mib=100))


def test_node_agent_fields_are_bounded(sec: TestCluster) -> None:
    c = sec
    leader = c.leader()
    f1 = c.followers()[0]
    to_leader = agent(c, leader, f1)  # a valid node certificate, speaking for itself

    many_labels = {f"k{i}": "v" for i in range(300)}
    code, msg = status_of(lambda: to_leader.Heartbeat(heartbeat(c, f1, labels=many_labels), timeout=10))
    assert code == S.INVALID_ARGUMENT and msg.startswith("labels: 300 entries; at most 256"), msg
    code, msg = status_of(lambda: to_leader.Heartbeat(heartbeat(c, f1, incarnation="i" * 5000), timeout=10))
    assert code == S.INVALID_ARGUMENT and msg.startswith("incarnation: 5000 characters"), msg
    running = [node_pb2.RunningAttempt(job_id="x" * 300, attempt=1)]
    code, msg = status_of(lambda: to_leader.Heartbeat(heartbeat(c, f1, running=running), timeout=10))
    assert code == S.INVALID_ARGUMENT and msg.startswith("running[0].job_id: 300 characters"), msg

    def report(**kw: Any) -> node_pb2.JobReport:
        kw.setdefault("kind", node_pb2.FINISHED)
        return node_pb2.JobReport(job_id="nope", attempt=1, fencing_token=1, **kw)

    big = node_pb2.ReportJobsRequest(node_id=f1, reports=[report(stdout_tail="o" * 100_000)])
    code, msg = status_of(lambda: to_leader.ReportJobs(big, timeout=10))
    assert code == S.INVALID_ARGUMENT and msg.startswith("reports[0].stdout_tail: 100000 characters; "
                                                         "at most 8192"), msg
    code, msg = status_of(lambda: to_leader.ReportJobs(node_pb2.ReportJobsRequest(
        node_id=f1, reports=[report(error="e" * 10_000)]), timeout=10))
    assert code == S.INVALID_ARGUMENT and msg.startswith("reports[0].error: 10000 characters"), msg
    code, msg = status_of(lambda: to_leader.ReportJobs(node_pb2.ReportJobsRequest(
        node_id=f1, reports=[report()] * 10_001), timeout=10))
    assert code == S.INVALID_ARGUMENT and msg.startswith("reports: 10001 entries; at most 10000"), msg
    code, msg = status_of(lambda: to_leader.ReportJobs(node_pb2.ReportJobsRequest(
        node_id=f1, reports=[report(kind=7)]), timeout=10))
    assert code == S.INVALID_ARGUMENT and msg.startswith("reports[0].kind: unknown value 7"), msg

    # starts: the leader's certificate to a follower that follows it
    to_f1 = agent(c, f1, leader)

    def starts(job: node_pb2.StartJob) -> node_pb2.StartJobsRequest:
        return node_pb2.StartJobsRequest(leader_id=leader, term=10**6, jobs=[job])

    huge_env = jobs_pb2.JobSpec(command=["true"], env={"A": "v" * 100_000})
    code, msg = status_of(lambda: to_f1.StartJobs(starts(node_pb2.StartJob(job_id="j", spec=huge_env)),
                                              timeout=10))
    assert code == S.INVALID_ARGUMENT and msg.startswith("jobs[0].spec.env['A']: 100000 characters"), msg
    code, msg = status_of(lambda: to_f1.StartJobs(starts(node_pb2.StartJob(job_id="j" * 1000)), timeout=10))
    assert code == S.INVALID_ARGUMENT and msg.startswith("jobs[0].job_id: 1000 characters"), msg
    nan = jobs_pb2.JobSpec(command=["true"], timeout_seconds=float("nan"))
    code, msg = status_of(lambda: to_f1.StartJobs(starts(node_pb2.StartJob(job_id="j", spec=nan)), timeout=10))
    assert code == S.INVALID_ARGUMENT and msg.startswith("jobs[0].spec.timeout_seconds"), msg

    # identity comes first: a client certificate with the same oversized request learns nothing more
    code, msg = status_of(lambda: agent(c, leader, None).ReportJobs(big, timeout=10))
    assert code == S.PERMISSION_DENIED and "stdout_tail" not in msg
    # the cluster is unharmed: every node is alive and a job runs
    cl = c.client()
    jid = cl.submit(jobs_pb2.JobSpec(command=["true"]))
    assert c.wait_terminal([jid])[jid].state == jobs_pb2.SUCCEEDED
    assert all(n.alive for n in cl.nodes())


def test_template_workflow_and_run_now_quota_refused_before_proposing(sec: TestCluster) -> None:
    c = sec
    admin = AclClient([c.addr(n.id) for n in c.cfg.nodes], token=c.token, tls=c.tls)
    admin.set_quota("q", max_cpu_millis=150)

    def big(cpu: int = 200) -> jobs_pb2.JobSpec:
        return jobs_pb2.JobSpec(command=["true"], namespace="q",
                                resources=jobs_pb2.Resources(cpu_millis=cpu, memory_mib=16))

    wf = workflows_pb2_grpc.WorkflowsStub(c.channel(c.leader()))
    wf.CreateTemplate(workflows_pb2.PutTemplateRequest(
        template=workflows_pb2.Template(name="big", spec=big())), timeout=10)
    wf.AddSchedule(workflows_pb2.AddScheduleRequest(schedule=workflows_pb2.Schedule(
        id="big-yearly", cron="0 0 1 1 *", spec=big(), paused=True)), timeout=10)
    before = c.quiet_replicas()
    for nid in (c.leader(), c.followers()[0]):
        stub = workflows_pb2_grpc.WorkflowsStub(c.channel(nid))
        code, msg = status_of(lambda stub=stub: stub.SubmitFromTemplate(
            workflows_pb2.SubmitFromTemplateRequest(template="big"), timeout=10))
        assert code == S.RESOURCE_EXHAUSTED, (code, msg)
        assert "namespace 'q' quota exceeded: cpu_millis 0 in use + 200 requested > limit 150" in msg
        jobs = [workflows_pb2.WorkflowJobSpec(name=n, spec=big(100)) for n in ("a", "b")]
        code, msg = status_of(lambda stub=stub, jobs=jobs: stub.SubmitWorkflow(
            workflows_pb2.SubmitWorkflowRequest(name="w", jobs=jobs), timeout=10))
        assert code == S.RESOURCE_EXHAUSTED and "+ 200 requested > limit 150" in msg, (code, msg)
        code, msg = status_of(lambda stub=stub: stub.RunScheduleNow(
            workflows_pb2.ScheduleRef(id="big-yearly"), timeout=10))
        assert code == S.RESOURCE_EXHAUSTED and "quota exceeded" in msg, (code, msg)
    assert c.quiet_replicas() == before  # nothing reached the log, no replica changed

    # within the quota the same calls succeed
    ok = wf.SubmitFromTemplate(workflows_pb2.SubmitFromTemplateRequest(
        template="big", overrides=workflows_pb2.SpecOverrides(cpu_millis=100)), timeout=10)
    assert c.wait_terminal([ok.job_id])[ok.job_id].state == jobs_pb2.SUCCEEDED
    admin.set_quota("q")
    admin.close()
