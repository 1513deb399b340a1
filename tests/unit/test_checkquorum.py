"""Check-quorum and the ReadIndex contact clock (replica/checkquorum.py) on real
SafeSyncObj replicas over the simulated network and clock of tests/unit/raft_sim.py.

The step-down scenario also runs with check_quorum off, to show that plain pysyncobj
keeps the cut-off leader leading for longer (its own fallback is 2.4 s here)."""

from __future__ import annotations

import pytest
from pysyncobj.syncobj import _RAFT_STATE

from raftsched.config import ConfigError
from raftsched.replica import checkquorum
from tests.unit.raft_sim import MAX_TIMEOUT, STEP, SimNet, elected
from tests.unit.test_security_config import cfg_for

pytestmark = pytest.mark.timeout(60)



def cq(net: SimNet, nid: str) -> checkquorum.CheckQuorum:
    got = net.nodes[nid].rs_checkquorum()
    assert got is not None
    return got


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cut_off_leader_steps_down_within_the_election_timeout(make_net, seed):
    net = make_net(seed=seed)
    leader = elected(net)
    assert cq(net, leader).heard_majority_within(MAX_TIMEOUT)
    net.isolate(leader)
    cut_at = net.clock.t
    net.run_until(lambda: net.state(leader) != _RAFT_STATE.LEADER, 2.0, "the step-down")
    took = net.clock.t - cut_at
    # the last replies arrived just before the cut: no majority for MAX_TIMEOUT, then down
    assert MAX_TIMEOUT - 0.1 <= took <= MAX_TIMEOUT + 0.1, took
    assert net.stats(leader)["checkquorum_stepdowns"] == 1
    assert not cq(net, leader).heard_majority_within(10.0)
    assert net.leader_of(leader) is None
    # the majority elects its own leader; the old one rejoins as a follower
    net.run_until(lambda: len(net.leaders()) == 1, 10, "a new leader of the majority")
    net.rejoin(leader)
    net.run_until(lambda: net.stable_leader() is not None, 10, "one leader for all")
    assert net.stable_leader() != leader


def test_without_check_quorum_the_cut_off_leader_keeps_leading(make_net):
    net = make_net(check_quorum=False)
    leader = elected(net)
    net.isolate(leader)
    net.run(2 * MAX_TIMEOUT)  # well past the check-quorum step-down, before pysyncobj's 2.4 s
    assert net.state(leader) == _RAFT_STATE.LEADER
    assert net.stats(leader)["checkquorum_stepdowns"] == 0
    # the contact clock still tells the truth
    assert not cq(net, leader).heard_majority_within(MAX_TIMEOUT)


def test_a_healthy_leader_never_steps_down(make_net):
    net = make_net()
    leader = elected(net)
    net.cut(leader, next(n for n in net.ids if n != leader))  # one follower lost: still a majority
    net.run(10 * MAX_TIMEOUT)
    assert net.state(leader) == _RAFT_STATE.LEADER
    assert net.stats(leader)["checkquorum_stepdowns"] == 0


def test_read_index_needs_a_majority_answering_after_the_request(make_net):
    net = make_net()
    leader = elected(net)
    c = cq(net, leader)
    net.propose(leader, 3)
    net.run(0.5)
    got = c.read_index()
    assert got is not None
    term, commit = got
    assert commit == net.nodes[leader].raftCommitIndex and term == net.term(leader)
    arrival = net.clock.t
    assert not c.majority_confirmed_after(arrival, term)  # nothing sent after it yet
    net.run_until(lambda: c.majority_confirmed_after(arrival, term), 1.0, "a confirmed round")
    assert not c.majority_confirmed_after(arrival, term + 1)  # another term: never

    # Cut off: replies to heartbeats sent before the request do not count, and none
    # sent after it come back.
    net.isolate(leader)
    arrival = net.clock.t
    net.run(MAX_TIMEOUT / 2)
    assert not c.majority_confirmed_after(arrival, term)


def test_a_reply_delivered_late_does_not_confirm_a_later_request(make_net):
    net = make_net()
    leader = elected(net)
    c = cq(net, leader)
    follower_replies: list = []
    net.isolate(leader)
    net.step()  # heartbeats sent now are lost
    arrival = net.clock.t
    # a reply whose heartbeat was sent before `arrival` reaches the leader after it
    node = next(iter(c.heard))
    follower_replies.append({"type": "next_node_idx", "term": net.term(leader),
                             checkquorum.SENT_KEY: arrival - STEP})
    net.clock.t += STEP
    c.on_reply(node, follower_replies[0])
    assert c.heard[node] > arrival  # heard (check-quorum contact)...
    assert not c.majority_confirmed_after(arrival, net.term(leader))  # ...but not after the read


def test_followers_know_when_they_last_heard_a_leader(make_net):
    net = make_net()
    leader = elected(net)
    follower = next(n for n in net.ids if n != leader)
    assert cq(net, follower).leader_heard_within(MAX_TIMEOUT)
    assert cq(net, follower).read_index() is None  # only a leader serves a read index
    net.isolate(follower)
    net.run(MAX_TIMEOUT)
    assert not cq(net, follower).leader_heard_within(MAX_TIMEOUT)


def test_check_quorum_is_a_cluster_switch_on_by_default(tmp_path):
    assert cfg_for(tmp_path).check_quorum is True
    assert cfg_for(tmp_path, extra="check_quorum = false").check_quorum is False
    with pytest.raises(ConfigError, match="check_quorum must be true or false"):
        cfg_for(tmp_path, extra='check_quorum = "off"')
