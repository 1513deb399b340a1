"""The narrow interfaces node, rpc and leader code receive instead of the whole node.

`node/runtime.py` is the one place that builds the concrete parts and hands each
consumer only the ports it uses:

- `ReplicaView`  this node's applied state and the lock that guards it (replica/raft_node)
- `RaftStatus`   Raft position queries: term, leader, role, majority contact (replica/raft_node)
- `Propose`      the one door to the log (replica/proposer)
- `Peers`        gRPC channels to other nodes and start delivery (rpc/peer)
- `Runner`       the local executor as the agent and heartbeats see it (node/executor)
- `LeaderDuties` what the NodeAgent servicer asks of the leader loop (node/leader)
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import grpc

    from raftsched.config import NodeConfig
    from raftsched.core.commands import Assign, Command, FinishedItem
    from raftsched.core.model import Job, JobSpec, Node, Resources
    from raftsched.core.state import ClusterState, Result
    from raftsched.v1 import node_pb2


class ReplicaView(Protocol):
    @property
    def lock(self) -> AbstractContextManager[Any]: ...

    @property
    def state(self) -> ClusterState: ...


class RaftStatus(Protocol):
    def term(self) -> int: ...

    def is_leader(self) -> bool: ...

    def leader_config(self) -> NodeConfig | None: ...

    def leader_confirmed(self) -> bool: ...

    def role(self) -> str: ...

    def commit_index(self) -> int: ...

    def safety_stats(self) -> dict[str, int]: ...

    def heard_majority_within(self, seconds: float) -> bool: ...

    def leader_heard_within(self, seconds: float) -> bool: ...

    def contact_age(self) -> float | None: ...

    def read_index_begin(self) -> tuple[int, int, float] | None: ...

    def read_index_confirmed(self, term: int, arrival: float) -> bool: ...


class Propose(Protocol):
    async def propose(self, cmd: Command, timeout: float = 5.0) -> Result: ...

    async def propose_all(self, cmds: list[Command], timeout: float = 5.0) -> list[Result]: ...


class PlaceOnSubmit(Protocol):
    """The leader's placement of a small submission in the submission's own entry."""

    def plan(self, jobs: tuple[tuple[str, JobSpec], ...], ts: float) -> Assign | None: ...

    def done(self, assign: Assign, jobs: tuple[tuple[str, JobSpec], ...], result: Result | None) -> None: ...


class Peers(Protocol):
    def channel(self, addr: str) -> grpc.aio.Channel: ...

    async def send_reports(self, req: node_pb2.ReportJobsRequest) -> bool: ...

    async def send_starts(self, node_id: str, jobs: list[Job]) -> None: ...


class Runner(Protocol):
    running: dict[tuple[str, int], Any]

    def start(self, job_id: str, attempt: int, token: int, spec: JobSpec) -> bool: ...

    def kill(self, job_id: str, attempt: int, reason: str) -> bool: ...

    def keeps_output(self, job_id: str, attempt: int) -> bool: ...

    # running_attempts and in_use are also called from the heartbeat thread
    def running_attempts(self) -> list[tuple[str, int, int]]: ...

    def in_use(self) -> Resources: ...


class LeaderDuties(Protocol):
    last_seen: dict[str, float]

    def heartbeat(self, node: Node, running: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]: ...

    def lease_for(self, node_id: str) -> tuple[float, int]: ...

    def stamp_retries(self, items: list[FinishedItem], now: float) -> list[FinishedItem]: ...
