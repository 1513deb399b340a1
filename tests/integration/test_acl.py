"""ACLs on a real cluster: tokens, roles, namespaces, quotas, revocation, request ids."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from raftsched.client.acl_client import AclClient
from raftsched.client.client import Client
from raftsched.client.observe_client import JobWatcher, get_output
from raftsched.v1 import jobs_pb2, scheduler_pb2, scheduler_pb2_grpc
from tests.support.cluster import TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

S = grpc.StatusCode


def _code(fn: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    return S.OK, ""


def sleeper(ns: str = "", cpu: int = 100, secs: int = 30) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(command=["sleep", str(secs)], namespace=ns,
                            resources=jobs_pb2.Resources(cpu_millis=cpu, memory_mib=16))


@pytest.fixture(scope="module")
def acl_cluster() -> Iterator[tuple[TestCluster, dict[str, str]]]:
    c = TestCluster(n_nodes=3).start()
    try:
        c.wait_ready()
        admin = AclClient([c.addr(n.id) for n in c.cfg.nodes], token=c.token, tls=c.tls)
        tokens = {}
        for name, role, nss in (("alice", "submitter", ["team-a"]), ("bob", "submitter", ["team-b"]),
                                ("rita", "reader", ["team-a", "team-b"]),
                                ("olga", "operator", ["team-a"])):
            tokens[name], _ = admin.create_token(name, role, nss)
        admin.close()
        yield c, tokens
    finally:
        c.close()


def test_anonymous_and_unknown_tokens_are_unauthenticated(acl_cluster) -> None:
    c, _ = acl_cluster
    for nid in (n.id for n in c.cfg.nodes):
        anon = c.client(nid, token=None)
        code, msg = _code(lambda: anon.list_page())  # noqa: B023
        assert code == S.UNAUTHENTICATED and "authorization" in msg
        assert _code(lambda: anon.submit(jobs_pb2.JobSpec(command=["id"])))[0] == S.UNAUTHENTICATED  # noqa: B023
        forged = c.client(nid, token="x" * 43)
        assert _code(lambda: forged.status())[0] == S.UNAUTHENTICATED  # noqa: B023


def test_roles(acl_cluster) -> None:
    c, t = acl_cluster
    reader = c.client(token=t["rita"])
    code, msg = _code(lambda: reader.submit(sleeper("team-a")))
    assert code == S.PERMISSION_DENIED and "rita" in msg and "submit" in msg
    assert reader.list_page().total >= 0  # reading is allowed
    alice = c.client(token=t["alice"])
    assert _code(lambda: alice.purge_dead())[0] == S.PERMISSION_DENIED  # admin only
    assert _code(lambda: AclClient([c.addr("n1")], token=t["alice"], tls=c.tls).tokens())[0] == S.PERMISSION_DENIED


def test_namespaces_are_isolated(acl_cluster) -> None:
    c, t = acl_cluster
    follower = c.followers()[0]
    bob = c.client(follower, token=t["bob"])  # a write through a follower: forwarded with the token
    alice = c.client(token=t["alice"])
    b_job = bob.submit(sleeper())  # bob's default namespace
    mine = alice.submit(jobs_pb2.JobSpec(command=["echo", "a"]))
    c.wait_until(lambda: alice.get(mine).state == jobs_pb2.SUCCEEDED, 30, "alice's job")
    c.wait_until(lambda: bob.get(b_job).state == jobs_pb2.RUNNING, 30, "bob's job running")
    assert bob.get(b_job).spec.namespace == "team-b"
    assert alice.get(mine).submitted_by == "alice"

    assert _code(lambda: alice.get(b_job))[0] == S.PERMISSION_DENIED
    listed = {j.id for j in alice.list_all()}
    assert mine in listed and b_job not in listed
    assert _code(lambda: alice.cancel(b_job))[0] == S.PERMISSION_DENIED
    code, msg = _code(lambda: get_output([c.addr(follower)], b_job, token=t["alice"], tls=c.tls))
    assert code == S.PERMISSION_DENIED and "team-b" in msg
    assert _code(lambda: alice.submit(sleeper("team-b")))[0] == S.PERMISSION_DENIED

    w = JobWatcher([c.addr(n.id) for n in c.cfg.nodes], send_initial=True, token=t["alice"], tls=c.tls)
    seen = set()
    for resp in w.responses():
        seen |= {ev.job.id for ev in resp.events}
        if resp.synced:
            break
    w.cancel()
    assert mine in seen and b_job not in seen

    rita = c.client(token=t["rita"])  # a reader of both namespaces sees both
    assert {mine, b_job} <= {j.id for j in rita.list_all()}
    cancelled = bob.cancel(b_job)
    assert cancelled.cancelled_by == "bob" and "bob" in cancelled.reason


def test_quota_is_enforced_before_proposing(acl_cluster) -> None:
    c, t = acl_cluster
    admin = AclClient([c.addr("n1")], token=c.token, tls=c.tls)
    admin.set_quota("team-a", max_cpu_millis=300)
    olga = c.client(token=t["olga"])
    ids = [olga.submit(sleeper("team-a", cpu=100)) for _ in range(3)]
    before = c.client().status().commit_index
    code, msg = _code(lambda: olga.submit(sleeper("team-a", cpu=100)))
    assert code == S.RESOURCE_EXHAUSTED and "team-a" in msg and "cpu_millis" in msg
    assert _code(lambda: olga.submit_batch([sleeper("team-a", cpu=10)] * 2))[0] == S.RESOURCE_EXHAUSTED
    for jid in ids:
        olga.cancel(jid)
    c.wait_until(lambda: all(olga.get(j).state == jobs_pb2.CANCELLED for j in ids), 30, "cancelled")
    assert olga.submit(sleeper("team-a", cpu=100, secs=0))  # room again
    admin.set_quota("team-a")  # all zero: no quota
    admin.close()
    assert before > 0


def test_revoked_token_stops_working_on_every_node(acl_cluster) -> None:
    c, _ = acl_cluster
    admin = AclClient([c.addr("n2")], token=c.token, tls=c.tls)
    secret, info = admin.create_token("temp", "reader", ["*"])
    assert info.role == "reader"
    nodes = [n.id for n in c.cfg.nodes]
    clients = [c.client(nid, token=secret) for nid in nodes]
    c.wait_until(lambda: all(_code(cl.status)[0] == S.OK for cl in clients), 10, "token everywhere")
    admin.revoke("temp")
    deadline = time.monotonic() + 5
    for cl in clients:  # each node refuses it once it applied the revocation
        while _code(cl.status)[0] != S.UNAUTHENTICATED:
            assert time.monotonic() < deadline, "a node still accepts a revoked token"
            time.sleep(0.05)
    assert "temp" not in {x.name for x in admin.tokens()}
    admin.close()


def test_request_ids_and_early_refusals_append_nothing(acl_cluster) -> None:
    c, t = acl_cluster
    leader = c.leader()
    ch = c.channel(leader, token=t["alice"])
    stub = scheduler_pb2_grpc.SchedulerStub(ch)
    spec = jobs_pb2.JobSpec(command=["true"])
    first = stub.SubmitJob(scheduler_pb2.SubmitJobRequest(spec=spec, request_id="rid-1"), timeout=10)
    again = stub.SubmitJob(scheduler_pb2.SubmitJobRequest(spec=spec, request_id="rid-1"), timeout=10)
    assert again.job_id == first.job_id  # a retry answers with the first result
    c.wait_until(lambda: Client([c.addr(leader)], token=c.token, tls=c.tls).get(first.job_id).state
                 == jobs_pb2.SUCCEEDED, 30, "job done")
    time.sleep(0.5)
    admin = c.client(leader)
    before = admin.status().commit_index
    other = scheduler_pb2.SubmitJobsRequest(specs=[spec, spec], request_id="rid-1")
    code, msg = _code(lambda: stub.SubmitJobs(other, timeout=10))
    assert code == S.INVALID_ARGUMENT and "request_id" in msg
    retry = scheduler_pb2.RetryDeadJobRequest(job_id=first.job_id, request_id="rid-2")
    code, msg = _code(lambda: stub.RetryDeadJob(retry, timeout=10))
    assert code == S.PERMISSION_DENIED and "operate" in msg  # alice is no operator
    olga = scheduler_pb2_grpc.SchedulerStub(c.channel(leader, token=t["olga"]))
    code, msg = _code(lambda: olga.RetryDeadJob(retry, timeout=10))
    assert code == S.FAILED_PRECONDITION and "not DEAD" in msg
    assert admin.status().commit_index == before  # refused before proposing: nothing appended
    key = "k-" + first.job_id
    keyed = stub.SubmitJob(scheduler_pb2.SubmitJobRequest(spec=spec, idempotency_key=key), timeout=10)
    c.wait_until(lambda: admin.get(keyed.job_id).state == jobs_pb2.SUCCEEDED, 30, "keyed job")
    time.sleep(0.5)
    mid = admin.status().commit_index
    other_spec = jobs_pb2.JobSpec(command=["false"])
    code, msg = _code(lambda: stub.SubmitJob(
        scheduler_pb2.SubmitJobRequest(spec=other_spec, idempotency_key=key), timeout=10))
    assert code == S.INVALID_ARGUMENT and "idempotency_key" in msg
    assert admin.status().commit_index == mid
    ch.close()


def test_cli_tokens(acl_cluster) -> None:
    import json
    import subprocess
    import sys

    c, _ = acl_cluster

    def cli(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        extra = ["--token", token] if token else []
        return subprocess.run([sys.executable, "-m", "raftsched", "--config", str(c.config_path),
                               *extra, *args], capture_output=True, text=True, timeout=60)

    # no --token: the CLI finds the local cluster's bootstrap token through the config
    r = cli("acl", "token", "create", "--name", "cli-reader", "--role", "reader",
            "--namespace", "team-a", "--json")
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    assert made["role"] == "reader" and made["namespaces"] == ["team-a"]
    r = cli("acl", "whoami", token=made["token"])
    assert r.returncode == 0 and "cli-reader" in r.stdout
    r = cli("submit", "--", "true", token=made["token"])
    assert r.returncode == 4 and "PERMISSION_DENIED" in r.stderr
    r = cli("list", token="not-a-token-" + "x" * 30)
    assert r.returncode == 4 and "UNAUTHENTICATED" in r.stderr
    r = cli("acl", "token", "list")
    assert r.returncode == 0 and "cli-reader" in r.stdout and made["token"] not in r.stdout
    assert cli("acl", "token", "revoke", "cli-reader").returncode == 0
    assert cli("acl", "bootstrap").returncode == 4  # only once per cluster
