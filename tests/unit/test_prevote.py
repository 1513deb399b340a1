"""Pre-vote and leader stickiness (replica/prevote.py) on real SafeSyncObj replicas over a
simulated network and clock (tests/unit/raft_sim.py): deterministic, no sockets.

Each scenario that pre-vote is meant to calm also runs with pre-vote off, to show that
the scenario does disturb plain pysyncobj (the test could fail)."""

from __future__ import annotations

import pytest
from pysyncobj.syncobj import _RAFT_STATE

from raftsched.config import ConfigError
from raftsched.replica import prevote
from tests.unit.raft_sim import MAX_TIMEOUT, MIN_TIMEOUT, elected
from tests.unit.test_security_config import cfg_for

pytestmark = pytest.mark.timeout(60)



@pytest.mark.parametrize("seed", [1, 2, 3])
def test_isolated_follower_keeps_its_term_and_rejoins_without_deposing(make_net, seed):
    net = make_net(seed=seed)
    leader = elected(net)
    follower = next(n for n in net.ids if n != leader)
    terms = net.terms()

    net.isolate(follower)
    for _ in range(5):  # 5 x 3 election timeouts cut off
        net.run(3 * MAX_TIMEOUT)
        assert net.term(follower) == terms[follower], "the cut-off node raised its term"
        assert net.state(follower) != _RAFT_STATE.LEADER
    st = net.stats(follower)
    assert st["prevote_rounds_started"] >= 5 and st["prevote_rounds_won"] == 0
    assert st["prevote_rounds_lost"] >= st["prevote_rounds_started"] - 1
    assert net.stable_leader() is None  # the follower no longer hears the leader...
    assert net.leaders() == [leader]  # ...who stays leader of the majority

    net.rejoin(follower)
    net.run(3.0)
    assert net.stable_leader() == leader
    assert net.terms() == terms  # term growth 0 on every node


def test_without_prevote_the_isolated_follower_deposes_the_leader(make_net):
    net = make_net(pre_vote=False)
    leader = elected(net)
    follower = next(n for n in net.ids if n != leader)
    term = net.term(leader)

    net.isolate(follower)
    net.run(15 * MAX_TIMEOUT)
    assert net.term(follower) > term + 5  # pysyncobj campaigns on every timeout
    net.rejoin(follower)
    net.run_until(lambda: net.stable_leader() is not None and net.term(leader) > term, 10,
                  "the rejoined node's term spreading")
    assert net.term(leader) > term  # the healthy leader was deposed by the higher term


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bridge_split_keeps_the_leader(make_net, seed):
    """The leader and one follower cannot see each other; the third node sees both."""
    net = make_net(seed=seed)
    leader = elected(net)
    end, middle = [n for n in net.ids if n != leader]
    terms = net.terms()

    net.cut(leader, end)
    net.run(20 * MAX_TIMEOUT)
    assert net.leaders() == [leader]
    assert net.leader_of(middle) == leader
    assert net.terms() == terms
    assert net.stats(end)["prevote_rounds_started"] >= 5
    assert net.stats(middle)["prevotes_refused"] >= 5  # it still hears the leader

    net.heal(leader, end)
    net.run(3.0)
    assert net.stable_leader() == leader and net.terms() == terms


def test_without_prevote_a_bridge_split_moves_leadership(make_net):
    net = make_net(pre_vote=False)
    leader = elected(net)
    end = next(n for n in net.ids if n != leader)
    term = net.term(leader)
    net.cut(leader, end)
    net.run(20 * MAX_TIMEOUT)
    assert max(net.terms().values()) > term + 2


def test_stale_log_cannot_win_a_prevote(make_net):
    net = make_net()
    leader = elected(net)
    stale, fresh = [n for n in net.ids if n != leader]
    net.isolate(stale)
    net.propose(leader, 5)
    net.run(1.0)
    assert net.recs[fresh].applied == [0, 1, 2, 3, 4]
    terms = net.terms()

    # The leader dies; the stale node heals and its election timer fires first.
    net.down.add(leader)
    net.rejoin(stale)
    net.clock.t += MIN_TIMEOUT + 0.05  # nobody has heard a leader for a while
    now = net.clock.t
    net.nodes[fresh]._SyncObj__raftElectionDeadline = now + 2.0
    net.nodes[stale]._SyncObj__raftElectionDeadline = now - 0.001
    net.run(1.5)  # the stale node tries more than once, the fresh one not yet
    assert net.stats(stale)["prevote_rounds_started"] >= 2
    assert net.stats(stale)["prevote_rounds_won"] == 0
    assert net.stats(fresh)["prevotes_refused"] >= 2
    assert net.term(stale) == terms[stale] and net.term(fresh) == terms[fresh]
    assert net.leaders() == []

    net.run_until(lambda: net.stable_leader() is not None, 10, "a new leader")
    assert net.stable_leader() == fresh
    assert net.term(fresh) == terms[fresh] + 1  # one election, one term
    net.run(1.0)
    assert net.recs[stale].applied == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_leader_killed_a_new_one_is_elected(make_net, seed):
    net = make_net(seed=seed)
    leader = elected(net)
    term = net.term(leader)
    net.down.add(leader)
    net.run_until(lambda: net.stable_leader() is not None, 10, "a new leader")
    new = net.stable_leader()
    assert new != leader
    assert net.term(new) > term
    assert net.stats(new)["prevote_rounds_won"] >= 1
    net.propose(new, 3)
    net.run(1.0)
    others = [n for n in net.ids if n not in (leader, new)]
    assert net.recs[others[0]].applied == [0, 1, 2]


