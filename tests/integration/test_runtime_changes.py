"""Runtime changes on a real 3-node cluster (issue 15), through the CLI as an operator
types it: `node update` (a label added at runtime places a job constrained to it there;
a capacity lowered below what runs stops nothing and places nothing beyond it),
`operator config set/get` (the strategy in effect shows in placement and in explain),
bad input refused naming the node, key or value with nothing changed, and the changes
surviving a restart of every node."""

from __future__ import annotations

import json

import grpc
import pytest

from raftsched.client.acl_client import AclClient
from raftsched.client.client import Client
from raftsched.v1 import events_pb2, jobs_pb2
from tests.integration.test_drain import cli, ledger, ok, sleeper, watch_cluster
from tests.integration.test_isolation import sh
from tests.support.cluster import TestCluster, status_of

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]


def only(client: Client, nid: str, c: TestCluster) -> None:
    """Make every node but `nid` ineligible."""
    for n in c.cfg.nodes:
        ok(cli(c, "node", "eligibility", n.id, "--disable" if n.id != nid else "--enable"))


def test_node_update_and_config_set_take_effect_and_survive_a_restart() -> None:
    c = TestCluster(n_nodes=3).start()
    try:
        c.wait_ready()
        client = c.client()
        events, watcher = watch_cluster(c, "n3")
        zone_b = jobs_pb2.JobSpec(command=["true"], constraints=[jobs_pb2.Constraint(key="zone", value="b")])
        code, msg = status_of(lambda: client.submit(zone_b))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "zone=b" in msg, msg

        # a label set at runtime: the constrained job is accepted and placed there
        out = ok(cli(c, "node", "update", "n2", "--label", "zone=b", "--label", "rack=r7"))
        assert out.startswith("n2: labels rack=r7, zone=b (runtime: rack=r7, zone=b)"), out
        jid = client.submit(zone_b)
        job = c.wait_terminal([jid], timeout=30, client=client)[jid]
        assert job.state == jobs_pb2.SUCCEEDED and job.node_id == "n2"
        ok(cli(c, "node", "update", "n2", "--remove-label", "rack"))
        info = json.loads(ok(cli(c, "nodes", "--json")))
        n2 = next(n for n in info["nodes"] if n["id"] == "n2")
        assert n2["labels"] == {"zone": "b"} and n2["label_overrides"] == {"zone": "b"}
        assert n2["labels_removed"] == ["rack"]
        assert "n2: labels zone=b (runtime: zone=b, -rack)" in ok(cli(c, "nodes"))

        # capacity lowered below what runs: both keep running; the third waits for room
        only(client, "n2", c)
        m = "cap"
        spec = {"resources": jobs_pb2.Resources(cpu_millis=800, memory_mib=64)}
        first = [client.submit(sleeper(c, f"{m}{i}", 4, **spec)) for i in (1, 2)]
        c.wait_until(lambda: all(client.get(j).state == jobs_pb2.RUNNING for j in first), 30,
                     "two jobs running on n2")
        out = ok(cli(c, "node", "update", "n2", "--cpu-millis", "1000"))
        assert "capacity 1000m 2048Mi (runtime: cpu)" in out, out
        third = client.submit(sleeper(c, f"{m}3", 1, **spec))
        done = c.wait_terminal([*first, third], timeout=60, client=client)
        assert all(j.state == jobs_pb2.SUCCEEDED and j.attempt == 1 and j.node_id == "n2"
                   for j in done.values()), done
        runs = {i: ledger(c, f"{m}{i}")[f"{m}{i}-1"] for i in (1, 2, 3)}
        # 800m + 800m ran on a node of 1000m (nothing killed); the third started after both ended
        assert runs[3]["start"] >= max(runs[1]["end"], runs[2]["end"]), runs
        assert runs[1]["start"] < runs[2]["end"] and runs[2]["start"] < runs[1]["end"], runs

        # strategy binpack at runtime: shows in explain, and a batch lands on one node
        for n in c.cfg.nodes:
            ok(cli(c, "node", "eligibility", n.id, "--enable"))
        assert ok(cli(c, "operator", "config", "set", "strategy", "binpack")).strip() == \
            "strategy = binpack (runtime)"
        got = json.loads(ok(cli(c, "operator", "config", "get", "--json")))["settings"]
        row = next(s for s in got if s["key"] == "strategy")
        assert (row["value"], row["source"], row["file_value"]) == ("binpack", "runtime", "spread")
        assert "strategy binpack" in ok(cli(c, "plan", "--", "true"))
        batch = client.submit_batch([sh("sleep 2")] * 4)
        done = c.wait_terminal(batch, timeout=60, client=client)
        assert len({j.node_id for j in done.values()}) == 1, [j.node_id for j in done.values()]
        ok(cli(c, "operator", "config", "set", "queue_order", "fifo"))
        ok(cli(c, "operator", "config", "reset", "strategy"))
        assert "strategy spread" in ok(cli(c, "plan", "--", "true"))
        # WatchCluster (n3's replica) saw each committed change
        want = [(events_pb2.NODE_UPDATED, "n2", "labels rack=r7, zone=b"),
                (events_pb2.NODE_UPDATED, "n2", "cpu_millis 1000"),
                (events_pb2.CLUSTER_CONFIG, "", "strategy = binpack"),
                (events_pb2.CLUSTER_CONFIG, "", "strategy reset to cluster.toml")]
        c.wait_until(lambda: all(w in [(e.kind, e.node_id, e.reason) for e in list(events)] for w in want),
                     20, f"WatchCluster events {want}")
        watcher.cancel()

        # every node restarted: the changes come back from the replicated log
        for n in c.cfg.nodes:
            c.stop_node(n.id)
        c.start()
        c.wait_ready(60)
        client = c.client()
        n2 = next(n for n in client.nodes() if n.id == "n2")
        assert dict(n2.labels) == {"zone": "b"} and n2.capacity.cpu_millis == 1000
        # a linearizable read: right after a restart of every node, the replica that
        # answers may not have applied the last entries yet (it would say so: stale)
        table = ok(cli(c, "--consistent", "operator", "config", "get"))
        assert any(ln.split()[:3] == ["queue_order", "fifo", "runtime"] for ln in table.splitlines()), table
        assert any(ln.split()[:3] == ["strategy", "spread", "cluster.toml"] for ln in table.splitlines()), table
        c.replicas_identical()
    finally:
        c.close()


