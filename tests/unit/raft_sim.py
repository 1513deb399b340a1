"""Real SafeSyncObj replicas in one process on a simulated network and clock.

Each replica is a SafeSyncObj with autoTick off whose transport hands messages to a
`SimNet`: messages are pickled (like the wire), queued, and delivered between ticks
unless the link between the two nodes is cut. A cut keeps pysyncobj's "connected"
view, as a real partition does while the TCP connections stay established, so a
cut-off node still times out and campaigns. pysyncobj's clock is a `FakeClock`
(monkeypatched), and its random election timeouts come from a seeded generator.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pysyncobj import SyncObjConf
from pysyncobj import pickle as ps_pickle
from pysyncobj.syncobj import _RAFT_STATE
from pysyncobj.transport import Transport

from raftsched.replica.raftsafe import SafeSyncObj
from tests.unit.test_raftsafe import Recorder

MIN_TIMEOUT, MAX_TIMEOUT = 0.3, 0.6
STEP = 0.01  # simulated seconds per round of ticks


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class SimNet:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, n: int = 3, pre_vote: bool = True,
                 seed: int = 1, check_quorum: bool = True, cls: type[SafeSyncObj] = SafeSyncObj,
                 dynamic: bool = False, spare: int = 0, **extra: Any) -> None:
        """`cls` with `extra` keyword arguments, pysyncobj's `dynamic` membership, and `spare`
        addresses no node listens on (nodes to add: what is sent to them is lost)."""
        self.clock = FakeClock()
        monkeypatch.setattr("pysyncobj.syncobj.monotonicTime", self.clock)
        rng = random.Random(seed)
        monkeypatch.setattr("pysyncobj.syncobj.random.random", rng.random)
        self.ids = [f"n{i + 1}" for i in range(n)]
        self.addr = {nid: f"127.0.0.1:{i + 1}" for i, nid in enumerate(self.ids)}
        self.by_addr = {a: nid for nid, a in self.addr.items()}
        self.spares = [f"127.0.0.1:{n + i + 1}" for i in range(spare)]
        self.by_addr.update({a: f"spare{i + 1}" for i, a in enumerate(self.spares)})
        self.cuts: set[frozenset[str]] = set()
        self.down: set[str] = set()  # stopped: no ticks, nothing in or out
        self.queue: deque[tuple[str, str, bytes]] = deque()
        self.transports: dict[str, SimTransport] = {}
        self.nodes: dict[str, SafeSyncObj] = {}
        self.recs: dict[str, Recorder] = {}
        net = self

        class _Transport(SimTransport):
            sim = net

        for nid in self.ids:
            conf = SyncObjConf(autoTick=False, raftMinTimeout=MIN_TIMEOUT, raftMaxTimeout=MAX_TIMEOUT,
                               appendEntriesPeriod=0.05, appendEntriesUseBatch=False,
                               leaderFallbackTimeout=2.4, dynamicMembershipChange=dynamic)
            rec = Recorder()
            others = [a for o, a in self.addr.items() if o != nid]
            self.recs[nid] = rec
            self.nodes[nid] = cls(self.addr[nid], others, conf, consumers=[rec],
                                  transportClass=_Transport, pre_vote=pre_vote,
                                  check_quorum=check_quorum, **extra)
        for t in self.transports.values():
            t.connect_all()

    # -- faults ----------------------------------------------------------
    def cut(self, a: str, b: str) -> None:
        self.cuts.add(frozenset((a, b)))

    def heal(self, a: str, b: str) -> None:
        self.cuts.discard(frozenset((a, b)))

    def isolate(self, a: str) -> None:
        for b in self.ids:
            if b != a:
                self.cut(a, b)

    def rejoin(self, a: str) -> None:
        for b in self.ids:
            self.heal(a, b)

    def linked(self, a: str, b: str) -> bool:
        return frozenset((a, b)) not in self.cuts and a not in self.down and b not in self.down

    # -- running ---------------------------------------------------------
    def step(self) -> None:
        self.clock.t += STEP
        for nid in self.ids:
            if nid not in self.down:
                self.nodes[nid].doTick(0)
        self.pump()

    def pump(self) -> None:
        for _ in range(10_000):
            if not self.queue:
                return
            src, dst, blob = self.queue.popleft()
            if self.linked(src, dst) and dst in self.transports:
                self.transports[dst].receive(src, ps_pickle.loads(blob))
        raise AssertionError("message storm")

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / STEP)):
            self.step()

    def run_until(self, cond: Any, seconds: float, what: str) -> None:
        for _ in range(round(seconds / STEP)):
            if cond():
                return
            self.step()
        assert cond(), f"{what} not reached within {seconds} simulated seconds"

    # -- observing -------------------------------------------------------
    def term(self, nid: str) -> int:
        return int(self.nodes[nid].raftCurrentTerm)

    def terms(self) -> dict[str, int]:
        return {nid: self.term(nid) for nid in self.ids}

    def state(self, nid: str) -> int:
        return int(self.nodes[nid]._SyncObj__raftState)

    def leader_of(self, nid: str) -> str | None:
        leader = self.nodes[nid]._SyncObj__raftLeader
        return None if leader is None else self.by_addr[leader.address]

    def leaders(self) -> list[str]:
        return [nid for nid in self.ids
                if nid not in self.down and self.state(nid) == _RAFT_STATE.LEADER]

    def stable_leader(self) -> str | None:
        """The one leader every live node follows, if there is one."""
        leaders = self.leaders()
        if len(leaders) != 1:
            return None
        live = [n for n in self.ids if n not in self.down]
        return leaders[0] if all(self.leader_of(n) == leaders[0] for n in live) else None

    def stats(self, nid: str) -> dict[str, int]:
        return self.nodes[nid].raftsafe_stats()

    def propose(self, nid: str, count: int) -> None:
        for i in range(count):
            self.recs[nid].record(i)

    def close(self) -> None:
        for so in self.nodes.values():
            so.destroy()


class SimTransport(Transport):
    sim: SimNet

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        super().__init__(syncObj, selfNode, otherNodes)
        self.me = self.sim.by_addr[selfNode.address]
        self.peers = {self.sim.by_addr[n.address]: n for n in otherNodes}
        self.sim.transports[self.me] = self

    def connect_all(self) -> None:
        for node in self.peers.values():
            self._onNodeConnected(node)

    def send(self, node: Any, message: Any) -> bool:
        dst = self.sim.by_addr[node.address]
        if self.me in self.sim.down:
            return False
        self.sim.queue.append((self.me, dst, ps_pickle.dumps(message)))
        return True

    def receive(self, src: str, message: Any) -> None:
        self._onMessageReceived(self.peers[src], message)


@pytest.fixture
def make_net(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., SimNet]]:
    """A factory of simulated networks (SimNet keyword arguments), closed at the end."""
    nets: list[SimNet] = []

    def make(**kw: Any) -> SimNet:
        net = SimNet(monkeypatch, **kw)
        nets.append(net)
        return net

    yield make
    for net in nets:
        net.close()


def elected(net: SimNet) -> str:
    """Run until one node leads stably, then a second more (every follower heard it)."""
    net.run_until(lambda: net.stable_leader() is not None, 10, "a leader")
    net.run(1.0)
    leader = net.stable_leader()
    assert leader is not None
    return leader
