"""A real TLS cluster: plaintext and non-node callers are refused, node identity is
checked per request, jobs see only their own environment, files are private."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

import grpc
import pytest

from raftsched.client.credentials import ClientTLS, open_channel
from raftsched.node.jobenv import JOB_VARIABLES
from raftsched.v1 import (
    cluster_pb2,
    jobs_pb2,
    node_pb2,
    node_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)
from tests.support.cluster import TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

NODE_SECRET = "node-only-" + "s3cr3t-value-that-jobs-must-never-see"


@pytest.fixture(scope="module")
def sec() -> Iterator[TestCluster]:
    """Nodes started with a secret and a private variable in their own environment."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAFTSCHED_SECRET", NODE_SECRET)
        mp.setenv("NODE_PRIVATE_VARIABLE", "do-not-leak")
        c = TestCluster(n_nodes=3).start()
        try:
            c.wait_ready()
            yield c
        finally:
            c.close()


def node_tls(c: TestCluster, node_id: str) -> ClientTLS:
    d = c.cfg.data_dir / "tls"
    return ClientTLS(d / "ca.pem", d / f"{node_id}.pem", d / f"{node_id}-key.pem")


def agent(c: TestCluster, target: str, tls: ClientTLS | None) -> tuple[grpc.Channel, node_pb2_grpc.NodeAgentStub]:
    ch = open_channel(c.addr(target), tls)
    return ch, node_pb2_grpc.NodeAgentStub(ch)


def refused(call, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as ei:
        call()
    assert ei.value.code() == code, (ei.value.code(), ei.value.details())
    return ei.value.details() or ""


def heartbeat(c: TestCluster, node_id: str) -> node_pb2.HeartbeatRequest:
    n = c.cfg.node(node_id)
    return node_pb2.HeartbeatRequest(node_id=n.id, grpc_address=n.grpc, raft_address=n.raft,
                                     incarnation="forged",
                                     capacity=jobs_pb2.Resources(cpu_millis=1000, memory_mib=100))


def test_plaintext_client_is_refused(sec: TestCluster) -> None:
    for target in (n.id for n in sec.cfg.nodes):
        with grpc.insecure_channel(sec.addr(target)) as ch:
            stub = scheduler_pb2_grpc.SchedulerStub(ch)
            code = refused(lambda stub=stub: stub.SubmitJob(
                scheduler_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(command=["id"])), timeout=5),
                grpc.StatusCode.UNAVAILABLE)
            assert "uid=" not in code
    # a TLS client without a client certificate is refused too (mutual TLS)
    server_only = ClientTLS(sec.tls.ca) if sec.tls else None
    assert server_only is not None
    with open_channel(sec.addr("n1"), server_only) as ch:
        refused(lambda: scheduler_pb2_grpc.SchedulerStub(ch).ListJobs(
            scheduler_pb2.ListJobsRequest(), timeout=5), grpc.StatusCode.UNAVAILABLE)
    assert sec.client().status().leader_id  # the TLS client is served


def test_client_certificate_cannot_call_the_node_agent(sec: TestCluster) -> None:
    leader = sec.leader()
    follower = sec.followers()[0]
    job = sec.client().submit(jobs_pb2.JobSpec(command=["sleep", "30"]))
    sec.wait_until(lambda: sec.client().get(job).state == jobs_pb2.RUNNING, what="job running")
    j = sec.client().get(job)
    ch, stub = agent(sec, leader, sec.tls)
    with ch:
        denied = grpc.StatusCode.PERMISSION_DENIED
        msgs = [
            refused(lambda: stub.Heartbeat(heartbeat(sec, follower), timeout=5), denied),
            refused(lambda: stub.ReportJobs(node_pb2.ReportJobsRequest(node_id=j.node_id, reports=[
                node_pb2.JobReport(job_id=job, attempt=j.attempt, fencing_token=j.fencing_token,
                                   kind=node_pb2.FINISHED, has_exit_code=True, exit_code=0,
                                   stdout_tail="forged")]), timeout=5), denied),
            refused(lambda: stub.GetReplicaStatus(node_pb2.ReplicaStatusRequest(), timeout=5), denied),
        ]
    ch, stub = agent(sec, j.node_id, sec.tls)
    with ch:
        msgs.append(refused(lambda: stub.StartJobs(node_pb2.StartJobsRequest(
            leader_id=leader, term=10**6, generation=0, jobs=[node_pb2.StartJob(
                job_id="../../../x", attempt=1, fencing_token=1,
                spec=jobs_pb2.JobSpec(command=["touch", "/tmp/raftsched-pwned"]))]), timeout=5), denied))
    for m in msgs:
        assert "generation" not in m and "token" not in m and "incarnation" not in m, m
    assert not os.path.exists("/tmp/raftsched-pwned")
    # a write claiming to be forwarded by a node, from a client certificate (with the
    # management token, so that only the node-identity check can refuse it)
    with open_channel(sec.addr(leader), sec.tls) as ch:
        refused(lambda: scheduler_pb2_grpc.SchedulerStub(ch).CancelJob(
            scheduler_pb2.CancelJobRequest(job_id=job),
            metadata=(("x-raftsched-forwarded", follower), ("authorization", f"Bearer {sec.token}")),
            timeout=5), grpc.StatusCode.PERMISSION_DENIED)
    after = sec.client().get(job)
    assert after.state == jobs_pb2.RUNNING and after.stdout_tail != "forged"
    sec.client().cancel(job)


