"""Membership changes through Raft (issue 15), on pysyncobj's own dynamic membership.

pysyncobj implements the single-server change of the Raft thesis (section 4.1): a
MEMBERSHIP log entry changes the Raft configuration of a node as soon as the node
appends it (rolled back if the entry is truncated), a leader appends one only after
the no-op of its term is applied (the fix of the single-server bug, thesis 4.1 note).
Every majority (commit, elections) is counted over the current set. Its guard for one
change at a time (`__changeClusterIDx`) is never armed in 0.3.17: `MemberSyncObj`
supplies it (no membership entry may be appended while another is unapplied).

We add two things on top, in `MemberSyncObj`:

* The entry carries, as a 4th element that pysyncobj ignores, the encoded
  `core.members` command (id, addresses, capacity, labels). When the entry is applied,
  `membership_applied` hands it to the job state machine, which applies it like any
  other command: Raft configuration and replicated member list come from one entry.
* On restart, membership entries already in the journal but not yet applied take
  effect at once, as the thesis requires (pysyncobj would only apply them once
  committed); after a snapshot is loaded the configuration is the member list of the
  state it holds plus the changes in the log after it (not the set pysyncobj stored
  beside it); and calls that must run on the tick thread (leadership transfer) are
  queued to it.

Check-quorum and pre-vote read the live set (`checkquorum.CheckQuorum` re-keys its
per-peer clocks when the set changes); a removed node that is not stopped cannot
disrupt the cluster because pre-vote and stickiness refuse its elections while the
others hear their leader (thesis 4.2.3).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj
from pysyncobj import pickle as _pickle
from pysyncobj.node import TCPNode
from pysyncobj.syncobj import _COMMAND_TYPE

from raftsched.replica.proposer import NotLeader, OutcomeUnknown
from raftsched.replica.raftsafe import SafeSyncObj

logger = logging.getLogger(__name__)

for _name in ("_SyncObj__doApplyCommand", "_SyncObj__changeCluster", "_SyncObj__doChangeCluster",
              "_SyncObj__getEntries", "_SyncObj__parseChangeClusterRequest",
              "_SyncObj__updateClusterConfiguration"):
    if not hasattr(SyncObj, _name):
        raise ImportError(f"membership: pysyncobj internals changed ({_name} missing)")

MembershipHook = Callable[[bytes], None]


def carried_command(command: bytes) -> bytes | None:
    """The encoded `core.members` command a membership entry carries (None: not one)."""
    if not command[:1] or ord(command[:1]) != _COMMAND_TYPE.MEMBERSHIP:
        return None
    request = _pickle.loads(command[1:])
    if isinstance(request, list) and len(request) >= 4 and isinstance(request[3], bytes):
        return request[3]
    return None


class ChangeRefused(Exception):
    """Refused before or by the leader: another change is in flight (FAILED_PRECONDITION)."""


class MemberSyncObj(SafeSyncObj):
    """SafeSyncObj whose membership entries also carry a replicated-state command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # before SyncObj.__init__ (the tick thread starts inside it)
        self._rs_membership_applied: MembershipHook | None = kwargs.pop("membership_applied", None)
        # Raft addresses of the members in the state just loaded from a snapshot (None: use
        # the cluster set pysyncobj stored with the snapshot)
        self._rs_state_voters: Callable[[], list[str]] | None = kwargs.pop("state_voters", None)
        self._rs_calls: collections.deque[Callable[[], None]] = collections.deque()
        self._rs_scanned = False
        self._rs_change_idx: int | None = None  # log index of the last change this leader appended
        super().__init__(*args, **kwargs)

    def rs_call_on_tick(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the tick thread at the start of the next tick."""
        self._rs_calls.append(fn)

    def _onTick(self, timeToWait: float = 0.0) -> None:
        while self._rs_calls:
            fn = self._rs_calls.popleft()
            try:
                fn()
            except Exception:
                logger.exception("membership: tick call failed")
        super()._onTick(timeToWait)
        if not self._rs_scanned and self._SyncObj__transport.ready:
            self._rs_scanned = True
            self._rs_unapplied_changes()

    def _rs_unapplied_changes(self) -> None:
        """After the first tick of a restart (snapshot loaded, committed entries applied):
        a membership entry in the journal takes effect when appended, committed or not."""
        last_applied = self._SyncObj__raftLastApplied
        last = self._SyncObj__getCurrentLogIndex()
        if last <= last_applied:
            return
        for entry in self._SyncObj__getEntries(last_applied + 1, last - last_applied):
            request = self._SyncObj__parseChangeClusterRequest(entry[0])
            if request is not None:
                self._SyncObj__doChangeCluster(request)
                logger.info("membership: journal entry %d (%s %s) in effect before commit",
                            entry[1], request[0], request[1])

    def _SyncObj__loadDumpFile(self, clearJournal: bool) -> None:
        """After a snapshot is loaded (restart, or installed from the leader) pysyncobj takes
        the configuration stored beside it: the snapshotting node's set when it serialized,
        which may include a change appended after the snapshot's index and never committed,
        or miss one in the log this node kept after the snapshot. Raft's rule is the last
        configuration in the log: the committed one at the snapshot's index (the member
        list of the state just loaded) plus every change in the log after it."""
        applied = self._SyncObj__raftLastApplied
        super()._SyncObj__loadDumpFile(clearJournal)
        voters = self._rs_state_voters() if self._rs_state_voters is not None else None
        if not voters or self._SyncObj__raftLastApplied == applied:
            return  # no member list in the state (never changed), or nothing was loaded
        me = self._SyncObj__selfNode
        self._SyncObj__updateClusterConfiguration(
            [TCPNode(a) for a in voters if me is None or a != me.address])
        self._rs_unapplied_changes()

    def _SyncObj__changeCluster(self, request: Any) -> bool:
        """Leader, about to append a membership entry. pysyncobj 0.3.17 never sets its
        `__changeClusterIDx`, so its one-change-at-a-time guard is dead code: refuse while
        any membership entry after the last applied one is in the log (ours or one a
        previous leader appended), then let pysyncobj check its no-op rule and apply it."""
        if not (isinstance(request, list) and len(request) >= 4 and isinstance(request[3], bytes)):
            # a bare pysyncobj change (syncobj_admin over the Raft port) would move the Raft
            # configuration without the member list: only ours, carrying the command
            logger.warning("membership: change without a member-list command refused: %r",
                           request[:2] if isinstance(request, list) else request)
            return False
        last_applied = self._SyncObj__raftLastApplied
        last = self._SyncObj__getCurrentLogIndex()
        if last > last_applied:
            for entry in self._SyncObj__getEntries(last_applied + 1, last - last_applied):
                if entry[0][:1] and ord(entry[0][:1]) == _COMMAND_TYPE.MEMBERSHIP:
                    return False
        if not SyncObj._SyncObj__changeCluster(self, request):
            return False
        self._rs_change_idx = last + 1  # the index _checkCommandsToApply gives the entry
        return True

    def _SyncObj__doApplyCommand(self, command: bytes) -> Any:
        res = SyncObj._SyncObj__doApplyCommand(self, command)
        hook = self._rs_membership_applied
        if hook is not None:
            blob = carried_command(command)
            if blob is not None:
                hook(blob)
        return res

    # -- any thread ----------------------------------------------------------------
    def rs_change_in_flight(self) -> int | None:
        """The log index of a membership change appended but not yet applied here."""
        idx = self._rs_change_idx
        if idx is not None and self._SyncObj__raftLastApplied < idx:
            return int(idx)
        return None

    def rs_ready_for_change(self) -> bool:
        """Leader whose no-op (first entry of its term) is applied: pysyncobj refuses a
        change before that (single-server change after a leader change)."""
        noop = self._SyncObj__noopIDx
        return bool(self._isLeader()) and noop is not None and self._SyncObj__raftLastApplied >= noop

    def rs_progress(self) -> dict[str, tuple[int, bool]]:
        """Leader's view of each voter: Raft address -> (match index, connected)."""
        try:
            match = dict(self._SyncObj__raftMatchIndex)
            others = list(self._SyncObj__otherNodes)
            connected = set(self._SyncObj__connectedNodes)
        except RuntimeError:  # resized while copied on the tick thread: ask again
            return {}
        return {n.address: (int(match.get(n, 0)), n in connected) for n in others}

    def rs_voters(self) -> list[str]:
        """Raft addresses of the current configuration (this node included)."""
        return sorted([self._SyncObj__selfNode.address, *(n.address for n in list(self._SyncObj__otherNodes))])


