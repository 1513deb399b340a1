"""Pre-vote and leader stickiness over pysyncobj 0.3.17 (Raft thesis sections 9.6, 4.2.3).

pysyncobj starts an election as soon as a follower's election deadline passes: it
increments its term and sends request_vote. A node cut off from the leader therefore
bumps its term on every timeout, and when it can reach the others again (or, under a
bridge split, reaches one node that still hears the leader) its higher term deposes a
perfectly healthy leader. `PreVote` puts two rules in front of that:

* **Pre-vote.** When the election deadline passes, the node first sends
  ``pre_request_vote`` carrying the term it *would* campaign in (current + 1) and its
  last log index/term, without changing its own term or vote, and re-arms its
  deadline. A peer grants only if it is not in contact with a leader (it has not
  heard from one within the minimum election timeout; a leader never grants) and the
  candidate's log is at least as up-to-date as its own. With a majority of grants
  (itself included) the next tick lets pysyncobj run its real election; otherwise the
  node stays a follower at the same term and tries again at its next deadline.
* **Stickiness.** A follower that has heard from its leader within the minimum
  election timeout drops request_vote from any other node: it neither grants the
  vote nor adopts the higher term. A leadership transfer (pysyncobj's
  ``transferLeadership``/``timeout_now``, unused by raftsched today) is exempt: its
  target skips the pre-vote and announces the transfer first (``pv_transfer``), so
  the followers let that one election through.

* **Stalls.** pysyncobj checks the election deadline before it reads the messages that
  arrived. In the first tick after a stall (no tick for half the minimum election
  timeout) the leader's heartbeats may still be unread, so the node neither starts a
  round (it re-arms its deadline briefly and reads first) nor grants a pre-vote.

Two more messages keep a node that did raise its term (it won a pre-vote, then lost
the election) from being shut out for good: a pre-vote reply carries the voter's term
and a candidate behind it adopts that term; and a node that receives append_entries
from a leader of a lower term answers ``pv_term`` with its own term, on which that
leader steps down so that a new election at the higher term lets the node back in
(etcd's answer to the same problem).

All of it runs on pysyncobj's tick thread (the hooks are called from SafeSyncObj's
``_onTick`` and message handler); pysyncobj never sees the new message types.
"""

from __future__ import annotations

from typing import Any

import pysyncobj.syncobj as _ps
import structlog
from pysyncobj.syncobj import _RAFT_STATE

# Elections are rare and worth a line each (a won round, a granted pre-vote, a vote
# refused by stickiness, a term adopted); a lost round (every timeout while cut off) is not.
log = structlog.get_logger("raftsched.prevote")

PRE_REQUEST = "pre_request_vote"
PRE_RESPONSE = "pre_response_vote"
TERM_NOTICE = "pv_term"
TRANSFER = "pv_transfer"
MESSAGE_TYPES = frozenset((PRE_REQUEST, PRE_RESPONSE, TERM_NOTICE, TRANSFER))

STAT_NAMES = (
    "prevote_rounds_started",  # pre-vote rounds this node began
    "prevote_rounds_won",  # ... that reached a majority (a real election followed)
    "prevote_rounds_lost",  # ... that did not (the term stayed)
    "prevotes_granted",  # pre-votes this node granted to others
    "prevotes_refused",  # pre-votes this node refused
    "votes_refused_sticky",  # request_vote dropped: this node still hears its leader
    "terms_adopted",  # a pre-vote reply or pv_term carried a higher term
)

# Name-mangled pysyncobj internals this module reads or sets; fail loudly if they move.
_INTERNALS = ("_SyncObj__raftElectionDeadline", "_SyncObj__raftState", "_SyncObj__raftCurrentTerm",
              "_SyncObj__votedForNodeId", "_SyncObj__raftLeader", "_SyncObj__transport",
              "_SyncObj__otherNodes", "_SyncObj__selfNode", "_SyncObj__transferInProgress",
              "_SyncObj__conf")
_METHODS = ("_SyncObj__connectedToAnyone", "_SyncObj__onLeaderChanged", "_SyncObj__generateRaftTimeout",
            "_SyncObj__setCurrentTerm", "_SyncObj__setState", "_SyncObj__getCurrentLogIndex",
            "_SyncObj__getCurrentLogTerm")
for _name in _METHODS:
    if not hasattr(_ps.SyncObj, _name):
        raise ImportError(f"prevote: pysyncobj internals changed ({_name} missing)")


def _now() -> float:
    return _ps.monotonicTime()  # looked up each time: tests may drive pysyncobj's clock


