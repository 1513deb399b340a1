"""The pure membership core (core/members.py): validation naming the field, handlers that
seed from the config's list on the first change, snapshot round trip and digest."""

from __future__ import annotations

from raftsched.core.apply import apply
from raftsched.core.members import AddMember, Member, RemoveMember, add_error, members_of, remove_error
from raftsched.core.state import ClusterState

SEED = (Member("n1", "10.0.0.1:7001", "10.0.0.1:8001", "10.0.0.1:9001", 2000, 2048),
        Member("n2", "10.0.0.2:7001", "10.0.0.2:8001"),
        Member("n3", "10.0.0.3:7001", "10.0.0.3:8001", control="10.0.0.3:8101"))
N4 = Member("n4", "10.0.0.4:7001", "10.0.0.4:8001", "", 1000, 512, (("zone", "b"),))


def test_add_errors_name_the_field() -> None:
    cases = [
        (Member("bad id", "h:1", "h:2"), "id"), (Member("", "h:1", "h:2"), "id"),
        (Member("-x", "h:1", "h:2"), "id"),
        (Member("n4", "", "h:2"), "raft_address"), (Member("n4", "h", "h:2"), "raft_address"),
        (Member("n4", "h:0", "h:2"), "raft_address"), (Member("n4", ":1", "h:2"), "raft_address"),
        (Member("n4", "h:1", "h:70000"), "grpc_address"), (Member("n4", "h:1", "h 2:2"), "grpc_address"),
        (Member("n4", "h:1", "h:2", "m"), "metrics_address"),
        (Member("n4", "h:1", "h:2", cpu_millis=-1), "cpu_millis"),
        (Member("n4", "h:1", "h:2", memory_mib=-5), "memory_mib"),
        (Member("n4", "h:1", "h:2", labels=(("", "v"),)), "labels"),
        (Member("n1", "h:1", "h:2"), "id"),  # duplicate id
        (Member("n4", SEED[1].raft, "h:2"), "raft_address"),  # duplicate addresses
        (Member("n4", "h:1", SEED[2].grpc), "grpc_address"),
        (Member("n4", "h:1", "h:2", SEED[0].metrics), "metrics_address"),
        (Member("n4", "h:1", "h:2", control="c"), "control_address"),
        (Member("n4", "h:1", "h:2", control=SEED[2].control), "control_address"),
    ]
    for m, field in cases:
        got, msg = add_error(list(SEED), m)
        assert got == field and msg.startswith(field), (m, got, msg)
    assert add_error(list(SEED), N4) == ("", "")


def test_remove_errors() -> None:
    assert remove_error(list(SEED), "")[0] == "node_id"
    f, msg = remove_error(list(SEED), "n9")
    assert f == "not_found" and "n9" in msg and "n1, n2, n3" in msg
    assert remove_error([SEED[0]], "n1")[0] == "node_id"  # the last member stays
    assert remove_error(list(SEED), "n2") == ("", "")


def test_first_change_seeds_then_the_state_is_the_truth() -> None:
    st = ClusterState()
    assert members_of(st).members == {} and members_of(st).version == 0
    assert apply(st, AddMember("r1", 1.0, N4, SEED)).ok
    ms = members_of(st)
    assert sorted(ms.members) == ["n1", "n2", "n3", "n4"] and ms.version == 1
    # later changes ignore a seed (the state has its list): the removal of n1 sticks
    assert apply(st, RemoveMember("r2", 2.0, "n1", SEED)).ok
    assert sorted(members_of(st).members) == ["n2", "n3", "n4"]
    # a retried request id changes nothing
    assert apply(st, RemoveMember("r2", 2.0, "n1", SEED)).ok
    assert members_of(st).version == 2
    # a removal of an unknown id is total (validated before it was proposed)
    assert apply(st, RemoveMember("r3", 3.0, "zz")).ok
    assert sorted(members_of(st).members) == ["n2", "n3", "n4"]


def test_a_removed_node_takes_no_new_placements() -> None:
    from raftsched.core.model import Node, Resources

    st = ClusterState()
    st.nodes["n2"] = Node("n2", SEED[1].grpc, SEED[1].raft, Resources(1000, 1000))
    assert st.nodes["n2"].eligible
    assert apply(st, RemoveMember("r1", 1.0, "n2", SEED)).ok
    assert not st.nodes["n2"].eligible
    back = Member("n2", "10.0.0.9:7001", "10.0.0.9:8001")
    assert apply(st, AddMember("r2", 2.0, back)).ok  # the same id again: eligible again
    assert st.nodes["n2"].eligible


def test_snapshot_round_trip_and_digest() -> None:
    a, b = ClusterState(), ClusterState()
    for st in (a, b):
        apply(st, AddMember("r1", 1.0, N4, SEED))
    assert a.digest() == b.digest()
    c = ClusterState.from_dict(a.to_dict())
    assert members_of(c).members == members_of(a).members and members_of(c).version == 1
    assert c.digest() == a.digest()
    apply(b, RemoveMember("r2", 2.0, "n4"))
    assert b.digest() != a.digest()