def _settle(fut: asyncio.Future[int], err: int) -> None:
    if not fut.done():
        fut.set_result(err)


class RaftMembership:
    """Proposes membership entries on the leader and waits for them to be applied."""

    def __init__(self, so: MemberSyncObj, loop: asyncio.AbstractEventLoop) -> None:
        self.so = so
        self.loop = loop
        self.busy = False  # a change proposed through this node and not answered yet

    def in_flight(self) -> int | None:
        return self.so.rs_change_in_flight()

    async def change(self, kind: str, raft_address: str, blob: bytes, timeout: float = 10.0) -> None:
        """Append ['add'|'rem', address, address, blob]; return once applied on this leader.
        NotLeader: retry elsewhere. ChangeRefused: another change is in flight.
        OutcomeUnknown: it may or may not have committed."""
        so = self.so
        if not so._isLeader():
            raise NotLeader("not the leader")
        if not so.rs_ready_for_change():
            raise NotLeader("the leader has not committed an entry of its term yet")
        if self.busy or (idx := self.in_flight()) is not None:
            where = "" if self.busy else f" (log index {idx})"
            raise ChangeRefused(f"another membership change is in flight{where}; wait until "
                                "it is committed (`raftsched operator members`) and retry")
        fut: asyncio.Future[int] = self.loop.create_future()

        def done(_res: Any, err: int) -> None:  # tick thread
            self.loop.call_soon_threadsafe(_settle, fut, err)

        self.busy = True
        try:
            command = _pickle.dumps([kind, raft_address, raft_address, blob])
            so._applyCommand(command, done, _COMMAND_TYPE.MEMBERSHIP)
            try:
                err = await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                raise OutcomeUnknown("membership change not confirmed in time") from None
        finally:
            self.busy = False
        if err == FAIL_REASON.SUCCESS:
            return
        if err == FAIL_REASON.REQUEST_DENIED:
            raise ChangeRefused("the leader refused the change: another membership change is in "
                                "flight, or the Raft address is already (or not) a voter")
        if err in (FAIL_REASON.NOT_LEADER, FAIL_REASON.MISSING_LEADER):
            raise NotLeader("leadership lost")
        raise OutcomeUnknown(f"membership change outcome unknown (pysyncobj reason {err})")

    async def transfer_leadership(self, raft_address: str | None) -> bool:
        """Ask pysyncobj to hand leadership to `raft_address` (None: the most caught-up
        follower) with Raft's TimeoutNow; True if the request went out."""
        fut: asyncio.Future[int] = self.loop.create_future()

        def done(_res: Any, err: int) -> None:
            self.loop.call_soon_threadsafe(_settle, fut, err)

        node = TCPNode(raft_address) if raft_address else None
        self.so.rs_call_on_tick(lambda: self.so.transferLeadership(node, done))
        try:
            return await asyncio.wait_for(fut, 5.0) == FAIL_REASON.SUCCESS
        except TimeoutError:
            return False
