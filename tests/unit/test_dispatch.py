"""Start delivery from the leader: what a StartJobs request may carry.

A start is fenced on the worker by the node's (incarnation, generation) named in
the request. That fence holds only if every attempt in a request was assigned in
the generation the request names. The leader reads the job to dispatch and the
node's generation at different moments, while the Raft thread keeps applying
commands: a NodeUp for a restarted node (or a NodeDown) in between returns the
attempt to PENDING and bumps the generation, and the stale attempt must not be
sent under the new generation, where the restarted node would accept it and run
it beside the attempt that replaces it (the chaos finding of issue 16:
'attempt 1 token 320 found another attempt alive').
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from raftsched import config as configmod
from raftsched.core import apply as fsm
from raftsched.core import reconcile
from raftsched.core.commands import Assign, AssignItem, CancelJob, NodeDown, NodeUp, SubmitJobs
from raftsched.core.model import JobSpec, JobState, Node, Resources
from raftsched.dev.launcher import write_config
from raftsched.node.leader import Leader
from raftsched.rpc import peer
from raftsched.rpc.peer import PeerChannels
from raftsched.rpc.refusal import NO_LEASE, Refused
from raftsched.v1 import node_pb2

pytestmark = pytest.mark.timeout(30)

SPEC = JobSpec(command=("true",), resources=Resources(100, 16))


def node(nid: str, incarnation: str) -> Node:
    return Node(nid, f"127.0.0.1:{ord(nid[-1])}", f"127.0.0.1:1{ord(nid[-1])}",
                Resources(1000, 1000), incarnation=incarnation)


class Replica:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.state = fsm.ClusterState()
        self.ts = 1000.0
        self.rid = 0

    def commit(self, cmd_type: type, *args: Any) -> fsm.Result:
        self.rid += 1
        self.ts += 0.01
        with self.lock:
            res = fsm.apply(self.state, cmd_type(f"r{self.rid}", self.ts, *args))
        assert res.ok, res.message
        return res


class Raft:
    def term(self) -> int:
        return 3

    def is_leader(self) -> bool:
        return True

    def leader_config(self) -> None:
        return None

    def leader_confirmed(self) -> bool:
        return True

    def role(self) -> str:
        return "leader"

    def commit_index(self) -> int:
        return 0


class Proposer:
    """Commits what the leader proposes; `after_assign` runs right after an Assign is
    applied, before the leader's coroutine resumes: the Raft thread applying a command
    proposed elsewhere (a heartbeat's NodeUp) in between."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.after_assign: list[tuple[type, tuple[Any, ...]]] = []

    async def propose(self, cmd: Any, timeout: float = 5.0) -> fsm.Result:
        with self.replica.lock:
            res = fsm.apply(self.replica.state, cmd)
        if isinstance(cmd, Assign):
            for kind, args in self.after_assign:
                self.replica.commit(kind, *args)
            self.after_assign = []
        return res


class Channel:
    """Records the StartJobs (and ReportJobs) requests a PeerChannels sends (no network)."""

    def __init__(self, sent: list[node_pb2.StartJobsRequest]) -> None:
        self.sent = sent

    def unary_unary(self, path: str, *args: Any, **kwargs: Any) -> Any:
        async def call(req: Any, timeout: float | None = None, **kw: Any) -> Any:
            assert path.endswith(("/StartJobs", "/ReportJobs")), path
            self.sent.append(req)
            if path.endswith("/ReportJobs"):
                return node_pb2.ReportJobsResponse(accepted=len(req.reports))
            return node_pb2.StartJobsResponse(accepted=len(req.jobs))
        return call


class Peers(PeerChannels):
    def __init__(self, replica: Replica) -> None:
        super().__init__("n9", replica, Raft())
        self.sent: list[node_pb2.StartJobsRequest] = []

    def channel(self, addr: str) -> Any:
        return Channel(self.sent)


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.cfg = configmod.load(write_config(tmp, 3, secret="x" * 40))
        self.replica = Replica()
        self.proposer = Proposer(self.replica)
        self.peers = Peers(self.replica)
        self.tasks: list[asyncio.Task[Any]] = []
        self.leader = Leader(self.cfg, self.replica, Raft(), self.proposer, self.peers, self.spawn)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        t = asyncio.get_running_loop().create_task(coro)
        self.tasks.append(t)
        return t

    async def place(self) -> None:
        """One placement round of the leader, and the starts it sends."""
        await self.leader._place()
        await self.settle()

    async def settle(self) -> None:
        while any(not t.done() for t in self.tasks):
            await asyncio.gather(*self.tasks)

    def check_sent(self) -> None:
        """Every start sent names an attempt ASSIGNED to that node in the generation and
        incarnation the request carries: the fence the worker checks is then sound."""
        st = self.replica.state
        for req in self.peers.sent:
            targets = {n.id for n in st.nodes.values() if n.incarnation == req.incarnation}
            assert len(targets) == 1, req
            n = st.nodes[targets.pop()]
            for sj in req.jobs:
                job = st.jobs[sj.job_id]
                # the attempt is the job's current one, still live on that node, same generation
                assert (job.attempt, job.fencing_token, job.node_id) == (sj.attempt, sj.fencing_token, n.id), (
                    f"start of {sj.job_id} attempt {sj.attempt} token {sj.fencing_token} sent to {n.id} "
                    f"generation {req.generation}, but the job is {job.state.value} at attempt "
                    f"{job.attempt} token {job.fencing_token} on {job.node_id or '-'}")
                assert job.state in (JobState.ASSIGNED, JobState.RUNNING), (sj, job.state)
                assert req.generation == n.generation


def submit(h: Harness, jid: str) -> None:
    h.replica.commit(SubmitJobs, ((jid, SPEC),))


RESTART = [(NodeUp, (node("n1", "new"),))]  # a heartbeat from the restarted process
DOWN_UP = [(NodeDown, ("n1", "no heartbeat")), (NodeUp, (node("n1", "old"),))]  # thawed: g -> g+2


@pytest.mark.parametrize("between", [RESTART, DOWN_UP], ids=["restart", "down-up"])
def test_start_of_an_attempt_lost_before_dispatch_is_not_sent(
        tmp_path: Path, between: list[tuple[type, tuple[Any, ...]]]) -> None:
    """Assign commits, then (before the leader dispatches) NodeUp for the restarted node,
    or NodeDown and NodeUp, commit: the attempt is lost. The leader must not send it
    under the node's new generation, which the node would accept."""
    h = Harness(tmp_path)
    h.replica.commit(NodeUp, node("n1", "old"))
    submit(h, "j1")
    h.proposer.after_assign = list(between)

    asyncio.run(h.place())
    job = h.replica.state.jobs["j1"]
    assert job.state is JobState.PENDING and job.attempt == 1  # lost before its start was sent
    h.check_sent()
    assert not any(sj.job_id == "j1" for req in h.peers.sent for sj in req.jobs)


def test_resend_skips_attempts_lost_since_they_were_read(tmp_path: Path) -> None:
    """The resend and election paths read the ASSIGNED jobs, then deliver later."""
    h = Harness(tmp_path)
    h.replica.commit(NodeUp, node("n1", "old"))
    submit(h, "j1")
    submit(h, "j2")
    h.replica.commit(Assign, (AssignItem("j1", "n1", 0), AssignItem("j2", "n1", 0)))
    with h.replica.lock:
        read = [h.replica.state.jobs["j1"], h.replica.state.jobs["j2"]]

    async def go() -> None:
        h.replica.commit(NodeUp, node("n1", "new"))  # both lost; j2 assigned again, anew
        h.replica.commit(Assign, (AssignItem("j2", "n1", 1),))
        h.leader._dispatch(read)
        await h.settle()

    asyncio.run(go())
    h.check_sent()
    # Neither stale record is sent: j1 is PENDING, and j2's current attempt 2 is not the
    # attempt 1 that was read (its own dispatch follows its own Assign).
    assert [(sj.job_id, sj.attempt) for req in h.peers.sent for sj in req.jobs] == []


def test_current_assignments_are_still_sent(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.replica.commit(NodeUp, node("n1", "i1"))
    h.replica.commit(NodeUp, node("n2", "i2"))
    for i in range(4):
        submit(h, f"j{i}")

    asyncio.run(h.place())
    h.check_sent()
    assert sorted(sj.job_id for req in h.peers.sent for sj in req.jobs) == ["j0", "j1", "j2", "j3"]


def test_starts_for_the_leaders_own_node_go_in_process_through_the_same_fence(tmp_path: Path) -> None:
    """The leader's own node gets its starts by a direct call of its agent (no gRPC round
    trip to itself), with the same request: incarnation and generation to be checked; a
    refusal there is logged like an undelivered start."""
    h = Harness(tmp_path)
    h.replica.commit(NodeUp, node("n9", "me"))  # the harness's PeerChannels is node n9
    h.replica.commit(NodeUp, node("n1", "other"))
    local: list[node_pb2.StartJobsRequest] = []

    async def start(req: node_pb2.StartJobsRequest) -> node_pb2.StartJobsResponse:
        local.append(req)
        if len(local) > 1:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, "start for generation 1 of n9, now 2")
        return node_pb2.StartJobsResponse(accepted=len(req.jobs))

    h.peers.local_start = start
    for i in range(4):
        submit(h, f"j{i}")
    asyncio.run(h.place())
    h.check_sent()  # what went over gRPC: only n1's
    mine = [sj.job_id for req in local for sj in req.jobs]
    theirs = [sj.job_id for req in h.peers.sent for sj in req.jobs]
    assert mine and theirs and sorted(mine + theirs) == ["j0", "j1", "j2", "j3"]
    st = h.replica.state
    assert all(st.jobs[j].node_id == "n9" for j in mine) and all(st.jobs[j].node_id == "n1" for j in theirs)
    assert (local[0].incarnation, local[0].generation) == ("me", st.nodes["n9"].generation)

    async def again() -> None:  # refused in process: logged, not raised into the loop
        await h.peers.send_starts("n9", [st.jobs[j] for j in mine])

    asyncio.run(again())
    assert len(local) == 2


def test_starts_refused_for_want_of_a_lease_are_tried_again_from_a_fresh_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node that holds no lease yet (just started: its first comes with a heartbeat)
    refuses starts; the leader tries again shortly, not after the ~1 s re-send of
    unconfirmed starts, and re-reads the assignments first: a job no longer assigned
    there meanwhile is not sent again. Other refusals are not retried."""
    monkeypatch.setattr(peer, "NO_LEASE_RETRY_AFTER", (0.01, 0.01, 0.01))
    h = Harness(tmp_path)
    h.replica.commit(NodeUp, node("n9", "me"))
    calls: list[list[str]] = []
    answers = [Refused(grpc.StatusCode.UNAVAILABLE, f"n9 {NO_LEASE}; it starts nothing until it renews"),
               Refused(grpc.StatusCode.UNAVAILABLE, f"n9 {NO_LEASE}; it starts nothing until it renews"),
               None]

    async def start(req: node_pb2.StartJobsRequest) -> node_pb2.StartJobsResponse:
        calls.append(sorted(sj.job_id for sj in req.jobs))
        answer = answers.pop(0) if answers else Refused(grpc.StatusCode.FAILED_PRECONDITION, "other")
        if answer is not None:
            if len(calls) == 1:  # meanwhile j1 is cancelled: not assigned to n9 any more
                h.replica.commit(CancelJob, "j1")
            raise answer
        return node_pb2.StartJobsResponse(accepted=len(req.jobs))

    h.peers.local_start = start
    for i in range(3):
        submit(h, f"j{i}")
    asyncio.run(h.place())
    st = h.replica.state
    assert all(st.jobs[j].node_id == "n9" for j in ("j0", "j2"))
    assert calls == [["j0", "j1", "j2"], ["j0", "j2"], ["j0", "j2"]]

    async def again() -> None:  # refused for another reason: not retried
        await h.peers.send_starts("n9", [st.jobs["j0"]])

    asyncio.run(again())
    assert len(calls) == 4


# ---- the pure decision -----------------------------------------------------------------


def test_startable_keeps_only_current_assignments_with_the_node_read_alongside() -> None:
    r = Replica()
    r.commit(NodeUp, node("n1", "a"))
    r.commit(NodeUp, node("n2", "b"))
    for jid in ("j1", "j2", "j3"):
        r.commit(SubmitJobs, ((jid, SPEC),))
    r.commit(Assign, (AssignItem("j1", "n1", 0), AssignItem("j2", "n1", 0), AssignItem("j3", "n2", 0)))
    st = r.state
    j1, j2, j3 = (st.jobs[j] for j in ("j1", "j2", "j3"))
    assert reconcile.startable(st, "n1", [j1, j2]) == (st.nodes["n1"], [j1, j2])
    r.commit(NodeDown, "n1", "gone")
    n1_down = reconcile.startable(st, "n1", [j1, j2])
    assert n1_down == (None, [])  # a node down takes no starts
    r.commit(NodeUp, node("n1", "a"))
    assert reconcile.startable(st, "n1", [j1, j2]) == (st.nodes["n1"], [])  # lost with the down
    # a record that names another node, or an older attempt, is not the current assignment
    assert reconcile.startable(st, "n1", [j3]) == (st.nodes["n1"], [])
    assert reconcile.startable(st, "n2", [replace(j3, attempt=0)]) == (st.nodes["n2"], [])
    assert reconcile.startable(st, "n2", [j3]) == (st.nodes["n2"], [j3])
    assert reconcile.startable(st, "n7", [j3]) == (None, [])


# ---- the worker's second line: its own replica -------------------------------------------


def test_stale_start_by_the_workers_own_replica() -> None:
    r = Replica()
    r.commit(NodeUp, node("n1", "a"))
    r.commit(NodeUp, node("n2", "b"))
    for jid in ("j1", "j2"):
        r.commit(SubmitJobs, ((jid, SPEC),))
    r.commit(Assign, (AssignItem("j1", "n1", 0), AssignItem("j2", "n2", 0)))
    st = r.state
    assert reconcile.stale_start(st, "n1", "j1", 1, 1) == ""  # current
    assert reconcile.stale_start(st, "n1", "j1", 2, 9) == ""  # not applied here yet: cannot tell
    assert reconcile.stale_start(st, "n1", "nope", 1, 1) == ""
    assert "token" in reconcile.stale_start(st, "n1", "j1", 1, 7)
    assert "assigned to n2" in reconcile.stale_start(st, "n1", "j2", 1, 2)
    r.commit(NodeUp, node("n1", "restarted"))  # j1's attempt 1 is lost
    assert "PENDING" in reconcile.stale_start(st, "n1", "j1", 1, 1)
    r.commit(Assign, (AssignItem("j1", "n2", 1),))
    assert "attempt 2" in reconcile.stale_start(st, "n1", "j1", 1, 1)
    assert reconcile.stale_start(st, "n2", "j1", 2, 3) == ""


class Lease:
    generation = 4

    def valid(self) -> bool:
        return True


class Runner:
    def __init__(self) -> None:
        self.started: list[tuple[str, int, int]] = []

    def start(self, job_id: str, attempt: int, token: int, spec: Any) -> bool:
        self.started.append((job_id, attempt, token))
        return True


class Context:
    async def abort(self, code: Any, details: str) -> None:
        raise AssertionError(f"aborted: {code} {details}")


def test_agent_refuses_a_start_its_replica_knows_is_over(tmp_path: Path) -> None:
    """A start that passed the incarnation/generation fence (as the stale starts of the
    chaos finding did) is still refused when the node's own replica has applied the
    attempt's end; a start its replica has not caught up with yet is accepted."""
    from raftsched.rpc.agent import NodeAgentServicer
    from raftsched.rpc.convert import spec_to_pb

    cfg = replace(configmod.load(write_config(tmp_path, 3, secret="x" * 40)), tls=False)
    r = Replica()
    r.commit(NodeUp, node("n1", "old"))
    for jid in ("j1", "j2"):
        r.commit(SubmitJobs, ((jid, SPEC),))
    r.commit(Assign, (AssignItem("j1", "n1", 0),))
    r.commit(NodeUp, node("n1", "new"))  # j1 attempt 1 (token 1) lost to the restart
    r.commit(Assign, (AssignItem("j2", "n1", 0),))  # j2 attempt 1, token 2, in the new generation
    runner = Runner()
    agent = NodeAgentServicer(cfg, "n1", "new", Raft(), None, Lease(), runner, None, None, r)  # type: ignore[arg-type]
    req = node_pb2.StartJobsRequest(
        leader_id="n2", term=3, incarnation="new", generation=4,
        jobs=[node_pb2.StartJob(job_id=j, attempt=a, fencing_token=t, spec=spec_to_pb(SPEC))
              for j, a, t in (("j1", 1, 1), ("j2", 1, 2), ("j3", 1, 3))])
    resp = asyncio.run(agent.StartJobs(req, Context()))
    assert runner.started == [("j2", 1, 2), ("j3", 1, 3)]  # j3: not in this replica yet
    assert resp.accepted == 2



class Led(Raft):
    """This node's view of who leads: `leader` (a node id) or nobody."""

    def __init__(self) -> None:
        self.leader: str | None = None

    def leader_config(self) -> Any:
        return None if self.leader is None else SimpleNamespace(id=self.leader, grpc=f"{self.leader}:1")


def test_reports_of_the_leaders_own_node_go_in_process(tmp_path: Path) -> None:
    """While this node leads, its reporter's calls go to its own agent directly (no gRPC
    round trip to itself); with another leader over gRPC to it; with none, nowhere."""
    peers = Peers(Replica())  # node n9
    led = peers.raft = Led()
    local: list[node_pb2.ReportJobsRequest] = []

    async def report(req: node_pb2.ReportJobsRequest) -> node_pb2.ReportJobsResponse:
        local.append(req)
        return node_pb2.ReportJobsResponse(accepted=len(req.reports))

    peers.local_report = report
    req = node_pb2.ReportJobsRequest(node_id="n9")
    led.leader = "n9"
    assert asyncio.run(peers.send_reports(req)) is True
    assert local == [req] and peers.sent == []
    led.leader = "n1"
    assert asyncio.run(peers.send_reports(req)) is True
    assert local == [req] and peers.sent == [req]
    led.leader = None
    assert asyncio.run(peers.send_reports(req)) is False
    assert local == [req] and peers.sent == [req]
