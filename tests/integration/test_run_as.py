"""run_as on a real TLS + ACL cluster, with a throwaway user made for the test: the job
runs as that user; a namespace that does not allow the user is refused before anything
is proposed; a node that does not allow it (or does not have it) fails the attempt."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from raftsched.client.acl_client import AclClient
from raftsched.node.runas import scratch_root_path
from raftsched.v1 import jobs_pb2, workflows_pb2, workflows_pb2_grpc
from tests.support import users
from tests.support.cluster import TestCluster, status_of

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

S = grpc.StatusCode


class RunAsCluster:
    def __init__(self, c: TestCluster, user: Any, ghost: str) -> None:
        self.c, self.user, self.ghost = c, user, ghost

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "raftsched", "--config", str(self.c.config_path),
                               *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def ra() -> Iterator[RunAsCluster]:
    users.skip_unless_possible()
    ghost = users.unused_name("ghost")  # allowed everywhere, but no such user on the machine
    with users.throwaway_user() as pw:
        allow = f'allowed_run_as = ["{pw.pw_name}", "{ghost}"]'
        c = TestCluster(n_nodes=3, labels=[{"runas": "yes"}, {"runas": "yes"}, {"runas": "no"}],
                        node_extra=[allow, allow, ""]).start()
        try:
            c.wait_ready()
            with AclClient([c.addr(n.id) for n in c.cfg.nodes], token=c.token, tls=c.tls) as admin:
                admin.set_namespace_policy("default", [pw.pw_name, ghost])
            yield RunAsCluster(c, pw, ghost)
        finally:
            c.close()
            for n in c.cfg.nodes:
                shutil.rmtree(scratch_root_path(n.id, c.cfg.node_data_dir(n.id)), ignore_errors=True)


def spec(run_as: str, where: str, ns: str = "", argv: tuple[str, ...] = ("id", "-u")) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(command=list(argv), run_as=run_as, namespace=ns,
                            constraints=[jobs_pb2.Constraint(key="runas", value=where)],
                            resources=jobs_pb2.Resources(cpu_millis=100, memory_mib=16))


def test_job_runs_as_the_user(ra: RunAsCluster) -> None:
    c, pw = ra.c, ra.user
    r = ra.cli("acl", "namespace", "set", "default", "--run-as", pw.pw_name, "--run-as", ra.ghost)
    assert r.returncode == 0, r.stderr
    r = ra.cli("acl", "namespace", "list")
    assert r.returncode == 0 and pw.pw_name in r.stdout, r
    r = ra.cli("submit", "--run-as", pw.pw_name, "--constraint", "runas=yes", "--", "id", "-u")
    assert r.returncode == 0, r.stderr
    jid = r.stdout.split()[0]
    job = c.wait_terminal([jid])[jid]
    assert job.state == jobs_pb2.SUCCEEDED, job
    assert job.stdout_tail.strip() == str(pw.pw_uid) != "0"
    assert job.spec.run_as == pw.pw_name
    script = 'echo "$HOME $USER"; stat -c %u .; touch "$TMPDIR/x" && echo ok'
    jid = c.client().submit(spec(pw.pw_name, "yes", argv=("/bin/sh", "-c", script)))
    job = c.wait_terminal([jid])[jid]
    assert job.state == jobs_pb2.SUCCEEDED, job
    assert job.stdout_tail.split() == [pw.pw_dir, pw.pw_name, str(pw.pw_uid), "ok"]
    plain = c.client().submit(spec("", "yes"))  # without run_as: the node's own user
    assert c.wait_terminal([plain])[plain].stdout_tail.strip() == "0"


def test_namespace_without_the_permission_is_denied_before_proposing(ra: RunAsCluster) -> None:
    c, pw = ra.c, ra.user
    before = c.quiet_replicas()
    for nid in (c.leader(), c.followers()[0]):
        cl = c.client(nid)
        code, msg = status_of(lambda cl=cl: cl.submit(spec(pw.pw_name, "yes", ns="other")))
        assert code == S.PERMISSION_DENIED, (code, msg)
        assert "run_as" in msg and "'other' does not allow" in msg
        code, msg = status_of(lambda cl=cl: cl.submit_batch([spec("", "yes"),
                                                         spec(pw.pw_name, "yes", ns="other")]))
        assert code == S.PERMISSION_DENIED and "run_as" in msg
        wf = workflows_pb2_grpc.WorkflowsStub(c.channel(nid))
        t = workflows_pb2.Template(name="as-user", spec=spec(pw.pw_name, "yes", ns="other"))
        code, msg = status_of(lambda wf=wf, t=t: wf.CreateTemplate(
            workflows_pb2.PutTemplateRequest(template=t), timeout=10))
        assert code == S.PERMISSION_DENIED and "run_as" in msg
        job = workflows_pb2.WorkflowJobSpec(name="a", spec=spec(pw.pw_name, "yes", ns="other"))
        code, msg = status_of(lambda wf=wf, job=job: wf.SubmitWorkflow(
            workflows_pb2.SubmitWorkflowRequest(name="w", jobs=[job]), timeout=10))
        assert code == S.PERMISSION_DENIED and "run_as" in msg
    # an invalid user name is INVALID_ARGUMENT naming the field
    code, msg = status_of(lambda: c.client().submit(spec("-rf", "yes")))
    assert code == S.INVALID_ARGUMENT and "run_as" in msg
    assert c.quiet_replicas() == before  # nothing reached the log, no replica changed


def test_node_not_allowing_or_not_having_the_user_fails_the_attempt(ra: RunAsCluster) -> None:
    c, pw = ra.c, ra.user
    cl = c.client()
    refused = cl.submit(spec(pw.pw_name, "no"))  # n3 does not allow the user
    unknown = cl.submit(spec(ra.ghost, "yes"))  # n1/n2 allow it, but it does not exist
    done = c.wait_terminal([refused, unknown])
    job = done[refused]
    assert job.state == jobs_pb2.FAILED and job.node_id == "n3", job
    assert f"run_as {pw.pw_name!r}: node n3 does not allow it" in job.reason, job.reason
    job = done[unknown]
    assert job.state == jobs_pb2.FAILED, job
    assert f"run_as {ra.ghost!r}: no such user on node {job.node_id}" in job.reason, job.reason
