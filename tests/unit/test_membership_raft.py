"""Membership entries on simulated MemberSyncObj replicas (replica/membership.py): one
change at a time (pysyncobj 0.3.17's own guard is never armed), the carried command
reaches every replica's state machine at the entry's index, and check-quorum counts
majorities over the changed set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pysyncobj import FAIL_REASON
from pysyncobj import pickle as ps_pickle
from pysyncobj.journal import FileJournal
from pysyncobj.syncobj import _COMMAND_TYPE

from raftsched.replica.membership import MemberSyncObj
from tests.unit.raft_sim import SimNet, elected, make_net  # noqa: F401  (fixture)


def _net(make_net: Any) -> SimNet:  # noqa: F811
    net: SimNet = make_net(cls=MemberSyncObj, dynamic=True, spare=2)
    net.seen = {nid: [] for nid in net.ids}  # type: ignore[attr-defined]
    for nid, so in net.nodes.items():
        so._rs_membership_applied = \
            lambda blob, nid=nid, so=so: net.seen[nid].append((blob, so.raftLastApplied + 1))  # type: ignore[attr-defined]
    return net


def change(net: SimNet, nid: str, kind: str, addr: str, blob: bytes, out: list[int]) -> None:
    net.nodes[nid]._applyCommand(ps_pickle.dumps([kind, addr, addr, blob]),
                                 lambda _r, err: out.append(err), _COMMAND_TYPE.MEMBERSHIP)


def voters(net: SimNet, nid: str) -> set[str]:
    return {n.address for n in net.nodes[nid]._SyncObj__otherNodes}


def test_a_second_change_is_refused_while_the_first_is_unapplied(make_net: Any) -> None:  # noqa: F811
    net = _net(make_net)
    leader = elected(net)
    first: list[int] = []
    second: list[int] = []
    spare1, spare2 = net.spares
    # both queued before the leader ticks: the first is appended, the second refused
    change(net, leader, "add", spare1, b"one", first)
    change(net, leader, "add", spare2, b"two", second)
    net.step()
    assert second == [FAIL_REASON.REQUEST_DENIED]
    assert spare1 in voters(net, leader) and spare2 not in voters(net, leader)
    net.run_until(lambda: bool(first), 2, "the first change applied")
    assert first == [FAIL_REASON.SUCCESS]
    assert net.nodes[leader].rs_change_in_flight() is None
    # once applied, the next change goes through (removing what the first added)
    third: list[int] = []
    change(net, leader, "rem", spare1, b"three", third)
    net.run_until(lambda: bool(third), 2, "the removal applied")
    assert third == [FAIL_REASON.SUCCESS]
    net.run(0.5)
    for nid in net.ids:  # every replica applied both carried commands, at the same indexes
        assert [b for b, _ in net.seen[nid]] == [b"one", b"three"], nid  # type: ignore[attr-defined]
        assert net.seen[nid] == net.seen[leader], nid  # type: ignore[attr-defined]
        assert spare1 not in voters(net, nid)


def test_a_bare_pysyncobj_change_is_refused(make_net: Any) -> None:  # noqa: F811
    """addNodeToCluster (or syncobj_admin -add) carries no member-list command: it would move
    the Raft configuration alone, so the leader refuses it."""
    net = _net(make_net)
    leader = elected(net)
    out: list[int] = []
    net.nodes[leader].addNodeToCluster(net.spares[0], callback=lambda _r, err: out.append(err))
    net.run_until(lambda: bool(out), 1, "an answer")
    assert out == [FAIL_REASON.REQUEST_DENIED]
    assert net.spares[0] not in voters(net, leader)


def test_a_change_that_cannot_commit_keeps_the_next_refused(make_net: Any) -> None:  # noqa: F811
    """The leader is cut off after appending a change: it stays unapplied, and every later
    change is refused (not queued behind it, not appended next to it)."""
    net = _net(make_net)
    leader = elected(net)
    so = net.nodes[leader]
    spare1, spare2 = net.spares
    out: list[int] = []
    for other in net.ids:
        if other != leader:
            net.cut(leader, other)  # the entry stays on the leader alone, unapplied
    change(net, leader, "add", spare1, b"one", out)
    net.step()
    assert so.rs_change_in_flight() is not None
    late: list[int] = []
    change(net, leader, "add", spare2, b"two", late)
    net.step()
    assert late == [FAIL_REASON.REQUEST_DENIED]


def test_check_quorum_counts_over_the_new_set(make_net: Any) -> None:  # noqa: F811
    """3 voters + 1 added that never answers: the leader needs both followers now; with one
    cut it no longer counts a majority (the old set of 3 would still say yes)."""
    net = _net(make_net)
    leader = elected(net)
    cq = net.nodes[leader].rs_checkquorum()
    assert cq is not None
    out: list[int] = []
    change(net, leader, "add", net.spares[0], b"one", out)
    net.run_until(lambda: bool(out), 2, "the change applied")
    net.run(0.2)
    assert set(n.address for n in cq.heard) == voters(net, leader)
    assert cq.heard_majority_within(0.2)
    follower = next(n for n in net.ids if n != leader)
    net.cut(leader, follower)
    net.run(0.3)
    assert not cq.heard_majority_within(0.2)


def test_audit_replays_the_command_a_membership_entry_carries(tmp_path: Path) -> None:
    from raftsched.core import codec
    from raftsched.core.apply import apply
    from raftsched.core.members import AddMember, Member, members_of
    from raftsched.core.state import ClusterState
    from raftsched.replica.audit import audit_data_dir

    m = Member("n4", "127.0.0.1:9", "127.0.0.1:10")
    cmd = AddMember("m1", 1.0, m, (Member("n1", "127.0.0.1:1", "127.0.0.1:2"),))
    journal = FileJournal(str(tmp_path / "raft.journal"))
    journal.add(bytes([_COMMAND_TYPE.NO_OP]), 1, 1)
    journal.add(bytes([_COMMAND_TYPE.MEMBERSHIP])
                + ps_pickle.dumps(["add", m.raft, m.raft, codec.encode_entry([cmd])]), 2, 1)
    journal._destroy()
    rep = audit_data_dir(tmp_path)
    assert rep.ok and rep.commands == 1, rep.summary()
    want = ClusterState()
    apply(want, cmd)
    want.applied_index = 2
    assert sorted(members_of(want).members) == ["n1", "n4"]
    assert rep.digest == want.digest()


def test_a_restart_puts_unapplied_journal_changes_in_effect(make_net: Any) -> None:  # noqa: F811
    """The entry is appended on the leader and one follower, not committed (4 voters, the
    other follower cut off). A restart rebuilds the configuration from the constructor
    list, the snapshot and the applied entries: the scan puts the appended one back in
    effect, as the thesis requires (a configuration is used once in the log)."""
    net = _net(make_net)
    leader = elected(net)
    f, g = (n for n in net.ids if n != leader)
    spare = net.spares[0]
    net.cut(leader, g)
    out: list[int] = []
    change(net, leader, "add", spare, b"one", out)
    net.run(0.2)
    so = net.nodes[f]
    assert not out and spare in voters(net, f)
    assert so.raftLastApplied < so._SyncObj__getCurrentLogIndex()
    so._SyncObj__doChangeCluster(["rem", spare, spare])  # what a restart starts from
    assert spare not in voters(net, f)
    so._rs_unapplied_changes()
    assert spare in voters(net, f)


def _single(d: Path) -> tuple[MemberSyncObj, Any]:
    from raftsched.replica.raft_node import JobStateMachine
    from tests.unit.test_crash_consistency import NoNet, conf_for

    sm = JobStateMachine()
    conf = conf_for(d, 10_000)
    conf.dynamicMembershipChange = True
    obj = MemberSyncObj("127.0.0.1:1", [], conf, consumers=[sm], transportClass=NoNet,
                        membership_applied=sm.apply_membership, state_voters=sm.voters)
    return obj, sm


def test_after_a_snapshot_load_the_configuration_is_the_states(tmp_path: Path) -> None:
    """pysyncobj stores the snapshotting node's set beside the snapshot and takes it on
    load; the member list of the loaded state (plus later log entries) is what counts."""
    import time

    from raftsched.core import codec
    from raftsched.core.members import AddMember, Member

    obj, sm = _single(tmp_path)
    try:
        deadline = time.monotonic() + 10
        while not obj._isLeader() and time.monotonic() < deadline:
            obj.doTick(0)
        # the state's list says n1 + n2 (a REGULAR entry: Raft's own set stays {n1})
        cmd = AddMember("r1", 1.0, Member("n2", "127.0.0.1:2", "127.0.0.1:3"),
                        (Member("n1", "127.0.0.1:1", "127.0.0.1:4"),))
        done: list[Any] = []
        sm.apply_entry(codec.encode_entry([cmd]), callback=lambda r, _e: done.append(r))
        while not done and time.monotonic() < deadline:
            obj.doTick(0)
        assert done and sorted(sm.voters()) == ["127.0.0.1:1", "127.0.0.1:2"]
        obj.forceLogCompaction()
        while not (tmp_path / "snapshot").exists() and time.monotonic() < deadline:
            obj.doTick(0)
        for _ in range(5):
            obj.doTick(0)
    finally:
        obj._doDestroy()
    again, sm2 = _single(tmp_path)
    try:
        for _ in range(3):
            again.doTick(0)
        assert sorted(sm2.voters()) == ["127.0.0.1:1", "127.0.0.1:2"]
        assert voters_of(again) == {"127.0.0.1:2"}
    finally:
        again._doDestroy()


def voters_of(so: MemberSyncObj) -> set[str]:
    return {n.address for n in so._SyncObj__otherNodes}


def test_prevote_counts_only_answers_of_current_members(make_net: Any) -> None:  # noqa: F811
    """A grant from a node removed since it answered does not count towards a majority."""
    from pysyncobj.node import TCPNode

    net = _net(make_net)
    elected(net)
    so = net.nodes["n1"]
    pv = so._rs_prevote
    assert pv is not None
    answered = {so._SyncObj__selfNode, TCPNode(net.addr["n2"]), TCPNode(net.spares[0])}
    assert pv._members_in(answered) == 2
