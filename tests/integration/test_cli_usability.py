"""The CLI as users expect it (issue 17), against a real 3-node cluster: global flags
after the command, newest-first listings with filters, JSON forms, pipes, watch ends."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from raftsched.v1 import jobs_pb2
from tests.support.cluster import TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


def cli(c: TestCluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI with --config given after the command name, as users type it."""
    return subprocess.run([sys.executable, "-m", "raftsched", args[0], "--config", str(c.config_path),
                           *args[1:]],
                          capture_output=True, text=True, timeout=timeout)


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, (r.args, r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    return r.stdout


def test_global_flags_after_the_command(cluster3: TestCluster) -> None:
    c = cluster3
    f = c.followers()[0]
    jid = ok(cli(c, "submit", "--node", c.addr(f), "--name", "after", "--", "true")).strip()
    c.wait_terminal([jid])
    rows = ok(cli(c, "list", "--node", c.addr(f), "--timeout", "10", "--name", "after"))
    assert jid in rows
    d = json.loads(ok(cli(c, "status", jid, "--node", c.addr(f), "--json")))
    assert d["id"] == jid
    # a wrong token given after the command is the one used
    r = cli(c, "list", "--token", "not-a-token-" + "x" * 30)
    assert r.returncode == 4 and "UNAUTHENTICATED" in r.stderr


def test_list_newest_first_filters_and_json_forms(cluster3: TestCluster) -> None:
    c = cluster3
    client = c.client()
    ids = [client.submit(jobs_pb2.JobSpec(command=["true"], name=f"lst-{i}")) for i in range(4)]
    other = client.submit(jobs_pb2.JobSpec(command=["true"], name="other-lst"))
    c.wait_terminal([*ids, other])

    out = ok(cli(c, "list", "--name", "lst-*"))
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "NAME", "STATE"]
    assert [ln.split()[0] for ln in lines[1:]] == ids[::-1]          # newest first
    assert [ln.split()[1] for ln in lines[1:]] == [f"lst-{i}" for i in (3, 2, 1, 0)]
    out = ok(cli(c, "list", "--name", "lst-*", "--sort", "oldest"))
    assert [ln.split()[0] for ln in out.splitlines()[1:]] == ids

    # pages in newest-first order, with the hint naming the next page
    r = cli(c, "list", "--name", "lst-*", "--limit", "3")
    assert [ln.split()[0] for ln in ok(r).splitlines()[1:]] == ids[:0:-1]
    token = r.stderr.split("--page-token ")[1].split()[0]
    r = cli(c, "list", "--name", "lst-*", "--limit", "3", "--page-token", token)
    assert [ln.split()[0] for ln in ok(r).splitlines()[1:]] == [ids[0]]
    r = cli(c, "list", "--name", "lst-*", "--sort", "oldest", "--page-token", token)
    assert r.returncode == 4 and "other order" in r.stderr

    assert ok(cli(c, "list", "--name", "lst-*", "--since", "1d")).count("lst-") == 4
    assert ok(cli(c, "list", "--name", "lst-*", "--since", "2999-01-01T00:00")).count("lst-") == 0
    assert cli(c, "list", "--since", "yesterday").returncode == 2
    assert ok(cli(c, "list", "--namespace", "nosuch-ns")).splitlines()[1:] == []

    summary = json.loads(ok(cli(c, "list", "--name", "other-lst", "--json")))
    assert summary["total"] == 1
    (s,) = summary["jobs"]
    assert s["id"] == other and s["name"] == "other-lst" and s["state"] == "SUCCEEDED"
    assert s["exit_code"] == 0 and s["command"] == ["true"]
    assert "history" not in s and "spec" not in s
    full = json.loads(ok(cli(c, "list", "--name", "other-lst", "--json", "--full")))["jobs"][0]
    assert [t["state"] for t in full["history"]][-1] == "SUCCEEDED"
    # int64 fields are JSON numbers, as in `watch --json`
    assert isinstance(full["fencing_token"], int) and full["fencing_token"] > 0
    assert isinstance(full["seq"], int) and isinstance(full["spec"]["resources"]["cpu_millis"], int)
    st = json.loads(ok(cli(c, "status", other, "--json")))
    assert st["fencing_token"] == full["fencing_token"]
    assert isinstance(st["attempts"][0]["fencing_token"], int)


