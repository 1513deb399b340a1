"""Python task jobs (issue 14) on a real 3-node TLS + ACL cluster: the warm worker pool,
return values through `raftsched.Client`, exceptions, retries, timeouts, cancel, a worker
SIGKILLed mid-task, the decorator, DAGs and cron with Python tasks, and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import raftsched
from raftsched.v1 import jobs_pb2, workflows_pb2
from tests.support import pytasks_funcs
from tests.support.cluster import TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]  # the pools import tests.support.pytasks_funcs from here
F = "tests.support.pytasks_funcs"
FAST_RETRY = jobs_pb2.RetryPolicy(max_attempts=3, initial_delay_seconds=0.1, multiplier=1.0)


@pytest.fixture(scope="module")
def tc() -> Iterator[TestCluster]:
    pool = f'python_path = ["{ROOT}"]\npython_workers = 2'
    # n1 recycles its workers after 3 tasks, n2 above 100 MiB RSS
    c = TestCluster(3, labels=[{"name": f"n{i}"} for i in (1, 2, 3)],
                    node_extra=[pool + "\npython_max_tasks = 3", pool + "\npython_max_rss_mib = 100", pool]
                    ).start()
    try:
        c.wait_ready()
        yield c
    finally:
        c.close()


def client_of(tc: TestCluster, *node_ids: str) -> raftsched.Client:
    """The public client, with the TLS files and token given explicitly."""
    assert tc.tls is not None and tc.tls.cert is not None and tc.tls.key is not None
    return raftsched.Client([tc.addr(n) for n in node_ids or ("n1", "n2", "n3")], ca=str(tc.tls.ca),
                            cert=str(tc.tls.cert), key=str(tc.tls.key), token=tc.token)


def pool_pids(tc: TestCluster, node_id: str) -> set[int]:
    """Live Python worker processes of one node of this cluster (from their environment)."""
    home = f"HOME={tc.cfg.node_data_dir(node_id)}/pytasks".encode()
    out = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            if b"raftsched.node.pytasks.child" not in cmd:
                continue
            env = (d / "environ").read_bytes().split(b"\0")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if home in env and state != "Z":
            out.add(int(d.name))
    return out


def on(node_id: str) -> list[tuple[str, str, str]]:
    return [("name", "eq", node_id)]


def test_result_through_a_follower_with_job_hygiene(tc: TestCluster) -> None:
    follower = tc.followers()[0]
    with client_of(tc, follower) as c:
        assert c.result(c.submit(python=f"{F}:add", args=[1, 2]), timeout=60) == 3
        jid = c.submit(python=f"{F}:describe", kwargs={"tag": "t"})
        r = c.result(jid, timeout=60)
        job = c.get(jid)
    assert job.state == jobs_pb2.SUCCEEDED and json.loads(job.result_json) == r
    assert (r["job_id"], r["attempt"], r["token"], r["node"]) == (jid, job.attempt, job.fencing_token,
                                                                  job.node_id)
    scratch = str(tc.cfg.node_data_dir(job.node_id) / "scratch" / f"{jid}.{job.attempt}")
    assert r["scratch"] == r["cwd"] == scratch
    # the same minimal environment as a subprocess job: nothing of the node's own
    assert set(r["env"]) == {"PATH", "HOME", "LANG", "TMPDIR", "RAFTSCHED_JOB_ID", "RAFTSCHED_ATTEMPT",
                             "RAFTSCHED_FENCING_TOKEN", "RAFTSCHED_NODE_ID"}
    assert r["env"]["HOME"] == scratch and r["env"]["RAFTSCHED_FENCING_TOKEN"] == str(job.fencing_token)
    assert r["pid"] in pool_pids(tc, job.node_id)  # ran in the warm pool, not a fresh process
    assert f"hello from {jid}" in job.stdout_tail


def test_exception_fails_with_traceback_and_is_retried(tc: TestCluster, tmp_path: Path) -> None:
    with client_of(tc) as c:
        once = c.submit(python=f"{F}:fail_until", args=[99, str(tmp_path / "once")])
        with pytest.raises(raftsched.TaskError) as e:
            c.result(once, timeout=60)
        assert e.value.job.state == jobs_pb2.FAILED
        assert "raised ValueError: boom on attempt 1" in e.value.reason
        assert "ValueError: boom on attempt 1" in e.value.traceback
        assert "pytasks_funcs.py" in e.value.traceback  # the tail of the real traceback

        ledger = tmp_path / "retried"
        jid = c.submit(python=f"{F}:fail_until", args=[3, str(ledger)], retry=FAST_RETRY)
        assert c.result(jid, timeout=60) == {"attempt": 3, "token": c.get(jid).fencing_token}
        job = c.get(jid)
    assert [a.outcome for a in job.attempts] == ["FAILED", "FAILED", "SUCCEEDED"]
    assert all("raised ValueError" in a.reason for a in job.attempts[:2])
    tokens = [int(line.split()[1]) for line in ledger.read_text().splitlines()]
    assert len(tokens) == 3 and tokens == sorted(set(tokens))  # each attempt fenced anew


def test_timeout_kills_and_replaces_the_worker(tc: TestCluster, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    before = pool_pids(tc, "n2")
    assert len(before) == 2
    with client_of(tc) as c:
        jid = c.submit(python=f"{F}:sleep_then", args=[60, str(ledger)], timeout=1.0,
                       constraints=on("n2"))
        job = c.wait(jid, timeout=60)
        assert job.state == jobs_pb2.TIMED_OUT, job.reason
        pid = int(ledger.read_text().split()[2])
        assert pid in before
        tc.wait_until(lambda: pid not in pool_pids(tc, "n2"), 20, "the timed-out worker to be killed")
        tc.wait_until(lambda: len(pool_pids(tc, "n2")) == 2, 20, "the pool to refill")
        # the pool keeps serving on that node
        assert c.result(c.submit(python=f"{F}:add", args=[2, 3], constraints=on("n2")), 60) == 5


def test_sigkill_of_a_worker_mid_task_requeues_fenced_and_refills(tc: TestCluster,
                                                                   tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    with client_of(tc) as c:
        jid = c.submit(python=f"{F}:sleep_then", args=[2, str(ledger)], retry=FAST_RETRY,
                       constraints=on("n3"))
        tc.wait_until(lambda: ledger.exists() and ledger.read_text().strip() != "", 60, "the task to start")
        attempt, token, pid = map(int, ledger.read_text().split())
        assert pid in pool_pids(tc, "n3")
        os.kill(pid, signal.SIGKILL)
        r = c.result(jid, timeout=60)
        job = c.get(jid)
    assert r["attempt"] == attempt + 1 and r["token"] > token and r["pid"] != pid
    first = job.attempts[0]
    assert (first.outcome, first.fencing_token) == ("FAILED", token)
    assert "Python worker died (signal 9)" in first.reason
    tc.wait_until(lambda: len(pool_pids(tc, "n3")) == 2 and pid not in pool_pids(tc, "n3"), 20,
                  "the pool to refill")


def test_cancel_kills_the_running_task(tc: TestCluster, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    with client_of(tc) as c:
        jid = c.submit(python=f"{F}:sleep_then", args=[60, str(ledger)], constraints=on("n1"))
        tc.wait_until(lambda: ledger.exists() and ledger.read_text().strip() != "", 60, "the task to start")
        pid = int(ledger.read_text().split()[2])
        # nothing changes meanwhile (no stream message): wait still gives up at its timeout
        with pytest.raises(TimeoutError):
            c.wait(jid, timeout=1.0)
        c.cancel(jid)
        assert c.wait(jid, timeout=60).state == jobs_pb2.CANCELLED
    tc.wait_until(lambda: pid not in pool_pids(tc, "n1"), 20, "the worker to be killed")
    tc.wait_until(lambda: len(pool_pids(tc, "n1")) == 2, 20, "the pool to refill")


def test_bad_results_and_requests(tc: TestCluster) -> None:
    with client_of(tc) as c:
        big = c.submit(python=f"{F}:big_result", args=[200_000])
        with pytest.raises(raftsched.TaskError, match="at most 65536"):
            c.result(big, timeout=60)
        odd = c.submit(python=f"{F}:not_json")
        with pytest.raises(raftsched.TaskError, match="not JSON-serialisable"):
            c.result(odd, timeout=60)
        missing = c.submit(python="tests.support.no_such_module:f")
        with pytest.raises(raftsched.TaskError, match="ModuleNotFoundError"):
            c.result(missing, timeout=60)
        for spec, field in [
            (jobs_pb2.JobSpec(python=jobs_pb2.PythonCall(target="no_colon")), "python.target"),
            (jobs_pb2.JobSpec(python=jobs_pb2.PythonCall(target="a.b:c", args_json="{")), "python.args_json"),
            (jobs_pb2.JobSpec(python=jobs_pb2.PythonCall(target="a.b:c", kwargs_json="[1]")),
             "python.kwargs_json"),
            (jobs_pb2.JobSpec(python=jobs_pb2.PythonCall(target="a.b:c", args_json="[" + "1," * 40_000 + "1]")),
             "python.args_json"),
            (jobs_pb2.JobSpec(command=["true"], python=jobs_pb2.PythonCall(target="a.b:c")), "python.target"),
        ]:
            with pytest.raises(grpc.RpcError) as e:
                c.submit(spec=spec)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert field in e.value.details()


def test_decorator_submit_many_dag_and_cron(tc: TestCluster) -> None:
    with client_of(tc) as c:
        jid = pytasks_funcs.mul.submit(c, 6, 7)
        assert c.result(jid, timeout=60) == 42
        spec = c.get(jid).spec
        assert (spec.priority, spec.retry.max_attempts, spec.timeout_seconds) == (5, 2, 20)
        assert pytasks_funcs.mul(2, 3) == 6  # still a plain function locally

        ids = c.submit_many([pytasks_funcs.mul.spec(i, i) for i in range(5)]
                            + [{"python": f"{F}:add", "args": [10, 20]}])
        assert [c.result(i, timeout=60) for i in ids] == [0, 1, 4, 9, 16, 30]

        wf = c.submit_dag("py-dag", {"a": pytasks_funcs.mul.spec(2, 2),
                                     "b": (pytasks_funcs.mul.spec(3, 3), ["a"])})
        done = c.wait_all(list(wf.job_ids), timeout=60)
        assert [json.loads(done[j].result_json) for j in wf.job_ids] == [4, 9]

        c.add_cron("py-cron", "* * * * * *", pytasks_funcs.mul.spec(5, 5))
        try:
            tc.wait_until(lambda: any(j.schedule_id == "py-cron" and j.state == jobs_pb2.SUCCEEDED
                                      for j in c.list()), 60, "a cron run of a Python task")
        finally:
            c.workflows.call("DeleteSchedule", workflows_pb2.ScheduleRef(id="py-cron"))
        runs = [j for j in c.list(["SUCCEEDED"]) if j.schedule_id == "py-cron"]
        assert json.loads(runs[0].result_json) == 25


def test_cli_submit_python_and_result(tc: TestCluster) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "raftsched", "--config", str(tc.config_path), *args],
                              capture_output=True, text=True, timeout=60)

    sub = cli("submit", "--python", f"{F}:add", "--args", "[1, 2]", "--kwargs", "{}")
    assert sub.returncode == 0, sub.stderr
    res = cli("result", sub.stdout.strip())
    assert (res.returncode, res.stdout.strip()) == (0, "3"), res.stderr
    status = cli("status", sub.stdout.strip())
    assert f"python     {F}:add  args [1, 2]" in status.stdout and "result     3" in status.stdout

    sub = cli("submit", "--python", f"{F}:fail_until", "--args", json.dumps([9, "/dev/null"]))
    res = cli("result", sub.stdout.strip())
    assert res.returncode == 1 and "FAILED" in res.stderr and "ValueError: boom" in res.stderr

    bad = cli("submit", "--python", f"{F}:add", "--args", "[1,")
    assert bad.returncode == 4 and "python.args_json" in bad.stderr


def test_workers_are_recycled_after_n_tasks_and_on_memory_growth(tc: TestCluster) -> None:
    with client_of(tc) as c:
        pids = [c.result(c.submit(python=f"{F}:pid", constraints=on("n1")), 60) for _ in range(8)]
        # 8 tasks on 2 workers that retire after 3 tasks each: more than 2 processes served them
        assert len(set(pids)) >= 3, pids
        tc.wait_until(lambda: len(pool_pids(tc, "n1")) == 2, 20, "the pool to refill")
        small = c.result(c.submit(python=f"{F}:hog", args=[1], constraints=on("n2")), 60)
        hog = c.result(c.submit(python=f"{F}:hog", args=[150], constraints=on("n2")), 60)
        tc.wait_until(lambda: hog not in pool_pids(tc, "n2"), 20, "the grown worker to be retired")
        tc.wait_until(lambda: len(pool_pids(tc, "n2")) == 2, 20, "the pool to refill")
        assert small == hog or small in pool_pids(tc, "n2")  # a worker below the limit stays


def test_client_moves_on_after_unavailable_with_the_same_request_id(tc: TestCluster) -> None:
    from raftsched.dev.launcher import free_ports

    assert tc.tls is not None and tc.tls.cert is not None and tc.tls.key is not None
    dead = f"127.0.0.1:{free_ports(1)[0]}"  # nothing listens there: UNAVAILABLE, next node
    with raftsched.Client([dead, tc.addr(tc.followers()[0])], ca=str(tc.tls.ca), cert=str(tc.tls.cert),
                          key=str(tc.tls.key), token=tc.token, timeout=30) as c:
        first = c.submit(python=f"{F}:add", args=[4, 5], request_id="pytasks-same-rid")
        again = c.submit(python=f"{F}:add", args=[4, 5], request_id="pytasks-same-rid")
        assert first == again  # applied once
        assert c.result(first, timeout=60) == 9
        assert c.addresses[0] == dead and c.jobs._current % 2 == 1  # it did move on


def test_async_client(tc: TestCluster) -> None:
    assert tc.tls is not None and tc.tls.cert is not None and tc.tls.key is not None
    tls = {"ca": str(tc.tls.ca), "cert": str(tc.tls.cert), "key": str(tc.tls.key), "token": tc.token}

    async def main() -> None:
        async with raftsched.AsyncClient([tc.addr(n) for n in tc.followers()], **tls) as c:
            ids = [await c.submit(python=f"{F}:add", args=[i, 1]) for i in range(3)]
            ids += await c.submit_many([pytasks_funcs.mul.spec(4, 4)])
            assert await asyncio.gather(*(c.result(i, timeout=60) for i in ids)) == [1, 2, 3, 16]
            bad = await c.submit(python=f"{F}:fail_until", args=[9, "/dev/null"])
            with pytest.raises(raftsched.TaskError, match="boom"):
                await c.result(bad, timeout=60)
            assert (await c.get(ids[0])).state == jobs_pb2.SUCCEEDED

    asyncio.run(main())
