"""Calm elections on real node processes in network namespaces (replica/prevote.py).

A follower cut off for several election timeouts, then healed: it ran pre-vote rounds
and lost them all, so no node's term moved and the leader kept its place. A bridge
split (the leader and one follower cannot see each other, the third node sees both):
the cut-off follower's pre-votes are refused by the middle node, which still hears the
leader; no other node ever reports itself leader, and no term moves.
"""

from __future__ import annotations

import time

import pytest

from raftsched.dev.elections import LeaderLog, max_term, raft_views, role, wait_settled
from tests.support.netns import NetnsCluster, netns_available

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

why = netns_available()
EMAX = 0.6  # the test cluster's election_timeout_max (the default)


def settled(c: NetnsCluster, leader: str) -> dict[str, dict[str, float]]:
    return wait_settled(c.cfg, 30, leader)[1]


@pytest.mark.skipif(why is not None, reason=why or "")
def test_cut_follower_and_bridge_split_move_no_term(capsys: pytest.CaptureFixture[str]) -> None:
    c = NetnsCluster()
    try:
        c.start()
        leader = c.wait_ready(60)
        before = settled(c, leader)
        term = max_term(before)
        assert all(v["term"] == term for v in before.values())
        follower, other = [n for n in ("n1", "n2", "n3") if n != leader]

        # 1. A follower cut off both ways for 5 maximum election timeouts.
        with LeaderLog(c.cfg) as log1:
            c.cut(follower)
            time.sleep(5 * EMAX)
            c.heal(follower)
            after = settled(c, leader)
        assert log1.leader_set() == {leader}, f"leadership moved: {log1.seen}"
        assert {n: v["term"] for n, v in after.items()} == {n: term for n in after}
        cut = after[follower]
        assert cut["prevote_rounds_started"] - before[follower]["prevote_rounds_started"] >= 2
        assert cut["prevote_rounds_won"] == before[follower]["prevote_rounds_won"]

        # 2. A bridge split: the leader and `follower` cannot see each other; `other` sees both.
        with LeaderLog(c.cfg) as log2:
            c.split(leader, follower)
            time.sleep(8 * EMAX)
            during = raft_views(c.cfg, [leader, other])
            c.unsplit(leader, follower)
            final = settled(c, leader)
        assert role(during[leader]) == "leader" and role(during[other]) == "follower"
        assert log2.leader_set() == {leader}, f"leadership moved: {log2.seen}"
        assert {n: v["term"] for n, v in final.items()} == {n: term for n in final}
        assert final[follower]["prevote_rounds_started"] - cut["prevote_rounds_started"] >= 2
        assert final[follower]["prevote_rounds_won"] == cut["prevote_rounds_won"]
        assert final[other]["prevotes_refused"] > after[other]["prevotes_refused"]
        with capsys.disabled():
            print(f"\nprevote: leader {leader} term {term}; cut {follower}: "
                  f"{int(cut['prevote_rounds_started'] - before[follower]['prevote_rounds_started'])} "
                  f"pre-vote rounds lost; bridge split: "
                  f"{int(final[follower]['prevote_rounds_started'] - cut['prevote_rounds_started'])} "
                  f"rounds lost, {int(final[other]['prevotes_refused'] - after[other]['prevotes_refused'])} "
                  f"refused by {other}; term growth 0")
    finally:
        c.close()