def test_pipe_to_head_is_quiet(cluster3: TestCluster) -> None:
    c = cluster3
    c.client().submit_batch([jobs_pb2.JobSpec(command=["true"])] * 300)
    for args in (["list", "--all"], ["list", "--all", "--json", "--full"]):
        p = subprocess.run(
            f"{sys.executable} -m raftsched {' '.join(args)} --config {c.config_path} | head -1",
            shell=True, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and len(p.stdout.splitlines()) == 1
        assert "BrokenPipe" not in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_submit_json_keeps_existing_and_wait_summarises_a_big_batch(cluster3: TestCluster) -> None:
    c = cluster3
    first = json.loads(ok(cli(c, "submit", "--idempotency-key", "k17", "--json", "--", "true")))
    again = json.loads(ok(cli(c, "submit", "--idempotency-key", "k17", "--json", "--", "true")))
    assert first["existing"] is False and again == {"job_ids": first["job_ids"], "existing": True}

    out = ok(cli(c, "submit", "--count", "30", "--wait", "--", "true", timeout=120))
    assert out.splitlines() == ["30 jobs: 30 succeeded"]
    r = cli(c, "submit", "--count", "25", "--wait", "--shell", "--", "exit 3", timeout=120)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0] == "25 jobs: 25 failed" and lines[1].startswith("ID")
    assert len(lines) == 2 + 20 and "5 more did not succeed" in r.stderr


def test_nodes_json_says_null_for_unknown(cluster3: TestCluster) -> None:
    c = cluster3
    f = c.followers()[0]
    d = json.loads(ok(cli(c, "nodes", "--json", "--node", c.addr(f))))
    ages = [n["last_heartbeat_age"] for n in d["nodes"]]
    assert all(a is None or a >= 0 for a in ages), ages
    for r in d["replicas"]:
        assert isinstance(r["applied_index"], int) and isinstance(r["term"], int)


def test_watch_ends_and_resumes_without_gaps(cluster3: TestCluster) -> None:
    c = cluster3
    r = cli(c, "watch", "--until-done")
    assert r.returncode == 2 and "--job" in r.stderr
    r = cli(c, "watch", "--job", "nosuch", "--until-done", timeout=30)
    assert r.returncode == 3 and "not found" in r.stderr

    client = c.client()
    done = client.submit(jobs_pb2.JobSpec(command=["false"]))
    c.wait_terminal([done])
    # already finished: ends at once, showing the job's current state
    out = ok(cli(c, "watch", "--job", done, "--until-done", timeout=30))
    assert done in out and "FAILED" in out

    # --count 3 over a job's changes, then resume: every change exactly once
    jid = client.submit(jobs_pb2.JobSpec(command=["true"]))
    c.wait_terminal([jid])
    base = client.status().commit_index
    first = cli(c, "watch", "--job", jid, "--from", f"{base - 200 if base > 200 else 1}.0",
                "--count", "2", timeout=30)
    if first.returncode == 6:
        pytest.skip("the node's watch buffer no longer covers the job (busy cluster)")
    got = [ln.split()[5] for ln in ok(first).splitlines()]
    hint = first.stderr.split("--from ")[1].split()[0]
    rest = ok(cli(c, "watch", "--job", jid, "--from", hint, "--until-done", timeout=30))
    got += [ln.split()[5] for ln in rest.splitlines()]
    assert got == ["PENDING", "ASSIGNED", "RUNNING", "SUCCEEDED"], (first.stdout, rest)

    # a position this cluster never reached
    r = cli(c, "watch", "--from", f"{base + 10_000_000}.0", timeout=30)
    assert r.returncode == 4 and "ahead of this node's applied index" in r.stderr


