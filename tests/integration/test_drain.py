"""Drain and eligibility on a real 3-node cluster (issue 15), through the CLI as an
operator types it: a draining node takes no new jobs while its running ones go on; a
short job there finishes normally; at the (forced) deadline the long job is stopped
and requeued elsewhere, its attempt count grows, its retry budget does not, and its
two attempts never run at the same time; `eligibility --enable` brings the node back."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import uuid

import grpc
import pytest

from raftsched.client.acl_client import AclClient
from raftsched.client.client import Client
from raftsched.client.observe_client import ClusterWatcher
from raftsched.v1 import events_pb2, jobs_pb2
from tests.integration.test_isolation import marked, sh, wait_gone
from tests.support.cluster import TestCluster, status_of

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


def cli(c: TestCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "raftsched", "--config", str(c.config_path), *args],
                          capture_output=True, text=True, timeout=60)


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, (r.args, r.returncode, r.stdout, r.stderr)
    return r.stdout


SLEEPER = """
import fcntl, signal, sys, time
tag, ledger, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
def note(kind):
    with open(ledger, "a") as f:
        f.write(f"{kind} {tag} {time.time()}\\n")
def term(*_):
    note("end")
    sys.exit(143)
signal.signal(signal.SIGTERM, term)
lock = open(ledger + ".lock", "a")
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    note("overlap")
note("start")
time.sleep(seconds)
note("end")
"""


def sleeper(c: TestCluster, marker: str, seconds: float, **kw) -> jobs_pb2.JobSpec:
    """A job whose process carries `marker-<attempt>` in its command line and writes its
    start and end (also when stopped with SIGTERM, if its handler runs before the kill
    grace ends in SIGKILL) to the ledger `marker.ledger`. It holds a flock on
    `marker.ledger.lock` while it lives (the kernel releases it when the process dies,
    however): an "overlap" line means another attempt of the job was still alive."""
    script = c.root / "sleeper.py"
    script.write_text(SLEEPER)
    return sh(f"exec {sys.executable} {script} {marker}-$RAFTSCHED_ATTEMPT {c.root / marker}.ledger "
              f"{seconds}", **kw)


def started_run(c: TestCluster, marker: str, tag: str) -> dict[str, dict[str, float]]:
    """The ledger once the run `tag` has written its start."""
    c.wait_until(lambda: "start" in ledger(c, marker).get(tag, {}), 20, f"{tag} started")
    return ledger(c, marker)


def ledger(c: TestCluster, marker: str) -> dict[str, dict[str, float]]:
    """tag -> {"start": t, "end": t} from the ledger the sleepers of `marker` wrote."""
    out: dict[str, dict[str, float]] = {}
    for line in (c.root / f"{marker}.ledger").read_text().splitlines():
        kind, tag, t = line.split()
        out.setdefault(tag, {})[kind] = float(t)
    return out


def after(runs: dict[str, dict[str, float]], first: str, then: str) -> None:
    """Run `then` started after `first` was gone: its flock was free (no "overlap"), and
    `first` ended before it if it wrote its end. It may not have: under heavy load its
    SIGTERM handler can miss the kill grace (SIGKILL then, by design), or the lease
    watchdog SIGKILLs it; the flock is released on any death."""
    assert "start" in runs[first] and "start" in runs[then], runs
    assert "overlap" not in runs[then], f"{then} started while {first} was alive: {runs}"
    assert runs[first].get("end", runs[first]["start"]) <= runs[then]["start"], runs


def watch_cluster(c: TestCluster, nid: str) -> tuple[list[events_pb2.ClusterEvent], ClusterWatcher]:
    """WatchCluster on `nid` from a thread: the events seen so far (a list it keeps
    appending to) and the watcher (cancel it at the end)."""
    events: list[events_pb2.ClusterEvent] = []
    watcher = ClusterWatcher([c.addr(nid)], token=c.token, tls=c.tls)

    def watch() -> None:
        with contextlib.suppress(Exception):  # cancelled by the caller
            for ev in watcher.events():
                events.append(ev)

    threading.Thread(target=watch, daemon=True).start()
    return events, watcher


def scheduling(client: Client, nid: str) -> str:
    return next(n.scheduling for n in client.nodes() if n.id == nid)


def test_drain_requeues_at_the_deadline_and_eligibility_brings_the_node_back() -> None:
    c = TestCluster(n_nodes=3).start()
    try:
        c.wait_ready()
        client = c.client()
        events, watcher = watch_cluster(c, "n3")
        # only n2 eligible: the long and the short job go there
        for nid in ("n1", "n3"):
            assert ok(cli(c, "node", "eligibility", nid, "--disable")).strip() == f"{nid}: ineligible"
        m = f"drain-{uuid.uuid4().hex[:8]}"
        long_id = client.submit(sleeper(c, m, 600, retry=jobs_pb2.RetryPolicy(max_attempts=2)))
        short_id = client.submit(sleeper(c, f"{m}s", 12))
        c.wait_until(lambda: all(client.get(j).state == jobs_pb2.RUNNING for j in (long_id, short_id)),
                     30, "both jobs running on n2")
        assert {client.get(j).node_id for j in (long_id, short_id)} == {"n2"}
        for nid in ("n1", "n3"):
            assert ok(cli(c, "node", "eligibility", nid, "--enable")).strip() == f"{nid}: eligible"

        out = ok(cli(c, "node", "drain", "n2", "--deadline", "30s"))
        assert out.startswith("n2: draining (2 running, deadline "), (out, client.get(long_id), client.get(short_id))
        # new jobs go to the other nodes; explain/plan say why not n2
        plan = ok(cli(c, "plan", "--", "true"))
        assert "ineligible" in plan and "draining" in plan, plan
        quick = client.submit_batch([jobs_pb2.JobSpec(command=["true"])] * 4)
        done = c.wait_terminal(quick, timeout=60, client=client)
        assert all(j.state == jobs_pb2.SUCCEEDED and j.node_id in ("n1", "n3") for j in done.values())
        # the short job on n2 finishes normally; the long one keeps running there
        short = c.wait_terminal([short_id], timeout=30, client=client)[short_id]
        assert short.state == jobs_pb2.SUCCEEDED and short.node_id == "n2" and short.attempt == 1
        job = client.get(long_id)
        assert job.state == jobs_pb2.RUNNING and job.node_id == "n2" and job.attempt == 1
        assert marked(f"{m}-1")
        table = ok(cli(c, "nodes"))
        assert "draining (1 running, deadline" in next(ln for ln in table.splitlines() if ln.startswith("n2 "))
        info = json.loads(ok(cli(c, "nodes", "--json")))
        n2 = next(n for n in info["nodes"] if n["id"] == "n2")
        assert n2["scheduling"] == "draining" and n2["draining"] and not n2.get("eligible", False)

        # WatchCluster saw the changes (committed entries, from a follower's replica too)
        c.wait_until(lambda: any(e.kind == events_pb2.NODE_SCHEDULING and e.node_id == "n2"
                                 and e.reason.startswith("draining") for e in list(events)), 20,
                     "a NODE_SCHEDULING event for the drain")
        kinds = [(e.node_id, e.reason) for e in list(events) if e.kind == events_pb2.NODE_SCHEDULING]
        assert ("n1", "ineligible") in kinds and ("n1", "eligible") in kinds, kinds
        watcher.cancel()

        # a shorter deadline: when it passes, the leader stops the long job, then requeues it
        ok(cli(c, "node", "drain", "n2", "--deadline", "2s"))
        c.wait_until(lambda: client.get(long_id).attempt >= 2
                     and client.get(long_id).state == jobs_pb2.RUNNING, 40, "the long job running again")
        job = client.get(long_id)
        assert job.node_id in ("n1", "n3") and job.attempt == 2
        assert job.failures == 0, "a drained attempt used the retry budget"
        first = [a for a in job.attempts if a.attempt == 1]
        assert first and first[0].outcome == "LOST" and first[0].node_id == "n2", job.attempts
        assert "drain" in first[0].reason
        # no overlap: attempt 1 was over (its process gone, reported) before attempt 2 was assigned
        assert first[0].finished_at <= job.assigned_at
        assert not marked(f"{m}-1") and marked(f"{m}-2")
        after(started_run(c, m, f"{m}-2"), f"{m}-1", f"{m}-2")
        c.wait_until(lambda: scheduling(client, "n2") == "drained", 20, "n2 drained")
        assert "drained" in ok(cli(c, "nodes"))

        # --enable: n2 takes jobs again (the others made ineligible so it must be n2)
        ok(cli(c, "node", "eligibility", "n2", "--enable"))
        assert scheduling(client, "n2") == "eligible"
        for nid in ("n1", "n3"):
            ok(cli(c, "node", "eligibility", nid, "--disable"))
        back = client.submit(jobs_pb2.JobSpec(command=["true"]))
        j = c.wait_terminal([back], timeout=30, client=client)[back]
        assert j.state == jobs_pb2.SUCCEEDED and j.node_id == "n2"
        # running jobs are untouched by --disable: the long job still runs on its node
        assert client.get(long_id).state == jobs_pb2.RUNNING and client.get(long_id).attempt == 2
        # --force: the deadline is now
        ok(cli(c, "node", "eligibility", "n1", "--enable"))
        nid = client.get(long_id).node_id
        ok(cli(c, "node", "drain", nid, "--force"))
        c.wait_until(lambda: client.get(long_id).attempt >= 3
                     and client.get(long_id).state == jobs_pb2.RUNNING, 40, "the long job moved again")
        job = client.get(long_id)
        assert job.node_id != nid and job.failures == 0 and job.state == jobs_pb2.RUNNING
        after(started_run(c, m, f"{m}-3"), f"{m}-2", f"{m}-3")
        client.cancel(long_id)
        c.wait_terminal([long_id], timeout=30, client=client)
        wait_gone(c, m)
    finally:
        c.close()


def test_refusals_name_the_node_the_field_and_the_role() -> None:
    c = TestCluster(n_nodes=3).start()
    try:
        c.wait_ready()
        client = c.client()
        r = cli(c, "node", "drain", "n9", "--deadline", "10m")
        assert r.returncode == 3 and "n9" in r.stderr and "NOT_FOUND" in r.stderr, r.stderr
        r = cli(c, "node", "eligibility", "n9", "--disable")
        assert r.returncode == 3 and "n9" in r.stderr, r.stderr
        r = cli(c, "node", "drain", "n2", "--deadline", "soon")
        assert r.returncode == 2 and "--deadline" in r.stderr, r.stderr
        code, msg = status_of(lambda: client.drain_node("n2", -5))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "deadline_seconds" in msg
        code, msg = status_of(lambda: client.drain_node("n2", 60, force=True))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "deadline_seconds" in msg
        code, msg = status_of(lambda: client.drain_node("", 60))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "node_id" in msg
        admin = AclClient([c.addr("n1")], token=c.token, tls=c.tls)
        addrs = [c.addr(n.id) for n in c.cfg.nodes]
        for name, role, nss in (("ops-a", "operator", ["team-a"]), ("sub", "submitter", ["*"])):
            secret, _ = admin.create_token(name, role, nss)
            other = Client(addrs, tls=c.tls, token=secret)
            code, msg = status_of(lambda o=other: o.drain_node("n2", 60))
            assert code == grpc.StatusCode.PERMISSION_DENIED and name in msg, msg
            other.close()
        secret, _ = admin.create_token("ops", "operator", ["*"])
        ops = Client(addrs, tls=c.tls, token=secret)
        assert ops.set_node_eligibility("n2", False).scheduling == "ineligible"
        assert ops.set_node_eligibility("n2", True).scheduling == "eligible"
        ops.close()
        # nothing was changed by the refused calls
        assert all(n.scheduling == "eligible" for n in client.nodes())
    finally:
        c.close()
