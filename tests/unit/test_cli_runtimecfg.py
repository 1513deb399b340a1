"""The CLI of runtime changes: `--label` parsing, the node line of `node update` /
`raftsched nodes`, and `node wait-ready`'s readiness decision."""

from __future__ import annotations

import pytest

from raftsched.cli.common import UsageError
from raftsched.cli.main import build_parser
from raftsched.cli.runtimecfg import node_text, parse_labels, readiness
from raftsched.v1 import cluster_pb2, jobs_pb2


def test_labels_parse_and_refuse_naming_the_flag() -> None:
    assert parse_labels(["zone=b", "empty=", "x=a=b"]) == {"zone": "b", "empty": "", "x": "a=b"}
    for bad in ("novalue", "=v"):
        with pytest.raises(UsageError, match=f"--label '{bad}'"):
            parse_labels([bad])


def test_config_positionals_do_not_clash_with_the_tls_key_flag() -> None:
    args = build_parser().parse_args(["operator", "config", "set", "strategy", "binpack"])
    assert (args.setting, args.value, args.key) == ("strategy", "binpack", None)


def test_node_text_marks_runtime_changes() -> None:
    n = cluster_pb2.NodeInfo(id="n2", labels={"zone": "b", "rack": "r1"}, label_overrides={"zone": "b"},
                             labels_removed=["gpu"], capacity=jobs_pb2.Resources(cpu_millis=500, memory_mib=64),
                             cpu_override=500)
    assert node_text(n) == ("n2: labels rack=r1, zone=b (runtime: zone=b, -gpu); "
                            "capacity 500m 64Mi (runtime: cpu)")
    assert node_text(cluster_pb2.NodeInfo(id="n1")) == "n1: labels none; capacity 0m 0Mi"


def _state(applied: int, reachable: bool = True, inc: str = "p2", registered: str = "p2",
           alive: bool = True, scheduling: str = "eligible", leader: bool = True):
    reps = [cluster_pb2.ReplicaStatus(node_id="n1", reachable=True, commit_index=100,
                                      raft_state="leader" if leader else "follower"),
            cluster_pb2.ReplicaStatus(node_id="n2", reachable=reachable, applied_index=applied,
                                      incarnation=inc, raft_state="follower", error="connection refused")]
    nodes = [cluster_pb2.NodeInfo(id="n1", alive=True, scheduling="eligible"),
             cluster_pb2.NodeInfo(id="n2", alive=alive, incarnation=registered, scheduling=scheduling)]
    return nodes, cluster_pb2.ClusterStatusResponse(replicas=reps)


@pytest.mark.parametrize("kw, target, why", [
    ({"applied": 100, "reachable": False}, 90, "does not answer (connection refused)"),
    ({"applied": 100, "leader": False}, 90, "no leader"),
    ({"applied": 100, "registered": "p1"}, 90, "has not registered with the leader since it started"),
    ({"applied": 100, "alive": False}, 90, "has not registered"),
    ({"applied": 80}, 90, "applied index 80, leader commit index 90"),
    ({"applied": 100}, 0, "applied index 100, leader commit index 100"),  # no earlier check yet
    ({"applied": 100, "scheduling": "drained"}, 90, "is drained"),
    ({"applied": 90}, 90, ""),
])
def test_readiness(kw: dict, target: int, why: str) -> None:
    nodes, status = _state(**kw)
    got, commit = readiness("n2", nodes, status, target)
    assert why in got and (got == "") == (why == ""), got
    assert commit == (100 if kw.get("leader", True) else 0)
    assert "not in the cluster" in readiness("n9", nodes, status, target)[0]


def test_watch_cluster_events_of_runtime_changes() -> None:
    from raftsched.core.runtimeops import SetSetting, UpdateNode
    from raftsched.replica.watch import runtime_change
    from raftsched.rpc.events import cluster_pb
    from raftsched.v1 import events_pb2

    ev = runtime_change(UpdateNode("r", 5.0, "n2", (("zone", "b"),), ("gpu",), cpu_millis=2000), 7)
    assert (ev.kind, ev.node_id, ev.reason) == ("NODE_UPDATED", "n2", "labels zone=b, -gpu; cpu_millis 2000")
    assert cluster_pb(ev, "n1").kind == events_pb2.NODE_UPDATED
    ev = runtime_change(SetSetting("r", 5.0, "strategy", "binpack"), 8)
    assert (ev.kind, ev.node_id, ev.reason) == ("CLUSTER_CONFIG", "", "strategy = binpack")
    assert runtime_change(SetSetting("r", 5.0, "strategy"), 9).reason == "strategy reset to cluster.toml"
    assert cluster_pb(ev, "n1").kind == events_pb2.CLUSTER_CONFIG
