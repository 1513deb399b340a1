"""Backup and restore on real 3-node TLS clusters (`raftsched operator snapshot`).

A cluster with jobs in several states (succeeded, failed, running, pending for want of
capacity where its constraint allows it), a template and a paused cron schedule is
backed up from a follower with --consistent; the backup's index and digest are those
every replica reports. The cluster is stopped, the backup restored into a NEW cluster
(new data dirs, new ports, new certificates): every node's seeded snapshot holds a
state with the backup's digest; started, the nodes continue from the backup's index,
agree, hold the same jobs, template and schedule; the running attempt is returned to
PENDING by the node-restart path and runs again under a new fencing token; new
submissions work. A restore into used data dirs, and of a damaged file, is refused
with nothing written.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raftsched.client import backup
from raftsched.client.workflows_client import WorkflowsClient
from raftsched.core import apply  # noqa: F401  (registers every state extension, as a node does)
from raftsched.core.state import ClusterState
from raftsched.replica.durable import read_snapshot
from raftsched.v1 import jobs_pb2
from raftsched.v1 import workflows_pb2 as wpb
from tests.support.cluster import TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

LABELS = [{"zone": "a"}, {"zone": "b"}, {"zone": "c"}]


def cli(c: TestCluster, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--token", token] if token else []
    return subprocess.run([sys.executable, "-m", "raftsched", "--config", str(c.config_path), *extra,
                           *args], capture_output=True, text=True, timeout=60)


def wclient(c: TestCluster) -> WorkflowsClient:
    return WorkflowsClient([c.addr(n.id) for n in c.cfg.nodes], token=c.token, tls=c.tls)


def zone_c(cpu: int, *cmd: str) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(command=list(cmd), resources=jobs_pb2.Resources(cpu_millis=cpu, memory_mib=16),
                            constraints=[jobs_pb2.Constraint(key="zone", op="eq", value="c")])


def populate(c: TestCluster) -> dict[str, str]:
    cl = c.client()
    ids = {"ok": cl.submit(jobs_pb2.JobSpec(command=["true"])),
           "failed": cl.submit(jobs_pb2.JobSpec(command=["sh", "-c", "exit 3"]))}
    c.wait_terminal([ids["ok"], ids["failed"]])
    ids["running"] = cl.submit(zone_c(100, "sleep", "300"))
    c.wait_until(lambda: cl.get(ids["running"]).state == jobs_pb2.RUNNING, what="sleep job running")
    # the only zone-c node has 1900 of 2000 millicores free: this one waits
    ids["pending"] = cl.submit(zone_c(2000, "true"))
    wc = wclient(c)
    wc.call("CreateTemplate", wpb.PutTemplateRequest(template=wpb.Template(
        name="nightly", spec=jobs_pb2.JobSpec(command=["echo", "night"]), description="kept")))
    ids["schedule"] = wc.add_schedule(wpb.Schedule(
        id="yearly", cron="0 0 1 1 *", spec=jobs_pb2.JobSpec(command=["true"]), paused=True)).id
    wc.close()
    return ids


def test_save_restore_into_a_new_cluster(tmp_path: Path) -> None:
    old = TestCluster(labels=LABELS)
    new = TestCluster(labels=LABELS)
    try:
        old.start()
        old.wait_ready()
        ids = populate(old)
        quiet = old.quiet_replicas()
        follower = old.followers()[0]
        f = tmp_path / "state.rsb"
        out = cli(old, "--node", old.addr(follower), "--consistent", "operator", "snapshot", "save",
                  str(f))
        assert out.returncode == 0, out.stderr
        h = backup.verify(f)
        assert h["node_id"] == follower and h["cluster_name"] == "test"
        assert h["node_ids"] == ["n1", "n2", "n3"] and h["term"] >= 1
        # the backup is the replicas' state at that index, as `raftsched nodes` reports it
        assert quiet == {(h["applied_index"], h["state_digest"])}
        assert f"applied index {h['applied_index']}" in out.stdout
        assert h["state_digest"] in out.stdout and f"{h['job_count']} jobs" in out.stdout
        assert h["job_count"] == 4
        insp = cli(old, "--json", "operator", "snapshot", "inspect", str(f))
        assert insp.returncode == 0, insp.stderr
        assert json.loads(insp.stdout)["payload_sha256"] == h["payload_sha256"]
        _, saved = backup.load(f)
        before = {w["id"]: w for w in saved["jobs"]}
        for nid in list(old.procs):
            old.stop_node(nid)

        # a restore into used data dirs is refused, nothing written
        refused = cli(old, "operator", "snapshot", "restore", str(f))
        assert refused.returncode == 4 and "not empty" in refused.stderr, refused.stderr
        assert "raft.journal" in refused.stderr

        # into the new cluster: seeded snapshots digest to the backup's digest
        out = cli(new, "operator", "snapshot", "restore", str(f))
        assert out.returncode == 0, out.stderr
        for n in new.cfg.nodes:
            snap = new.cfg.node_data_dir(n.id) / "raft.snapshot"
            assert (snap.stat().st_mode & 0o777) == 0o600
            data = read_snapshot(str(snap))
            assert data[1][1] == h["applied_index"]
            assert ClusterState.from_dict(data[0][1]).digest() == h["state_digest"]
        # ACL tokens are part of the state: the old cluster's token is the one that works
        new.token = old.token
        new.start()
        new.wait_ready()
        # the new cluster goes on from the restored index: its first leader's entry (a
        # no-op) commits after the election, with an fsync; wait for every replica to
        # apply it (wait_ready returns as soon as a leader is known)
        new.wait_until(lambda: all(r.applied_index > h["applied_index"] for r in
                                   new.client().status(include_replicas=True).replicas),
                       timeout=30, what="the new cluster's first entry applied everywhere")
        reps = new.replicas_identical()
        assert all(r.applied_index > h["applied_index"] for r in reps)
        cl = new.client()
        for key in ("ok", "failed"):
            j = cl.get(ids[key])
            assert j.state == (jobs_pb2.SUCCEEDED if key == "ok" else jobs_pb2.FAILED)
            assert j.attempt == before[ids[key]].get("attempt", 0)
        assert cl.get(ids["pending"]).state == jobs_pb2.PENDING
        # the running attempt died with the old cluster: returned to PENDING when its node
        # registered, then run again with a newer fencing token
        old_token = before[ids["running"]].get("fencing_token", 0)
        new.wait_until(lambda: (j := cl.get(ids["running"])).state == jobs_pb2.RUNNING
                       and j.fencing_token > old_token, timeout=30, what="sleep job rerun")
        j = cl.get(ids["running"])
        assert any("restarted" in t.reason or "down" in t.reason for t in j.history), j.history
        wc = wclient(new)
        assert wc.call("GetTemplate", wpb.GetTemplateRequest(name="nightly")).description == "kept"
        assert wc.schedule("yearly").paused
        wc.close()
        # new submissions work, and job ids continue after the restored ones
        nid = cl.submit(jobs_pb2.JobSpec(command=["true"]))
        assert nid not in before
        assert new.wait_terminal([nid])[nid].state == jobs_pb2.SUCCEEDED
        # a second backup of the new cluster holds the restored terminal jobs unchanged
        g = tmp_path / "again.rsb"
        h2 = cl.save_snapshot(str(g), consistent=True)
        assert h2["applied_index"] > h["applied_index"]
        _, again = backup.load(g)
        after = {w["id"]: w for w in again["jobs"]}
        assert after[ids["ok"]] == before[ids["ok"]] and after[ids["failed"]] == before[ids["failed"]]
    finally:
        old.close()
        new.close()


def test_consistent_save_then_damaged_file_and_used_dirs_refused(tmp_path: Path) -> None:
    c = TestCluster()
    try:
        c.start()
        c.wait_ready()
        leader = c.leader()
        follower = c.followers()[0]
        jid = c.client(leader).submit(jobs_pb2.JobSpec(command=["true"]))
        # --consistent: the follower's backup includes the write the leader just acknowledged
        f = tmp_path / "s.rsb"
        h = c.client(follower).save_snapshot(str(f), consistent=True)
        assert h["node_id"] == follower and h["job_count"] == 1
        assert [w["id"] for w in backup.load(f)[1]["jobs"]] == [jid]
        # a non-admin token is refused
        reader = cli(c, "acl", "token", "create", "--name", "r", "--role", "reader", "--json")
        assert reader.returncode == 0, reader.stderr
        secret = json.loads(reader.stdout)["token"]
        denied = cli(c, "operator", "snapshot", "save", str(tmp_path / "x.rsb"), token=secret)
        assert denied.returncode != 0 and "PERMISSION_DENIED" in denied.stderr, denied.stderr
        assert not (tmp_path / "x.rsb").exists()
    finally:
        c.close()
    bad = tmp_path / "bad.rsb"
    shutil.copy(f, bad)
    raw = bytearray(bad.read_bytes())
    raw[-10] ^= 0xFF
    bad.write_bytes(bytes(raw))
    target = TestCluster()
    try:
        out = cli(target, "operator", "snapshot", "inspect", str(bad))
        assert out.returncode == 4 and "checksum mismatch" in out.stderr, out.stderr
        out = cli(target, "operator", "snapshot", "restore", str(bad))
        assert out.returncode == 4 and "checksum mismatch" in out.stderr
        assert "nothing written" in out.stderr
        assert not [p for n in target.cfg.nodes for p in target.cfg.node_data_dir(n.id).glob("raft.*")]
        # the intact file restores; a second restore without --force is refused, with it replaces
        assert cli(target, "operator", "snapshot", "restore", str(f)).returncode == 0
        snap = target.cfg.node_data_dir("n1") / "raft.snapshot"
        first = snap.stat().st_mtime_ns
        time.sleep(0.01)
        again = cli(target, "operator", "snapshot", "restore", str(f))
        assert again.returncode == 4 and "raft.snapshot" in again.stderr
        assert snap.stat().st_mtime_ns == first
        assert cli(target, "operator", "snapshot", "restore", "--force", str(f)).returncode == 0
        assert snap.stat().st_mtime_ns != first
    finally:
        target.close()