def test_node_certificate_speaks_only_for_its_own_node(sec: TestCluster) -> None:
    leader = sec.leader()
    f1, f2 = sec.followers()
    ch, stub = agent(sec, leader, node_tls(sec, f1))
    with ch:
        msg = refused(lambda: stub.Heartbeat(heartbeat(sec, f2), timeout=5),
                      grpc.StatusCode.PERMISSION_DENIED)
        assert f1 in msg
        # as itself it is served (a heartbeat here would reset its incarnation)
        assert stub.GetReplicaStatus(node_pb2.ReplicaStatusRequest(), timeout=5).status.node_id == leader
        # a rogue node id is refused even with a valid certificate
        rogue = heartbeat(sec, f1)
        rogue.node_id = "evil"
        refused(lambda: stub.Heartbeat(rogue, timeout=5), grpc.StatusCode.PERMISSION_DENIED)
    # a follower's certificate cannot start jobs: only the leader's can
    ch, stub = agent(sec, f2, node_tls(sec, f1))
    with ch:
        refused(lambda: stub.StartJobs(node_pb2.StartJobsRequest(leader_id=f1, term=1), timeout=5),
                grpc.StatusCode.FAILED_PRECONDITION)
        refused(lambda: stub.StartJobs(node_pb2.StartJobsRequest(leader_id=leader, term=1), timeout=5),
                grpc.StatusCode.PERMISSION_DENIED)
    nodes = {n.id for n in sec.client().nodes()}
    assert "evil" not in nodes


def test_control_port_takes_only_a_nodes_own_heartbeat(sec: TestCluster) -> None:
    """The control port (node heartbeats, rpc/control.py) has the same mutual TLS and
    node identity checks as the main port; it serves nothing else."""
    leader = sec.leader()
    f1, f2 = sec.followers()
    control = sec.cfg.node(leader).control
    with grpc.insecure_channel(control) as ch:
        refused(lambda: node_pb2_grpc.NodeAgentStub(ch).Heartbeat(heartbeat(sec, f1), timeout=5),
                grpc.StatusCode.UNAVAILABLE)
    with open_channel(control, sec.tls) as ch:  # a client certificate, not a node's
        refused(lambda: node_pb2_grpc.NodeAgentStub(ch).Heartbeat(heartbeat(sec, f1), timeout=5),
                grpc.StatusCode.PERMISSION_DENIED)
    with open_channel(control, node_tls(sec, f1)) as ch:
        stub = node_pb2_grpc.NodeAgentStub(ch)
        msg = refused(lambda: stub.Heartbeat(heartbeat(sec, f2), timeout=5), grpc.StatusCode.PERMISSION_DENIED)
        assert f1 in msg and "incarnation" not in msg
        # as itself, but claiming another address: refused after the identity check
        moved = heartbeat(sec, f1)
        moved.grpc_address = "127.0.0.1:1"
        assert "is not a member of the cluster" in refused(lambda: stub.Heartbeat(moved, timeout=5),
                                                       grpc.StatusCode.PERMISSION_DENIED)
        # only the heartbeat is served here
        refused(lambda: stub.GetReplicaStatus(node_pb2.ReplicaStatusRequest(), timeout=5),
                grpc.StatusCode.UNIMPLEMENTED)
    # a follower's control port answers a heartbeat with "not the leader"
    with open_channel(sec.cfg.node(f2).control, node_tls(sec, f1)) as ch:
        refused(lambda: node_pb2_grpc.NodeAgentStub(ch).Heartbeat(heartbeat(sec, f1), timeout=5),
                grpc.StatusCode.UNAVAILABLE)


