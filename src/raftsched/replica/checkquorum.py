"""Check-quorum and the leader's majority-contact clock (Raft thesis sections 6.2, 6.4).

pysyncobj's own fallback (``leaderFallbackTimeout``, 2.4 s or more here) lets a leader
cut off from the others keep leading, accepting proposals it can never commit and
answering reads from a state the majority has moved past, for several seconds.
`CheckQuorum` keeps, per peer, two monotonic times of this node's clock:

* ``heard``: when the last append_entries reply (``next_node_idx`` of the current term;
  raftsafe drops stale-term replies before they get here) arrived from that peer;
* ``confirmed``: the send time of the leader's append_entries that the peer's last
  reply answers. The leader stamps ``rs_sent`` on every append_entries it sends and a
  SafeSyncObj follower echoes it in its reply. A reply that was sent before some
  moment but delivered after it therefore never counts as contact after that moment:
  this is what ReadIndex (`majority_confirmed_after`) needs.

Check-quorum: a leader that has not heard from a majority (itself included) within
``election_timeout_max`` steps down to follower. The maximum, not the minimum: the
rule exists to bound how long a cut-off leader keeps pretending; with heartbeats every
``min/4`` a tick stall (GIL, fork) of the minimum alone would otherwise depose a
healthy leader and cost an election, and stickiness (prevote.py) already keeps the
followers from electing anyone else before the minimum has passed. A new leader gets
one timeout of grace from the moment it took office (etcd does the same). After a
tick stall the replies waiting in the socket are unread: the first tick after a stall
only re-arms the check.

Everything here runs on pysyncobj's tick thread except the read-only queries
(`heard_majority_within`, `majority_confirmed_after`, `read_index`), which the gRPC
thread calls: they read dicts that are replaced, never resized, on the tick thread.
"""

from __future__ import annotations

from typing import Any

import pysyncobj.syncobj as _ps
import structlog
from pysyncobj.syncobj import _RAFT_STATE

log = structlog.get_logger("raftsched.checkquorum")

STAT_NAMES = ("checkquorum_stepdowns",)  # leaderships ended: no majority within the timeout
SENT_KEY = "rs_sent"  # leader's send time stamped on append_entries, echoed in the reply

_INTERNALS = ("_SyncObj__raftState", "_SyncObj__raftCurrentTerm", "_SyncObj__raftLeader",
              "_SyncObj__otherNodes", "_SyncObj__conf", "_SyncObj__raftCommitIndex",
              "_SyncObj__noopIDx")
for _name in ("_SyncObj__setState", "_SyncObj__onLeaderChanged"):
    if not hasattr(_ps.SyncObj, _name):
        raise ImportError(f"checkquorum: pysyncobj internals changed ({_name} missing)")


def now() -> float:
    return _ps.monotonicTime()  # looked up each time: tests may drive pysyncobj's clock


