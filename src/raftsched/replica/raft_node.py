"""The job state machine inside pysyncobj.

Exactly one `@replicated` entry point, `apply_entry`, which decodes a group of
commands and hands each to `core.apply.apply`. pysyncobj numbers replicated methods by
sorted name, so adding another would shift ids and break old journals: new
behaviour gets a new command tag in `codec`, never a new replicated method.

Snapshots: `_serialize` returns a small object whose pickling (which pysyncobj
does in a forked child when `fullDumpFile` is set) calls `ClusterState.to_dict`,
so the tick thread never stalls on a large state.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from pysyncobj import SyncObjConf, SyncObjConsumer, replicated
from pysyncobj.syncobj import _RAFT_STATE

from raftsched.config import ClusterConfig, NodeConfig
from raftsched.core import codec
from raftsched.core.apply import apply
from raftsched.core.commands import Command
from raftsched.core.lagstats import LagStats
from raftsched.core.members import members_of
from raftsched.core.model import Job
from raftsched.core.state import ClusterState, Result
from raftsched.replica.checkquorum import now as checkquorum_now
from raftsched.replica.membership import MemberSyncObj, RaftMembership
from raftsched.replica.rafttransport import BoundedTransport

log = structlog.get_logger("raftsched.raft")

# (commands, their results, job versions written, Raft index) on the tick thread
AppliedHook = Callable[[list[Command], list[Result], list[Job], int], None]


class _SnapshotView:
    """Pickles as the state's plain versioned dict (evaluated in the forked child)."""

    def __init__(self, state: ClusterState) -> None:
        self._state = state

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self._state.to_dict(),))


class JobStateMachine(SyncObjConsumer):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.state = ClusterState()
        # Held while applying; readers take it to see a consistent state.
        self.lock = threading.RLock()
        self.hooks: list[AppliedHook] = []
        self.restore_hooks: list[Callable[[], None]] = []  # after a snapshot replaced the state

    @replicated  # type: ignore[misc]
    def apply_entry(self, blob: bytes) -> list[Result]:
        return self.apply_blob(blob)

    def apply_membership(self, blob: bytes) -> None:
        """The command carried by a membership entry (replica/membership.py), applied at
        that entry's index like any other: not a second replicated method."""
        self.apply_blob(blob)

    def apply_blob(self, blob: bytes) -> list[Result]:
        try:
            cmds = codec.decode_entry(blob)
        except Exception as e:  # same bytes on every replica: all skip alike
            log.error("undecodable log entry skipped", error=str(e))
            return []
        with self.lock:
            index = self._syncObj.raftLastApplied + 1
            self.state.changes = []
            results = [apply(self.state, c) for c in cmds]
            self.state.applied_index = index
            changes, self.state.changes = self.state.changes, []
        for hook in self.hooks:
            try:
                hook(cmds, results, changes, index)
            except Exception:
                log.exception("applied hook failed")
        return results

    def voters(self) -> list[str]:
        """Raft addresses of the state's member list (empty: not changed since the seed)."""
        return [m.raft for m in members_of(self.state).members.values()]

    def _serialize(self) -> _SnapshotView:
        return _SnapshotView(self.state)

    def _deserialize(self, data: dict[str, Any]) -> None:
        state = ClusterState.from_dict(data)
        with self.lock:
            self.state = state
        log.info("state restored from snapshot", applied_index=state.applied_index)
        for hook in self.restore_hooks:
            hook()


def make_conf(cfg: ClusterConfig, data_dir: Path) -> SyncObjConf:
    data_dir.mkdir(parents=True, exist_ok=True)
    return SyncObjConf(
        password=cfg.secret,
        journalFile=str(data_dir / "raft.journal"),
        fullDumpFile=str(data_dir / "raft.snapshot"),
        appendEntriesUseBatch=cfg.append_entries_batch,
        raftMinTimeout=cfg.election_timeout_min,
        raftMaxTimeout=cfg.election_timeout_max,
        appendEntriesPeriod=min(0.1, cfg.election_timeout_min / 4),
        # Followers never talk to each other; a short connection timeout makes
        # the first vote request after a leader death get dropped.
        connectionTimeout=60.0,
        connectionRetryTime=0.5,
        leaderFallbackTimeout=max(2.0, cfg.election_timeout_max * 4),
        logCompactionMinEntries=cfg.log_compaction_entries,
        logCompactionMinTime=600,
        commandsQueueSize=1_000_000,
        bindRetryTime=0.5,
        maxBindRetries=20,
        dynamicMembershipChange=True,  # one server at a time: replica/membership.py
    )


def make_syncobj(cfg: ClusterConfig, me: NodeConfig, sm: JobStateMachine) -> Any:
    conf = make_conf(cfg, cfg.node_data_dir(me.id))
    others = [n.raft for n in cfg.nodes if n.id != me.id]
    so = MemberSyncObj(me.raft, others, conf, consumers=[sm], fsync=cfg.fsync,
                       transportClass=BoundedTransport, pre_vote=cfg.pre_vote,
                       check_quorum=cfg.check_quorum, membership_applied=sm.apply_membership,
                       state_voters=sm.voters)
    try:
        so.waitBinded()
    except Exception as e:
        so.destroy()
        raise RuntimeError(f"cannot bind the Raft address {me.raft} (in use?)") from e
    return so


