"""Members (core/members.py) to protobuf and back."""

from __future__ import annotations

from raftsched.core.members import Member
from raftsched.v1 import cluster_pb2, jobs_pb2


def member_to_pb(m: Member, role: str = "", match: int = -1, lag: int = -1,
                 connected: bool = False) -> cluster_pb2.Member:
    return cluster_pb2.Member(
        id=m.id, raft_address=m.raft, grpc_address=m.grpc, metrics_address=m.metrics,
        capacity=jobs_pb2.Resources(cpu_millis=m.cpu_millis, memory_mib=m.memory_mib),
        labels=dict(m.labels), role=role, match_index=match, lag=lag, connected=connected,
        control_address=m.control)


def member_from_pb(p: cluster_pb2.Member) -> Member:
    return Member(p.id, p.raft_address, p.grpc_address, p.metrics_address,
                  int(p.capacity.cpu_millis), int(p.capacity.memory_mib),
                  tuple(sorted(p.labels.items())), p.control_address)
