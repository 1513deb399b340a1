"""Membership changes on a real cluster (issue 15), TLS and ACLs on, through the CLI as an
operator types it: grow 3 -> 5 while jobs run (the new nodes join with an empty data dir,
catch up and receive jobs), then shrink 5 -> 3 removing the leader (it hands over first)
and an original node; every job succeeds once, no two attempts of a job overlap, the
replicas end identical. Bad input is refused naming the field."""

from __future__ import annotations

import itertools
import json
import random
import shutil
import threading
from collections import defaultdict

import grpc
import pytest

from raftsched.client.acl_client import AclClient
from raftsched.dev.chaos import job_spec
from raftsched.dev.launcher import free_ports
from raftsched.replica.audit import audit_data_dir
from raftsched.v1 import cluster_pb2, jobs_pb2
from tests.integration.test_drain import cli, ok, scheduling
from tests.support.cluster import TestCluster, status_of

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

MAX_JOBS = 300
COMPACT = 100


def members(c: TestCluster, via: str = "n1") -> dict[str, dict]:
    out = json.loads(ok(cli(c, "--json", "--node", c.addr(via), "operator", "members")))
    return {m["id"]: m for m in out["members"]}


def add_node(c: TestCluster, nid: str, via: str) -> None:
    """Certificate from the cluster CA, `members add`, then start it with --join."""
    ok(cli(c, "tls", "node", nid, "--host", "127.0.0.1"))
    raft, grpc_port, metrics, control = free_ports(4)
    out = ok(cli(c, "operator", "members", "add", nid, "--raft", f"127.0.0.1:{raft}",
                 "--grpc", f"127.0.0.1:{grpc_port}", "--metrics", f"127.0.0.1:{metrics}",
                 "--control", f"127.0.0.1:{control}",
                 "--cpu-millis", "2000", "--memory-mib", "2048", "--label", "joined=yes"))
    assert f"added {nid}" in out
    c.added[nid] = f"127.0.0.1:{grpc_port}"
    c.start_node(nid, "--join", c.addr(via))


def alive(c: TestCluster, via: str) -> set[str]:
    try:
        return {n.id for n in c.client(via).nodes() if n.alive}
    except grpc.RpcError:
        return set()


def check_ledger(c: TestCluster, done: dict[str, jobs_pb2.Job]) -> set[str]:
    """The chaos jobs' ledger (dev/chaos.py: each attempt holds a per-job flock while it
    runs, and writes OVERLAP if another attempt of its job still holds it): no overlap,
    fencing tokens grow, every job succeeded once, by a run that ended with its token.
    Returns the nodes that ran jobs."""
    starts: dict[str, list[tuple[float, int]]] = defaultdict(list)
    ends: dict[str, set[int]] = defaultdict(set)
    nodes = set()
    for line in (c.root / "ledger.txt").read_text().splitlines():
        kind, jid, _attempt, token, node, ts = line.split()
        assert kind != "OVERLAP", line
        nodes.add(node)
        (starts[jid].append((float(ts), int(token))) if kind == "S" else ends[jid].add(int(token)))
    for jid, j in done.items():
        assert j.state == jobs_pb2.SUCCEEDED, (jid, j.state, j.last_error)
        assert sum(h.state == jobs_pb2.SUCCEEDED for h in j.history) == 1, jid
        tokens = [t for _, t in sorted(starts[jid])]
        assert all(a < b for a, b in itertools.pairwise(tokens)), (jid, tokens)
        assert j.fencing_token in ends[jid], (jid, j.fencing_token, ends[jid])
    return nodes


class Load:
    """Chaos ledger jobs (dev/chaos.py), a few every 0.5 s from a thread until `finish`."""

    def __init__(self, c: TestCluster) -> None:
        self.c = c
        self.submitted: list[str] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        (c.root / "locks").mkdir()
        (c.root / "ledger.txt").touch()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        rng = random.Random(15)
        cl = self.c.client()
        try:
            while len(self.submitted) < MAX_JOBS:
                self.submitted.extend(cl.submit_batch([job_spec(self.c.root, rng) for _ in range(3)]))
                if self.stop.wait(0.5):
                    return
        except BaseException as e:  # reported by finish()
            self.errors.append(e)

    def finish(self, at_least: int = 100) -> list[str]:
        """Stop once `at_least` jobs were submitted; their ids."""
        self.c.wait_until(lambda: len(self.submitted) >= at_least or not self.thread.is_alive(),
                          120, f"{at_least} jobs submitted")
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive() and not self.errors, self.errors
        assert len(self.submitted) >= at_least, len(self.submitted)
        return self.submitted