def test_sticky_follower_ignores_a_vote_request_while_it_hears_its_leader(make_net):
    net = make_net()
    leader = elected(net)
    follower, other = [n for n in net.ids if n != leader]
    term = net.term(follower)
    follow = net.nodes[follower]
    last_idx = follow._SyncObj__getCurrentLogIndex()
    last_term = follow._SyncObj__getCurrentLogTerm()
    vote = {"type": "request_vote", "term": term + 3, "last_log_index": last_idx + 10,
            "last_log_term": last_term}

    net.transports[follower].receive(other, dict(vote))
    assert net.term(follower) == term and net.leader_of(follower) == leader
    assert net.stats(follower)["votes_refused_sticky"] == 1
    assert not [q for q in net.queue if q[0] == follower and q[1] == other]  # no reply

    # Once the leader has been silent for the minimum election timeout, the vote counts.
    net.down.add(leader)
    net.clock.t += MIN_TIMEOUT + 0.01
    net.transports[follower].receive(other, dict(vote))
    assert net.term(follower) == term + 3
    assert follow._SyncObj__votedForNodeId == net.addr[other]


def test_node_with_a_higher_term_gets_back_in(make_net):
    """A node that raised its term (it won a pre-vote, then lost the election) is not shut
    out: its term notice makes the leader step down and a new election includes it."""
    net = make_net()
    leader = elected(net)
    odd = next(n for n in net.ids if n != leader)
    term = net.term(leader)
    net.nodes[odd]._SyncObj__setCurrentTerm(term + 4, None)
    net.run_until(lambda: net.stable_leader() is not None and net.term(leader) > term, 10,
                  "a leader in the higher term")
    assert all(t >= term + 4 for t in net.terms().values())
    assert len(set(net.terms().values())) == 1
    assert net.stats(leader)["terms_adopted"] >= 1 or net.stable_leader() != leader


def test_leadership_transfer_still_works(make_net):
    """Five nodes: the target needs the votes of followers that still hear the old leader."""
    net = make_net(n=5)
    leader = elected(net)
    target = next(n for n in net.ids if n != leader)
    done = []
    net.nodes[leader].transferLeadership(net.addr[target], callback=lambda r, e: done.append(e))
    net.run_until(lambda: net.stable_leader() == target, 5, "the transfer")
    assert done == [0]  # FAIL_REASON.SUCCESS


def test_malformed_prevote_messages_are_dropped(make_net):
    net = make_net()
    leader = elected(net)
    follower = next(n for n in net.ids if n != leader)
    terms = net.terms()
    for msg in ({"type": prevote.PRE_REQUEST}, {"type": prevote.PRE_RESPONSE, "round": "x"},
                {"type": prevote.TERM_NOTICE, "term": None}):
        net.transports[follower].receive(leader, msg)
        net.transports[leader].receive(follower, msg)
    net.run(2.0)
    assert net.stable_leader() == leader and net.terms() == terms


def test_pre_vote_is_a_cluster_switch_on_by_default(tmp_path):
    assert cfg_for(tmp_path).pre_vote is True
    assert cfg_for(tmp_path, extra="pre_vote = false").pre_vote is False
    with pytest.raises(ConfigError, match="pre_vote must be true or false"):
        cfg_for(tmp_path, extra='pre_vote = "off"')


def test_counters_exist_only_with_pre_vote(make_net):
    on, off = make_net(), make_net(pre_vote=False)
    on.run(0.1)
    off.run(0.1)
    assert set(prevote.STAT_NAMES) <= set(on.stats("n1"))
    assert not set(prevote.STAT_NAMES) & set(off.stats("n1"))


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_a_stall_of_every_node_does_not_start_an_election(make_net, seed):
    """All three processes descheduled for a second (a loaded machine): when they run
    again every follower's deadline has passed, but the leader's heartbeat is on its way;
    nobody grants or starts an election before reading it."""
    net = make_net(seed=seed)
    leader = elected(net)
    terms = net.terms()
    for _ in range(3):
        net.clock.t += 1.0
        net.run(1.0)
        assert net.terms() == terms and net.stable_leader() == leader
    assert all(net.stats(n)["prevote_rounds_started"] == 0 for n in net.ids if n != leader)