class CheckQuorum:
    """Per-peer contact times of one SyncObj while it leads, and the step-down rule."""

    def __init__(self, so: Any, enabled: bool = True) -> None:
        missing = [n for n in _INTERNALS if not hasattr(so, n)]
        if missing:
            raise ImportError(f"checkquorum: pysyncobj internals changed ({', '.join(missing)} missing)")
        self.so = so
        self.enabled = enabled
        self.stats = dict.fromkeys(STAT_NAMES, 0)
        self.term_led: int | None = None  # the term of the current leadership, if leading
        self.since = float("-inf")  # when that leadership began
        self.heard: dict[Any, float] = {}
        self.confirmed: dict[Any, float] = {}
        self.last_tick: float | None = None
        self.leader_heard = float("-inf")  # last append_entries of a current leader (follower)

    @classmethod
    def install(cls, so: Any, enabled: bool = True) -> CheckQuorum:
        """The clock of `so` (on its tick thread), which from now on stamps its send time
        on each append_entries it sends; a SafeSyncObj follower echoes it in its reply."""
        transport = so._SyncObj__transport
        send = transport.send

        def stamped_send(node: Any, message: Any) -> Any:
            if isinstance(message, dict) and message.get("type") == "append_entries":
                message[SENT_KEY] = now()
            return send(node, message)

        transport.send = stamped_send
        return cls(so, enabled)

    def _timeout(self) -> float:
        return float(self.so._SyncObj__conf.raftMaxTimeout)

    def _majority(self, votes: int, others: int) -> bool:
        return votes > (others + 1) / 2

    # -- tick thread -------------------------------------------------------
    def before_tick(self) -> None:
        so = self.so
        t = now()
        last, self.last_tick = self.last_tick, t
        if so._SyncObj__raftState != _RAFT_STATE.LEADER:
            self.term_led = None
            return
        term = so._SyncObj__raftCurrentTerm
        if self.term_led != term:  # a new leadership: forget the previous one's replies
            others = list(so._SyncObj__otherNodes)
            self.heard = dict.fromkeys(others, float("-inf"))
            self.confirmed = dict.fromkeys(others, float("-inf"))
            self.term_led, self.since = term, t
            return
        self._follow_membership(so._SyncObj__otherNodes)
        stalled = last is not None and t - last > float(so._SyncObj__conf.raftMinTimeout) / 2
        if not self.enabled or stalled:
            return
        horizon = t - self._timeout()
        if self.since > horizon or self._count(self.heard, horizon):
            return
        self.stats["checkquorum_stepdowns"] += 1
        log.warning("check-quorum: no majority heard within the election timeout; stepping down",
                    term=term, timeout=self._timeout())
        so._SyncObj__setState(_RAFT_STATE.FOLLOWER)
        so._SyncObj__raftLeader = None
        so._SyncObj__onLeaderChanged()
        self.term_led = None

    def _follow_membership(self, others: Any) -> None:
        """The Raft configuration changed while leading (replica/membership.py): count
        majorities over the new set. A node just added has not been heard (so the larger
        majority must answer before leases or reads are confirmed again); a removed one
        no longer counts. The dicts are replaced, never resized (other threads read them)."""
        heard = self.heard
        if len(others) == len(heard) and all(n in heard for n in others):
            return
        confirmed = self.confirmed
        self.heard = {n: heard.get(n, float("-inf")) for n in others}
        self.confirmed = {n: confirmed.get(n, float("-inf")) for n in others}

    def on_append_entries(self, message: dict[str, Any]) -> None:
        """An append_entries reached this node: a leader of at least our term is alive."""
        term = message.get("term")
        if isinstance(term, int) and term >= self.so._SyncObj__raftCurrentTerm:
            self.leader_heard = now()

    def on_reply(self, node: Any, message: dict[str, Any]) -> None:
        """A current-term next_node_idx reply reached this (leading) node."""
        term = self.so._SyncObj__raftCurrentTerm
        if self.term_led != term or message.get("term") != term or node not in self.heard:
            return
        self.heard[node] = now()
        sent = message.get(SENT_KEY)
        if isinstance(sent, float) and sent > self.confirmed.get(node, float("-inf")):
            self.confirmed[node] = sent

    # -- any thread (read-only) ----------------------------------------------
    def _count(self, times: dict[Any, float], after: float) -> bool:
        try:
            votes = 1 + sum(1 for v in list(times.values()) if v > after)
        except RuntimeError:
            return False
        return self._majority(votes, len(times))

    def leading(self) -> bool:
        so = self.so
        return so._SyncObj__raftState == _RAFT_STATE.LEADER and self.term_led == so._SyncObj__raftCurrentTerm

    def leader_heard_within(self, seconds: float) -> bool:
        """Follower: an append_entries of a current leader arrived within `seconds`."""
        return now() - self.leader_heard < seconds

    def contact_age(self) -> float:
        """Leader: seconds since a majority (itself included) last answered; otherwise:
        seconds since an append_entries of a current leader arrived (inf: never)."""
        t = now()
        if not self.leading():
            return t - self.leader_heard
        try:
            times = sorted(list(self.heard.values()), reverse=True)
        except RuntimeError:
            return float("inf")
        need = (len(times) + 1) // 2  # peers needed besides this node for a majority
        return 0.0 if need == 0 else t - times[need - 1]

    def heard_majority_within(self, seconds: float) -> bool:
        """Leader, and a majority (itself included) answered within the last `seconds`."""
        return self.leading() and self._count(self.heard, now() - seconds)

    def majority_confirmed_after(self, t: float, term: int) -> bool:
        """Still leader of `term`, and a majority answered heartbeats sent after `t`."""
        return (self.leading() and self.so._SyncObj__raftCurrentTerm == term
                and self._count(self.confirmed, t))

    def read_index(self) -> tuple[int, int] | None:
        """(term, commit index) if this node leads and has committed an entry of its own
        term (its no-op), so its commit index covers every entry committed before it led;
        else None."""
        so = self.so
        term, commit, noop = (so._SyncObj__raftCurrentTerm, so._SyncObj__raftCommitIndex,
                              so._SyncObj__noopIDx)
        if not self.leading() or noop is None or commit < noop:
            return None
        return int(term), int(commit)