class RaftNode:
    """This node's Raft position (the `ports.RaftStatus` port): every query of
    pysyncobj's internals lives here."""

    def __init__(self, cfg: ClusterConfig, me: NodeConfig, sm: JobStateMachine,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.cfg = cfg
        self.syncobj = make_syncobj(cfg, me, sm)
        self.membership = RaftMembership(self.syncobj, loop or asyncio.get_event_loop())
        self.tick_lag = LagStats()  # how far each Raft tick overran its period
        self.syncobj._rs_tick_observer = self.tick_lag.observe

    def tick_thread_id(self) -> int | None:
        """The Linux thread id of pysyncobj's tick thread (node/priority.py)."""
        t = getattr(self.syncobj, "_SyncObj__thread", None)
        return getattr(t, "native_id", None)

    def term(self) -> int:
        return int(self.syncobj.raftCurrentTerm)

    def commit_index(self) -> int:
        return int(self.syncobj.raftCommitIndex)

    def is_leader(self) -> bool:
        return bool(self.syncobj._isLeader())

    def leader_config(self) -> NodeConfig | None:
        leader = self.syncobj._getLeader()
        if leader is None:
            return None
        return self.cfg.node_by_raft(getattr(leader, "address", str(leader)))

    def member_progress(self) -> dict[str, tuple[int, bool]]:
        """Leader: Raft address -> (match index, connected) of every other voter."""
        return self.syncobj.rs_progress() if self.is_leader() else {}

    def voters(self) -> list[str]:
        return self.syncobj.rs_voters()

    def role(self) -> str:
        st = self.syncobj.getStatus()["state"]
        return {
            _RAFT_STATE.LEADER: "leader",
            _RAFT_STATE.CANDIDATE: "candidate",
            _RAFT_STATE.FOLLOWER: "follower",
        }.get(st, "unknown")

    def leader_confirmed(self) -> bool:
        """Leader, and heard from a majority recently enough that a lease granted now
        ends before any other leader could reassign work: a new leader needs at least
        the minimum election timeout after the followers last heard from us, then one
        heartbeat TTL, while a lease lasts `lease` < TTL. Allowing half the TTL - lease
        margin on top of the election timeout keeps the other half as safety margin.
        A leader cut off from the others thus stops renewing leases (its own too)."""
        if not self.is_leader():
            return False
        cfg = self.cfg
        window = cfg.election_timeout_min + (cfg.heartbeat_ttl - cfg.lease) / 2
        # the check-quorum clock: replies of this leadership only (no grace at election)
        return self.heard_majority_within(window)

    def heard_majority_within(self, seconds: float) -> bool:
        """Leader, and a majority (itself included) answered it within `seconds`."""
        cq = self.syncobj.rs_checkquorum()
        return cq is not None and cq.heard_majority_within(seconds)

    def leader_heard_within(self, seconds: float) -> bool:
        """Not the leader, and an append_entries of a current leader came within `seconds`."""
        cq = self.syncobj.rs_checkquorum()
        return cq is not None and not self.is_leader() and cq.leader_heard_within(seconds)

    def contact_age(self) -> float | None:
        """Seconds since this leader heard from a majority, or this follower from its
        leader (None: never, or Raft not running yet)."""
        cq = self.syncobj.rs_checkquorum()
        if cq is None:
            return None
        age = cq.contact_age()
        return None if age == float("inf") else age

    def read_index_begin(self) -> tuple[int, int, float] | None:
        """ReadIndex, step 1 (leader): (term, commit index, arrival time), or None when this
        node does not lead or has not yet committed an entry of its own term."""
        cq = self.syncobj.rs_checkquorum()
        if cq is None:
            return None
        arrival = checkquorum_now()
        got = cq.read_index()
        return None if got is None else (got[0], got[1], arrival)

    def read_index_confirmed(self, term: int, arrival: float) -> bool:
        """ReadIndex, step 2: still leader of `term`, and a majority answered heartbeats
        this node sent after `arrival`."""
        cq = self.syncobj.rs_checkquorum()
        return cq is not None and cq.majority_confirmed_after(arrival, term)

    def safety_stats(self) -> dict[str, int]:
        """Counters of the Raft-safety layer (replica/raftsafe.py): messages rewritten,
        stale replies dropped, truncations refused, fsyncs, ..., and of pre-vote
        (replica/prevote.py): rounds started/won/lost, votes refused by stickiness, ...,
        and check-quorum step-downs (replica/checkquorum.py)."""
        return dict(self.syncobj.raftsafe_stats())

    def destroy(self) -> None:
        self.syncobj.destroy()