def test_bad_input_is_refused_naming_it_and_changes_nothing() -> None:
    c = TestCluster(n_nodes=3).start()
    try:
        c.wait_ready()
        client = c.client()
        ok(cli(c, "operator", "config", "set", "aging_rate", "0.5"))
        settings_before = ok(cli(c, "operator", "config", "get", "--json"))
        r = cli(c, "node", "update", "n9", "--label", "a=b")
        assert r.returncode == 3 and "n9" in r.stderr and "NOT_FOUND" in r.stderr, r.stderr
        r = cli(c, "node", "update", "n2", "--label", "novalue")
        assert r.returncode == 2 and "--label 'novalue'" in r.stderr, r.stderr
        r = cli(c, "operator", "config", "set", "colour", "blue")
        assert r.returncode == 4 and "key 'colour'" in r.stderr and "INVALID_ARGUMENT" in r.stderr, r.stderr
        r = cli(c, "operator", "config", "set", "strategy", "random")
        assert r.returncode == 4 and "value 'random' for strategy" in r.stderr, r.stderr
        r = cli(c, "operator", "config", "set", "heartbeat_ttl", "5")
        assert r.returncode == 4 and "cannot change at runtime" in r.stderr and "restart" in r.stderr
        for call, field in (
            (lambda: client.update_node("n2", cpu_millis=-1), "cpu_millis -1"),
            (lambda: client.update_node("n2"), "nothing to change"),
            (lambda: client.update_node("n2", {"k": "v"}, ["k"]), "'k' is both set and removed"),
            (lambda: client.update_node("", cpu_millis=5), "node_id"),
            (lambda: client.set_cluster_config("job_retention", "-3"), "value '-3' for job_retention"),
            (lambda: client.set_cluster_config("aging_rate", "1", reset=True), "with reset"),
        ):
            code, msg = status_of(call)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and field in msg, (field, code, msg)
        # admin only: an operator for every namespace may drain, not change settings
        admin = AclClient([c.addr("n1")], token=c.token, tls=c.tls)
        secret, _ = admin.create_token("ops", "operator", ["*"])
        ops = Client([c.addr(n.id) for n in c.cfg.nodes], tls=c.tls, token=secret)
        for call in (lambda: ops.update_node("n2", cpu_millis=500),
                     lambda: ops.set_cluster_config("strategy", "binpack")):
            code, msg = status_of(call)
            assert code == grpc.StatusCode.PERMISSION_DENIED, (code, msg)
        assert [s.value for s in ops.cluster_config()][:2] == ["spread", "priority"]  # reading is allowed
        ops.close()
        # nothing changed: the settings, the nodes, and the replicas agree
        assert ok(cli(c, "operator", "config", "get", "--json")) == settings_before
        assert all(not n.label_overrides and not n.labels_removed and not n.cpu_override
                   and not n.memory_override and "a" not in n.labels for n in client.nodes())
        c.replicas_identical()
    finally:
        c.close()