def test_grow_3_to_5_and_shrink_to_3_while_jobs_run() -> None:
    # compaction after 100 entries: the joining nodes catch up by snapshot + log
    with TestCluster(3, cluster_extra=f"log_compaction_entries = {COMPACT}") as c:
        c.start()
        leader0 = c.wait_ready()
        load = Load(c)
        c.wait_until(lambda: c.client().status().commit_index > 2 * COMPACT, 60, "a compacted log")
        # grow: 3 -> 5, one change at a time, each new node joining with an empty data dir
        for nid in ("n4", "n5"):
            add_node(c, nid, "n1")
            c.wait_until(lambda nid=nid: nid in alive(c, "n2"), 60, f"{nid} registered alive")
        for nid in ("n4", "n5"):
            assert "state restored from snapshot" in (c.log_dir / f"{nid}.log").read_text(), nid
        ms = members(c)
        assert set(ms) == {"n1", "n2", "n3", "n4", "n5"}
        assert sum(m["role"] == "leader" for m in ms.values()) == 1
        assert ms["n4"]["labels"] == {"joined": "yes"}
        c.wait_until(lambda: all(int(m.get("lag", 0)) < 50 for m in members(c).values()), 60,
                     "the new members caught up")
        c.wait_until(lambda: any(line.split()[4] in ("n4", "n5")
                                 for line in (c.root / "ledger.txt").read_text().splitlines()),
                     90, "a job placed on a joined node")
        # shrink: 5 -> 3, removing the first leader (it hands over) and another original node
        other = next(n for n in ("n1", "n2", "n3") if n != leader0)
        keep = [n for n in ("n1", "n2", "n3", "n4", "n5") if n not in (leader0, other)]
        for nid in (leader0, other):
            ok(cli(c, "node", "drain", nid, "--deadline", "120s", "--node", c.addr(keep[0])))
            c.wait_until(lambda nid=nid: scheduling(c.client(*keep), nid) == "drained", 60,
                         f"{nid} drained")
            out = ok(cli(c, "--node", c.addr(keep[0]), "operator", "members", "remove", nid))
            assert f"removed {nid}" in out
            c.stop_node(nid)
        submitted = load.finish(at_least=MAX_JOBS)  # the issue: 300 jobs while it grows and shrinks
        cl = c.client(*keep)
        final = json.loads(ok(cli(c, "--json", "--node", c.addr(keep[0]), "operator", "members")))
        assert sorted(m["id"] for m in final["members"]) == sorted(keep)
        assert final["leader_id"] in keep and final["leader_id"] != leader0
        done = c.wait_terminal(submitted, 120, client=cl)
        ran_on = check_ledger(c, done)
        assert ran_on & {"n4", "n5"}, ran_on
        reps = c.replicas_identical()
        assert sorted(r.node_id for r in reps) == sorted(keep)
        for nid in keep:  # the journal replay (membership entries included) breaks no invariant
            rep = audit_data_dir(c.cfg.node_data_dir(nid))
            assert rep.ok, rep.summary()


def succeeded(c: TestCluster, via: list[str]) -> int:
    return sum(j.state == jobs_pb2.SUCCEEDED for j in c.client(*via).list_all())


def test_replace_a_node_whose_data_dir_was_lost() -> None:
    """A follower dies with its disk: the two others keep a quorum; it is removed first
    (3 -> 2, both alive), then a new node is added (2 -> 3: two of three commit without
    it) and joins empty. Jobs go on completing at every step."""
    with TestCluster(3) as c:
        c.start()
        leader = c.wait_ready()
        load = Load(c)
        victim = next(n for n in ("n1", "n2", "n3") if n != leader)
        live = [n for n in ("n1", "n2", "n3") if n != victim]
        c.wait_until(lambda: succeeded(c, live) >= 5, 60, "jobs completing")
        c.kill(victim)
        shutil.rmtree(c.cfg.node_data_dir(victim))
        before = succeeded(c, live)
        c.wait_until(lambda: succeeded(c, live) > before, 60, "jobs completing on two nodes")
        out = ok(cli(c, "--node", c.addr(live[0]), "operator", "members", "remove", victim))
        assert f"removed {victim}" in out
        before = succeeded(c, live)
        c.wait_until(lambda: succeeded(c, live) > before, 60, "jobs completing after the removal")
        add_node(c, "n4", live[0])
        c.wait_until(lambda: "n4" in alive(c, live[0]), 60, "n4 registered alive")
        keep = [*live, "n4"]
        assert set(members(c, keep[0])) == set(keep)
        submitted = load.finish()
        done = c.wait_terminal(submitted, 120, client=c.client(*keep))
        check_ledger(c, done)
        reps = c.replicas_identical()
        assert sorted(r.node_id for r in reps) == sorted(keep)


def test_bad_membership_requests_name_the_field() -> None:
    with TestCluster(3) as c:
        c.start()
        c.wait_ready()
        cl = c.client()
        n1 = c.cfg.node("n1")

        def add(**kw) -> tuple[grpc.StatusCode, str]:
            m = cluster_pb2.Member(**{"id": "n9", "raft_address": "127.0.0.1:1",
                                      "grpc_address": "127.0.0.1:2", **kw})
            return status_of(lambda: cl.add_member(m))

        for kw, field in (({"id": "bad id!"}, "member.id"), ({"id": "n2"}, "member.id"),
                          ({"raft_address": "nohost"}, "member.raft_address"),
                          ({"grpc_address": "127.0.0.1:99999"}, "member.grpc_address"),
                          ({"raft_address": n1.raft}, "member.raft_address"),
                          ({"grpc_address": n1.grpc}, "member.grpc_address")):
            code, msg = add(**kw)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith(field), (kw, code, msg)
        code, msg = status_of(lambda: cl.remove_member("n9"))
        assert code == grpc.StatusCode.NOT_FOUND and "node_id" in msg, (code, msg)
        code, msg = status_of(lambda: cl.remove_member(""))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "node_id" in msg, (code, msg)
        r = cli(c, "operator", "members", "add", "n9", "--raft", "x", "--grpc", "127.0.0.1:2")
        assert r.returncode != 0 and "raft_address" in r.stderr, r
        # admin only: an operator of every namespace is refused
        admin = AclClient([c.addr("n1")], token=c.token, tls=c.tls)
        secret, _ = admin.create_token("ops", "operator", ["*"])
        ops = c.client(token=secret)
        for call in (ops.members, lambda: ops.remove_member("n2"),
                     lambda: ops.add_member(cluster_pb2.Member(id="n9", raft_address="127.0.0.1:1",
                                                               grpc_address="127.0.0.1:2"))):
            code, _ = status_of(call)
            assert code == grpc.StatusCode.PERMISSION_DENIED, code
        assert set(members(c)) == {"n1", "n2", "n3"}