def test_bulk_cancel_by_filter_and_dlq_retry_all(cluster3: TestCluster) -> None:
    c = cluster3
    client = c.client()
    slow = client.submit_batch([jobs_pb2.JobSpec(command=["sleep", "300"], name="bulk-slow")] * 3)
    keep = client.submit(jobs_pb2.JobSpec(command=["sleep", "300"], name="keep-me"))
    assert cli(c, "cancel").returncode == 2
    assert cli(c, "cancel", slow[0], "--name", "x").returncode == 2
    # without --yes: shows what matches, changes nothing
    r = cli(c, "cancel", "--name", "bulk-*")
    assert r.returncode == 2 and "3 job(s) match" in r.stderr
    assert all(client.get(j).state not in (jobs_pb2.CANCELLING, jobs_pb2.CANCELLED) for j in slow)
    out = ok(cli(c, "cancel", "--name", "bulk-*", "--yes"))
    assert sorted(ln.split()[0] for ln in out.splitlines()) == sorted(slow)
    c.wait_terminal(slow)
    assert {client.get(j).state for j in slow} == {jobs_pb2.CANCELLED}
    assert client.get(keep).state not in (jobs_pb2.CANCELLING, jobs_pb2.CANCELLED)
    # ids, one of them already finished: the others are cancelled, exit 4 names it
    r = cli(c, "cancel", slow[0], keep)
    assert r.returncode == 4 and slow[0] in r.stderr and "FAILED_PRECONDITION" in r.stderr
    assert client.get(keep).state in (jobs_pb2.CANCELLING, jobs_pb2.CANCELLED)

    dead = client.submit_batch([jobs_pb2.JobSpec(command=["false"], name="bulk-dead", retry=
                                                 jobs_pb2.RetryPolicy(max_attempts=1))] * 2)
    c.wait_terminal(dead)
    assert cli(c, "dlq", "retry").returncode == 2
    r = cli(c, "dlq", "retry", "--all", "--json")
    d = json.loads(ok(r))
    assert set(dead) <= {j["id"] for j in d["jobs"]} and d["refused"] == []
    for jid in dead:  # put back: a new attempt (which fails and dies again)
        c.wait_until(lambda jid=jid: client.get(jid).attempt >= 2, 30, "a retried dead job")


def test_cluster_up_stops_its_nodes_on_sigterm(tmp_path) -> None:
    """`cluster up` ended by SIGTERM (a service manager, `kill`) stops its nodes like
    Ctrl-C does; it used to exit and leave them running."""
    import contextlib
    import os
    import signal
    import time

    from raftsched import config as configmod
    from raftsched.client.client import Client
    from raftsched.client.credentials import local_files, read_token
    from raftsched.dev.launcher import write_config
    from raftsched.node.acl_bootstrap import ensure_local_token

    cfg = configmod.load(write_config(tmp_path, 3))
    up = subprocess.Popen([sys.executable, "-m", "raftsched", "--config", str(cfg.path), "cluster", "up"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            kids = subprocess.run(["pgrep", "-P", str(up.pid)], capture_output=True, text=True).stdout
            pids = [int(p) for p in kids.split()]
            if len(pids) == 3 and (cfg.data_dir / "tls" / "client.pem").exists():
                break
            time.sleep(0.2)
        token = read_token(ensure_local_token(cfg.data_dir))
        with Client([n.grpc for n in cfg.nodes], tls=local_files(cfg.data_dir), token=token) as c:
            c.wait_for_leader(60)
        up.send_signal(signal.SIGTERM)
        assert up.wait(30) == 0, up.stderr.read() if up.stderr else ""
        for pid in pids:  # every node process is gone (not merely orphaned)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError(f"node process {pid} still runs after cluster up ended")
    finally:
        if up.poll() is None:
            up.kill()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