def test_a_node_cannot_report_on_another_nodes_job(sec: TestCluster) -> None:
    import time

    c = sec.client()
    jid = c.submit(jobs_pb2.JobSpec(command=["sleep", "20"]))
    sec.wait_until(lambda: c.get(jid).state == jobs_pb2.RUNNING, what="job running")
    j = c.get(jid)
    other = next(n.id for n in sec.cfg.nodes if n.id != j.node_id)
    ch, stub = agent(sec, sec.leader(), node_tls(sec, other))
    with ch:
        stub.ReportJobs(node_pb2.ReportJobsRequest(node_id=other, reports=[node_pb2.JobReport(
            job_id=jid, attempt=j.attempt, fencing_token=j.fencing_token, kind=node_pb2.FINISHED,
            has_exit_code=True, exit_code=0, stdout_tail="forged")]), timeout=5)
    time.sleep(1.0)  # an accepted report commits within milliseconds
    after = c.get(jid)
    assert after.state == jobs_pb2.RUNNING and after.stdout_tail != "forged"
    c.cancel(jid)


def test_job_sees_only_its_env_and_its_own_scratch_dir(sec: TestCluster) -> None:
    c = sec.client()
    jid = c.submit(jobs_pb2.JobSpec(command=["sh", "-c", "env; echo cwd=$(pwd)"], env={"MINE": "1"}))
    job = sec.wait_terminal([jid])[jid]
    assert job.state == jobs_pb2.SUCCEEDED, job.stderr_tail
    lines = job.stdout_tail.splitlines()
    env = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("cwd="))
    assert NODE_SECRET not in job.stdout_tail
    assert "RAFTSCHED_SECRET" not in env and "NODE_PRIVATE_VARIABLE" not in env
    allowed = {"PATH", "HOME", "LANG", "TMPDIR", "MINE", "PWD", "SHLVL", "_", *JOB_VARIABLES}
    assert set(env) <= allowed, set(env) - allowed
    assert env["RAFTSCHED_JOB_ID"] == jid and env["MINE"] == "1"
    cwd = next(line for line in lines if line.startswith("cwd="))[4:]
    scratch = sec.cfg.node_data_dir(job.node_id) / "scratch"
    assert cwd == str(scratch / f"{jid}.{job.attempt}")
    assert stat.S_IMODE(os.stat(cwd).st_mode) == 0o700


def test_data_files_are_private(sec: TestCluster) -> None:
    def mode(p) -> int:
        return stat.S_IMODE(os.stat(p).st_mode)

    c = sec.client()
    # prints on both streams: a stream's file is made at its first byte
    jid = c.submit(jobs_pb2.JobSpec(use_shell=True, shell="echo private; echo secret >&2",
                                    env={"DB_PASSWORD": "x"}))
    job = sec.wait_terminal([jid])[jid]
    assert mode(sec.cfg.data_dir) == 0o700
    d = sec.cfg.node_data_dir(job.node_id)
    assert mode(d) == 0o700 and mode(d / "output") == 0o700
    for p in [d / "raft.journal", d / "output" / f"{jid}.1.out", d / "output" / f"{jid}.1.err"]:
        assert mode(p) == 0o600, p
    tls = sec.cfg.data_dir / "tls"
    assert mode(tls) == 0o700
    for p in tls.glob("*.pem"):
        assert mode(p) == 0o600, p
    st = c.status(include_replicas=True)
    assert isinstance(st, cluster_pb2.ClusterStatusResponse) and all(r.reachable for r in st.replicas)


def test_cli_connects_with_explicit_certificates(sec: TestCluster, tmp_path) -> None:
    import subprocess
    import sys

    d = sec.cfg.data_dir / "tls"
    base = [sys.executable, "-m", "raftsched", "--config", str(tmp_path / "none.toml"),
            "--node", sec.addr("n1"), "--timeout", "3", "--token", str(sec.token)]
    flags = ["--ca", str(d / "ca.pem"), "--cert", str(d / "client.pem"), "--key", str(d / "client-key.pem")]
    r = subprocess.run([*base, *flags, "leader"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and sec.leader() in r.stdout, r.stderr
    env = {**os.environ, "RAFTSCHED_CA": flags[1], "RAFTSCHED_CERT": flags[3], "RAFTSCHED_KEY": flags[5]}
    r = subprocess.run([*base, "leader"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*base, "leader"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 5 and "no TLS files found" in r.stderr
