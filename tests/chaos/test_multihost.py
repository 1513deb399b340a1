"""Five hosts (issue 15): nodes in network namespaces of their own with distinct, non-loopback
addresses on a bridge this test makes, TLS and ACLs on, chaos-ledger jobs running
throughout. The leader is cut off and healed (a partition); a follower dies with its disk
and is replaced (removed, then a new node with a new address joins empty); one more node
is removed. Every job succeeds exactly once, no two attempts overlap, fencing tokens grow,
the remaining replicas end identical and their journals pass the audit. Needs root (like
the partition tests); skipped otherwise."""

from __future__ import annotations

import shutil
import time

import pytest

from raftsched.replica.audit import audit_data_dir
from tests.integration.test_drain import cli, ok
from tests.integration.test_membership import Load, alive, check_ledger, members
from tests.support.netns import NetnsCluster, netns_available

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]

why = netns_available()


def add_host(c: NetnsCluster, nid: str, via: str) -> None:
    """A new node on its own namespace's address: certificate, `members add`, `--join`."""
    host = c.hosts[int(nid[1:]) - 1]
    ok(cli(c, "tls", "node", nid, "--host", host))
    out = ok(cli(c, "--node", c.addr(via), "operator", "members", "add", nid,
                 "--raft", f"{host}:7101", "--grpc", f"{host}:7201", "--metrics", f"{host}:9101",
                 "--control", f"{host}:7301", "--cpu-millis", "2000", "--memory-mib", "2048"))
    assert f"added {nid}" in out
    c.added[nid] = f"{host}:7201"
    c.start_node(nid, "--join", c.addr(via))


@pytest.mark.skipif(why is not None, reason=why or "")
def test_five_hosts_partition_replace_and_remove_while_jobs_run() -> None:
    c = NetnsCluster(5, spare=1, cluster_extra="log_compaction_entries = 100")
    try:
        c.start()
        leader = c.wait_ready(90)
        assert all(not h.startswith("127.") for h in c.hosts)
        load = Load(c)
        c.wait_until(lambda: len(load.submitted) >= 30, 60, "jobs submitted")

        # 1. the leader is cut off from everyone for a few election timeouts, then healed
        c.cut(leader)
        rest = [n for n in ("n1", "n2", "n3", "n4", "n5") if n != leader]
        c.wait_until(lambda: c.client(*rest).status().leader_id in rest, 60, "a leader among the rest")
        time.sleep(2.0)
        c.heal(leader)
        c.wait_until(lambda: len(alive(c, rest[0])) == 5, 60, "all five alive again")

        # 2. a follower dies with its disk; it is removed and n6 (a new address) replaces it
        now = c.client(*rest).status().leader_id
        victim = next(n for n in rest if n != now)
        live = [n for n in ("n1", "n2", "n3", "n4", "n5") if n != victim]
        c.kill(victim)
        shutil.rmtree(c.cfg.node_data_dir(victim))
        out = ok(cli(c, "--node", c.addr(live[0]), "operator", "members", "remove", victim))
        assert f"removed {victim}" in out
        add_host(c, "n6", live[0])
        live.append("n6")
        c.wait_until(lambda: "n6" in alive(c, live[0]), 90, "n6 registered alive")
        assert set(members(c, live[0])) == set(live)

        # 3. one more node leaves (5 -> 4)
        now = c.client(*live).status().leader_id
        gone = next(n for n in live if n not in (now, "n6"))
        out = ok(cli(c, "--node", c.addr(now), "operator", "members", "remove", gone))
        assert f"removed {gone}" in out
        c.stop_node(gone)
        keep = [n for n in live if n != gone]

        submitted = load.finish(at_least=120)
        done = c.wait_terminal(submitted, 180, client=c.client(*keep))
        check_ledger(c, done)
        assert set(members(c, keep[0])) == set(keep)
        reps = c.replicas_identical()
        assert sorted(r.node_id for r in reps) == sorted(keep)
        for nid in keep:
            rep = audit_data_dir(c.cfg.node_data_dir(nid))
            assert rep.ok, rep.summary()
    finally:
        c.close()
