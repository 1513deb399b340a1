"""Runtime changes (issue 15): `UpdateNode` (labels, capacity) and `SetSetting` (cluster
settings). Placement sees a change from the next decision on; a capacity lowered below
what runs stops nothing and places nothing new until there is room; the changes survive
the node's restart (NodeUp), a snapshot and the digest; bad input is refused, naming the
field, and changes nothing."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from raftsched.core import apply as fsm
from raftsched.core import liveness
from raftsched.core import settings as runtime_settings
from raftsched.core.commands import NodeUp
from raftsched.core.constraints import parse as parse_constraint
from raftsched.core.invariants import Auditor
from raftsched.core.model import JobState
from raftsched.core.placement import Strategy, candidates, place
from raftsched.core.runqueue import QueueOrder
from raftsched.core.runtimeops import SetSetting, UpdateNode
from raftsched.core.settings import SettingError
from raftsched.core.state import ClusterState, Code
from tests.unit import test_fsm_properties as props
from tests.unit.fsm_helpers import assign, cluster, finished, node, rid, spec, started, submit

BASE = runtime_settings.Settings(Strategy.SPREAD, QueueOrder.PRIORITY, 1 / 60, 3600.0, 86400.0)


def update(st: ClusterState, nid: str, **kw) -> fsm.Result:
    return fsm.apply(st, UpdateNode(rid(), 10.0, nid, **kw))


def setting(st: ClusterState, key: str, value: str) -> fsm.Result:
    return fsm.apply(st, SetSetting(rid(), 10.0, key, value))


def test_a_label_set_at_runtime_places_a_constrained_job_there() -> None:
    st = cluster("n1", "n2")
    job = replace(spec(), constraints=(parse_constraint("zone=b"),))
    [jid] = submit(st, job)
    assert place([st.jobs[jid]], candidates(st)) == []
    assert update(st, "n2", set_labels=(("zone", "b"),)).ok
    assert st.nodes["n2"].labels == (("zone", "b"),)
    [item] = place([st.jobs[jid]], candidates(st))
    assert item.node_id == "n2"
    # removed again: nothing fits, and the CAS refuses an assignment decided before
    assert update(st, "n2", remove_labels=("zone",)).ok
    assert st.nodes["n2"].labels == ()
    assert place([st.jobs[jid]], candidates(st)) == []
    assert assign(st, jid, "n2").value != (1,)
    assert st.jobs[jid].state is JobState.PENDING


def test_lower_capacity_stops_nothing_and_places_nothing_beyond_it() -> None:
    st = cluster("n1", cpu=1000)
    ids = submit(st, *[spec(cpu=300) for _ in range(3)])
    for j in ids:
        assert assign(st, j, "n1").ok and started(st, j).ok
    audit = Auditor(st)
    st.changes.clear()
    res = update(st, "n1", cpu_millis=500)
    assert res.ok and st.nodes["n1"].capacity.cpu_millis == 500
    assert audit.check(UpdateNode("x", 10.0, "n1"), res, st.changes) is None
    assert all(st.jobs[j].state is JobState.RUNNING for j in ids)  # nothing killed
    [new] = submit(st, spec(cpu=100), ts=11.0)
    assert place([st.jobs[new]], candidates(st)) == []
    assert assign(st, new, "n1").value != (st.fencing + 1,)
    assert st.jobs[new].state is JobState.PENDING
    # jobs ending on the over-full node are no invariant violation
    for j in ids[:2]:
        st.changes.clear()
        r = finished(st, j)
        assert r.ok and audit.check(r, r, st.changes) is None
    # 300m used of 500m: the 100m job fits now
    [item] = place([st.jobs[new]], candidates(st))
    assert item.node_id == "n1" and assign(st, new, "n1").ok


def test_changes_survive_the_node_restart_snapshot_and_digest() -> None:
    st = cluster("n1", "n2")
    before = st.digest()
    assert update(st, "n1", set_labels=(("gpu", "yes"), ("zone", "a")), cpu_millis=4000,
                  memory_mib=2048).ok
    after = st.digest()
    assert after != before
    # the node restarts with its own (config) labels and capacity: the operator's win
    registered = replace(node("n1"), labels=(("zone", "z"), ("rack", "r1")), incarnation="new")
    assert liveness.needs_node_up(st, registered)
    assert fsm.apply(st, NodeUp(rid(), 20.0, registered)).ok
    n1 = st.nodes["n1"]
    assert dict(n1.labels) == {"gpu": "yes", "zone": "a", "rack": "r1"}
    assert (n1.capacity.cpu_millis, n1.capacity.memory_mib) == (4000, 2048)
    # its next heartbeat (same incarnation) is not a change: no NodeUp loop
    assert not liveness.needs_node_up(st, registered)
    assert update(st, "n1", remove_labels=("rack",)).ok
    assert fsm.apply(st, NodeUp(rid(), 21.0, replace(registered, incarnation="newer"))).ok
    assert "rack" not in dict(st.nodes["n1"].labels)
    assert setting(st, "strategy", "binpack").ok
    restored = ClusterState.from_dict(json.loads(json.dumps(st.to_dict())))
    assert restored.digest() == st.digest()
    assert restored.nodes["n1"] == st.nodes["n1"]
    assert runtime_settings.overrides(restored) == {"strategy": "binpack"}


@pytest.mark.parametrize("kw, message", [
    ({}, "nothing to change"),
    ({"cpu_millis": -5}, "cpu_millis -5"),
    ({"memory_mib": 2_000_000_000}, "memory_mib 2000000000"),
    ({"set_labels": (("", "x"),)}, "set_labels key ''"),
    ({"set_labels": (("a=b", "x"),)}, "set_labels key 'a=b'"),
    ({"set_labels": (("k", "v"),), "remove_labels": ("k",)}, "both set and removed"),
    ({"remove_labels": ("",)}, "remove_labels ''"),
])
def test_bad_updates_are_refused_naming_the_field_and_change_nothing(kw, message) -> None:
    st = cluster("n1")
    res = update(st, "n1", **kw)
    assert res.code is Code.INVALID and message in res.message, res
    st.dedup.clear()
    assert st.nodes["n1"] == cluster("n1").nodes["n1"]
    assert update(st, "nx", cpu_millis=5).code is Code.NOT_FOUND


def test_pool_label_of_a_dedicated_node_needs_a_restart() -> None:
    st = ClusterState()
    assert fsm.apply(st, NodeUp(rid(), 1.0, replace(node("n1"), labels=(("pool", "gpu"),),
                                                    dedicated="gpu"))).ok
    res = update(st, "n1", set_labels=(("pool", "cpu"),))
    assert res.code is Code.INVALID and "dedicated to pool 'gpu'" in res.message


def test_settings_override_cluster_toml_and_reset() -> None:
    st = cluster("n1")
    assert runtime_settings.effective(st, BASE) == BASE
    assert setting(st, "strategy", "binpack").value == "binpack"
    assert setting(st, "queue_order", "fifo").ok
    assert setting(st, "aging_rate", "0").value == "0.0"
    assert setting(st, "job_retention", "120").value == "120.0"
    assert setting(st, "idempotency_retention", "7200").ok
    eff = runtime_settings.effective(st, BASE)
    assert eff == runtime_settings.Settings(Strategy.BINPACK, QueueOrder.FIFO, 0.0, 120.0, 7200.0)
    assert setting(st, "strategy", "").value == ""  # back to cluster.toml
    assert runtime_settings.effective(st, BASE).strategy is Strategy.SPREAD


@pytest.mark.parametrize("key, value, message", [
    ("strategy", "random", "value 'random' for strategy: one of spread, binpack, round-robin"),
    ("queue_order", "lifo", "value 'lifo' for queue_order: one of priority, fifo"),
    ("aging_rate", "-1", "value '-1' for aging_rate: must be >= 0"),
    ("aging_rate", "nan", "value 'nan' for aging_rate"),
    ("job_retention", "0", "value '0' for job_retention: must be > 0"),
    ("idempotency_retention", "soon", "value 'soon' for idempotency_retention: not a number"),
    ("colour", "blue", "key 'colour': not a cluster setting"),
    ("heartbeat_ttl", "3", "key 'heartbeat_ttl' cannot change at runtime"),
    ("fsync", "always", "restart them one at a time"),
])
def test_bad_settings_are_refused_naming_key_and_value(key: str, value: str, message: str) -> None:
    st = cluster("n1")
    assert setting(st, "queue_order", "fifo").ok
    res = setting(st, key, value)
    assert res.code is Code.INVALID and message in res.message, res.message
    assert runtime_settings.overrides(st) == {"queue_order": "fifo"}
    with pytest.raises(SettingError, match=message.split(":")[0]):
        runtime_settings.parse(key, value)


def test_two_replicas_fed_the_same_changes_are_equal() -> None:
    a = cluster("n1", "n2")
    b = ClusterState.from_dict(a.to_dict())
    cmds = [UpdateNode("u1", 5.0, "n1", set_labels=(("zone", "a"),), cpu_millis=700),
            SetSetting("s1", 6.0, "strategy", "round-robin"),
            UpdateNode("u2", 7.0, "n2", remove_labels=("x",), memory_mib=99),
            SetSetting("s2", 8.0, "aging_rate", "2")]
    for st in (a, b):
        for c in cmds:
            assert fsm.apply(st, c).ok
        assert fsm.apply(st, cmds[0]).ok  # a repeated request id applies once
    assert a.digest() == b.digest()
    assert a.nodes["n1"].capacity.cpu_millis == 700 and a.nodes["n2"].capacity.memory_mib == 99


def test_no_settings_digest_and_snapshot_as_before_the_extension_existed() -> None:
    """A state without overrides has no "settings" key in its snapshot or digest, so
    backups of older versions restore and old and new nodes agree on the digest during a
    rolling upgrade; new Node fields at their defaults are left out of the wire form."""
    st = cluster("n1")
    small = st.digest_small()
    assert "settings" not in st.to_dict() and "settings" not in small
    assert not any(k in w for w in st.to_dict()["nodes"]
                   for k in ("label_overrides", "labels_removed", "cpu_override", "memory_override"))
    assert setting(st, "strategy", "binpack").ok
    assert st.to_dict()["settings"] == {"strategy": "binpack"} and "settings" in st.digest_small()
    assert setting(st, "strategy", "").ok
    assert "settings" not in st.to_dict()
    assert {k: v for k, v in st.digest_small().items() if k != "applied_index"} == \
        {k: v for k, v in small.items() if k != "applied_index"}


STRATEGIES = ["spread", "binpack", "round-robin", "", "bogus"]


@settings(max_examples=60, deadline=None)
@given(props.ops, hs.lists(hs.tuples(hs.integers(0, 90), hs.sampled_from(props.NODES),
                                     hs.integers(0, 9), hs.sampled_from(["cpu", "label", "setting"])),
                           max_size=8), hs.integers(0, 100))
def test_random_runtime_changes_keep_replicas_equal_and_placements_within_capacity(
        ops_: list[props.Op], changes: list[tuple[int, str, int, str]], cut: int) -> None:
    """The fsm property commands with node updates (capacity up and down, labels) and
    setting changes mixed in: no assignment ever lands beyond the capacity in effect
    (the audit's rules hold at every step), and a replica restored from a snapshot at
    any point ends equal."""
    cmds = props.build(ops_)
    for i, (pos, nid, v, kind) in enumerate(changes):
        c: object
        if kind == "cpu":
            c = UpdateNode(f"u{i}", 1.5, nid, cpu_millis=100 * v)  # 0: refused, nothing to change
        elif kind == "label":
            c = (UpdateNode(f"u{i}", 1.5, nid, set_labels=(("zone", str(v)),)) if v % 2
                 else UpdateNode(f"u{i}", 1.5, nid, remove_labels=("zone",)))
        else:
            c = SetSetting(f"u{i}", 1.5, "strategy", STRATEGIES[v % len(STRATEGIES)])
        cmds.insert(min(pos, len(cmds)), c)
    a = ClusterState()
    audit = Auditor(a)
    for c in cmds:
        a.changes.clear()
        res = fsm.apply(a, c)
        assert audit.check(c, res, a.changes) is None, (c, res)
    cut = min(cut, len(cmds))
    b = ClusterState()
    for c in cmds[:cut]:
        fsm.apply(b, c)
    b = ClusterState.from_dict(json.loads(json.dumps(b.to_dict())))
    for c in cmds[cut:]:
        fsm.apply(b, c)
    assert a.digest() == b.digest()


def test_backup_file_and_restore_carry_runtime_changes(tmp_path) -> None:
    """Through the backup payload and file (rpc.snapshot, client.backup) and the seeded
    Raft snapshot of a restore (replica.restore), as test_backup does for the rest."""
    from raftsched.client import backup
    from raftsched.replica import restore
    from raftsched.replica.durable import read_snapshot
    from tests.unit.test_backup import _cfg, _write

    st = cluster("n1", "n2")
    assert update(st, "n2", set_labels=(("zone", "b"),), remove_labels=("x",), memory_mib=512).ok
    assert setting(st, "queue_order", "fifo").ok
    st.applied_index = 9
    f = tmp_path / "b.rsb"
    _write(f, st)
    header, state = backup.load(f)
    assert header["state_digest"] == st.digest()
    back = ClusterState.from_dict(state)
    assert back.nodes["n2"] == st.nodes["n2"] and runtime_settings.overrides(back) == {"queue_order": "fifo"}
    [p, *_] = restore.seed(_cfg(tmp_path), state, 9, st.digest())
    seeded = ClusterState.from_dict(read_snapshot(str(p))[0][1])
    assert seeded.digest() == st.digest() and seeded.nodes["n2"].memory_override == 512