class PreVote:
    """Pre-vote and stickiness state of one SyncObj; every method runs on its tick thread."""

    def __init__(self, so: Any) -> None:
        missing = [n for n in _INTERNALS if not hasattr(so, n)]
        if missing:
            raise ImportError(f"prevote: pysyncobj internals changed ({', '.join(missing)} missing)")
        self.so = so
        self.stats = dict.fromkeys(STAT_NAMES, 0)
        self.leader_seen = float("-inf")  # last append_entries from a current leader
        self.round = 0  # id of the latest pre-vote round
        self.round_open = False
        self.round_term = 0  # the term the open round asks for
        self.grants: set[Any] = set()
        self.refusals: set[Any] = set()
        self.approved: tuple[int, float] | None = None  # (term, when) of a won round
        self.transfer_from: tuple[Any, int] | None = None  # (node, term) announced by pv_transfer
        self.notice_sent: dict[Any, float] = {}
        self.last_tick: float | None = None
        # This tick follows a stall (no tick for half the minimum election timeout): the
        # leader's heartbeats may be waiting unread behind the messages handled first.
        self.suspect = False

    # -- helpers ---------------------------------------------------------
    def _majority(self, votes: int) -> bool:
        return votes > (len(self.so._SyncObj__otherNodes) + 1) / 2

    def _members_in(self, nodes: set[Any]) -> int:
        """How many of `nodes` are in the current configuration (it may have changed since
        they answered: replica/membership.py); this node counts."""
        so = self.so
        members = so._SyncObj__otherNodes
        return sum(1 for n in nodes if n == so._SyncObj__selfNode or n in members)

    def _min_timeout(self) -> float:
        return float(self.so._SyncObj__conf.raftMinTimeout)

    def in_contact(self) -> bool:
        """Heard from a current leader (not this node) within the minimum election timeout."""
        so = self.so
        leader = so._SyncObj__raftLeader
        if leader is None or leader == so._SyncObj__selfNode:
            return False
        return _now() - self.leader_seen < self._min_timeout()

    def _log_ok(self, last_index: int, last_term: int) -> bool:
        so = self.so
        my_term = so._SyncObj__getCurrentLogTerm()
        return last_term > my_term or (
            last_term == my_term and last_index >= so._SyncObj__getCurrentLogIndex())

    def _adopt(self, term: int) -> None:
        """A higher term seen: follow it like pysyncobj does on a higher-term request_vote."""
        so = self.so
        so._SyncObj__setCurrentTerm(term, None)
        so._SyncObj__setState(_RAFT_STATE.FOLLOWER)
        so._SyncObj__raftLeader = None
        self.stats["terms_adopted"] += 1

    def _close_round(self, won: bool) -> None:
        if self.round_open:
            self.stats["prevote_rounds_won" if won else "prevote_rounds_lost"] += 1
        self.round_open = False

    # -- tick ------------------------------------------------------------
    def before_tick(self) -> None:
        """Runs before pysyncobj's tick: turn an expired election deadline into a pre-vote
        round, unless a won round (or a leadership transfer) lets the election go ahead."""
        so = self.so
        now = _now()
        last, self.last_tick = self.last_tick, now
        self.suspect = last is not None and now - last > self._min_timeout() / 2
        if so._SyncObj__raftState == _RAFT_STATE.LEADER or so._SyncObj__selfNode is None:
            self._close_round(False)
            self.approved = None
            return
        if so._SyncObj__raftElectionDeadline >= now or not so._SyncObj__connectedToAnyone():
            return
        term = so._SyncObj__raftCurrentTerm
        if so._SyncObj__transferInProgress:
            # TimeoutNow from our leader: campaign at once, and tell the followers so that
            # stickiness lets this one election through.
            self._send_all({"type": TRANSFER, "term": term + 1})
            return
        if self.suspect or self.in_contact():
            # After a stall, read what arrived before deciding the leader is gone (pysyncobj
            # checks the deadline before it polls); and a leader heard from recently (a
            # message raftsafe dropped did not re-arm pysyncobj's deadline) is not gone.
            so._SyncObj__raftElectionDeadline = now + self._min_timeout() / 3
            return
        approved, self.approved = self.approved, None
        if approved is not None and approved[0] == term + 1 and now - approved[1] < self._min_timeout():
            return  # a majority granted the pre-vote: pysyncobj's election runs in this tick
        self._close_round(False)  # the previous round, if any, timed out
        if so._SyncObj__raftLeader is not None:
            # The leader went silent: forget it, as pysyncobj (and etcd's pre-candidate) does
            # when it starts an election; requests forwarded to it fail now, not later.
            so._SyncObj__raftLeader = None
            so._SyncObj__onLeaderChanged()
        self.round += 1
        self.round_open, self.round_term = True, term + 1
        self.grants, self.refusals = {so._SyncObj__selfNode}, set()
        self.stats["prevote_rounds_started"] += 1
        if self._majority(1):  # a one-node cluster: nothing to ask
            self._close_round(True)
            return
        so._SyncObj__raftElectionDeadline = now + so._SyncObj__generateRaftTimeout()
        self._send_all({"type": PRE_REQUEST, "term": term + 1, "round": self.round,
                        "last_log_index": so._SyncObj__getCurrentLogIndex(),
                        "last_log_term": so._SyncObj__getCurrentLogTerm()})

    def _send_all(self, message: dict[str, Any]) -> None:
        so = self.so
        for node in so._SyncObj__otherNodes:
            so._SyncObj__transport.send(node, message)

    # -- messages ----------------------------------------------------------
    def on_message(self, node: Any, message: dict[str, Any]) -> bool:
        """Called before pysyncobj sees a message; True means it was handled (or dropped)."""
        kind = message.get("type")
        if kind in MESSAGE_TYPES:
            try:
                if kind == PRE_REQUEST:
                    self._on_pre_request(node, message)
                elif kind == PRE_RESPONSE:
                    self._on_pre_response(node, message)
                elif kind == TERM_NOTICE:
                    self._on_term_notice(message)
                else:
                    self.transfer_from = (node, int(message["term"]))
            except (KeyError, TypeError, ValueError):
                log.warning("malformed pre-vote message dropped", kind=kind, peer=str(node))
            return True
        if kind == "append_entries":
            self._on_append_entries(node, message)
            return False
        if kind == "request_vote":
            return self._sticky_refusal(node, message)
        return False

    def _on_append_entries(self, node: Any, message: dict[str, Any]) -> None:
        so = self.so
        term = so._SyncObj__raftCurrentTerm
        if message.get("term", -1) >= term:
            self.leader_seen = _now()  # pysyncobj follows this leader
            self.approved = None
            self._close_round(False)
            return
        if so._SyncObj__raftState == _RAFT_STATE.LEADER:
            return
        # A leader of a lower term: we raised our term and it cannot know; tell it
        # (at most once per minimum election timeout) so that it steps down.
        now = _now()
        if now - self.notice_sent.get(node, float("-inf")) >= self._min_timeout():
            self.notice_sent[node] = now
            so._SyncObj__transport.send(node, {"type": TERM_NOTICE, "term": term})

    def _sticky_refusal(self, node: Any, message: dict[str, Any]) -> bool:
        so = self.so
        if message.get("term", -1) < so._SyncObj__raftCurrentTerm or not self.in_contact():
            return False
        if node == so._SyncObj__raftLeader:
            return False
        transfer = self.transfer_from
        if transfer is not None and transfer == (node, message.get("term")):
            return False  # a leadership transfer announced by its target
        self.stats["votes_refused_sticky"] += 1
        log.info("vote refused: this node still hears its leader", candidate=str(node),
                 candidate_term=message.get("term"), leader=str(so._SyncObj__raftLeader))
        return True

    def _on_pre_request(self, node: Any, message: dict[str, Any]) -> None:
        so = self.so
        term = so._SyncObj__raftCurrentTerm
        asked = int(message["term"])
        granted = (
            so._SyncObj__raftState != _RAFT_STATE.LEADER
            and not self.suspect  # just back from a stall: we cannot tell yet
            and not self.in_contact()
            and (asked > term or (asked == term and so._SyncObj__votedForNodeId in (None, node.id)))
            and self._log_ok(int(message["last_log_index"]), int(message["last_log_term"]))
        )
        self.stats["prevotes_granted" if granted else "prevotes_refused"] += 1
        if granted:
            log.info("pre-vote granted", candidate=str(node), candidate_term=asked)
        so._SyncObj__transport.send(node, {"type": PRE_RESPONSE, "term": term,
                                           "round": message["round"], "granted": granted})

    def _on_pre_response(self, node: Any, message: dict[str, Any]) -> None:
        so = self.so
        if not self.round_open or message["round"] != self.round:
            return  # a reply to an older round
        if int(message["term"]) > so._SyncObj__raftCurrentTerm and not message["granted"]:
            # The voter is in a later term than we would campaign in: catch up first.
            log.info("pre-vote reply from a later term; adopting it", peer=str(node),
                     its_term=message["term"])
            self._close_round(False)
            self._adopt(int(message["term"]))
            return
        (self.grants if message["granted"] else self.refusals).add(node)
        if self._majority(self._members_in(self.grants)):
            log.info("pre-vote won; starting an election", election_term=self.round_term,
                     grants=sorted(str(n) for n in self.grants))
            self._close_round(True)
            self.approved = (self.round_term, _now())
            so._SyncObj__raftElectionDeadline = 0  # the next tick starts the election
        elif self._majority(self._members_in(self.refusals)):
            self._close_round(False)

    def _on_term_notice(self, message: dict[str, Any]) -> None:
        so = self.so
        term = int(message["term"])
        if so._SyncObj__raftState == _RAFT_STATE.LEADER and term > so._SyncObj__raftCurrentTerm:
            log.warning("a node is in a later term; leader steps down", its_term=term,
                        our_term=so._SyncObj__raftCurrentTerm)
            self._adopt(term)
