"""A request refused whole, with the gRPC status to answer it with: raised by the parts
that serve both a gRPC call and a direct in-process call (a heartbeat on the control
port; a leader's starts for its own node)."""

from __future__ import annotations

import grpc

# A node's refusal of starts while it holds no lease (just started, or its lease lapsed):
# it gets one with its next heartbeat, so the leader tries again shortly (rpc/peer.py).
NO_LEASE = "holds no lease"


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def status_of(e: grpc.aio.AioRpcError | Refused) -> tuple[grpc.StatusCode, str]:
    """The status of a refusal, over gRPC or in process."""
    if isinstance(e, Refused):
        return e.code, e.details
    return e.code(), e.details() or ""
