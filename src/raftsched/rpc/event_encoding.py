"""Encoding of WatchJobs responses, shared by every watcher of a node.

Each change is encoded once, as a WatchJobsResponse holding just its event; encoded
messages concatenate (repeated fields append), so a response of many changes is a
join of their bytes plus an encoded position, sent through a pass-through serializer.
"""

from __future__ import annotations

from typing import Any

import grpc

from raftsched.core.model import Job
from raftsched.replica.watch import Change, Pos
from raftsched.rpc import convert
from raftsched.v1 import events_pb2, events_pb2_grpc

EVENT_CACHE = 50_000  # encoded changes kept for other watchers of the same change


def pos_pb(p: Pos) -> events_pb2.Position:
    return events_pb2.Position(index=p[0], ordinal=p[1])


def _previous_state(job: Job) -> int:
    if len(job.history) >= 2 and job.history[-1].state is job.state:
        return convert.state_to_pb(job.history[-2].state)
    return 0


_encoded: dict[Pos, tuple[str, bytes]] = {}


def event_bytes(c: Change) -> bytes:
    """A change encoded as a WatchJobsResponse holding just its event: built once and
    shared by every watcher. Encoded messages concatenate: repeated fields append, so
    the joined events of several changes plus an encoded position is one response."""
    hit = _encoded.get(c.pos)
    if hit is None or hit[0] != c.job.id:
        hit = _encoded[c.pos] = (c.job.id,
                                 events_pb2.WatchJobsResponse(events=[event_pb(c)]).SerializeToString())
        if len(_encoded) > EVENT_CACHE:
            for k in list(_encoded)[:EVENT_CACHE // 4]:
                _encoded.pop(k, None)  # also filled from a worker thread
    return hit[1]


def _encode_all(changes: list[Change]) -> None:
    for c in changes:
        event_bytes(c)


def _serialize(m: events_pb2.WatchJobsResponse | bytes) -> bytes:
    return m if isinstance(m, bytes) else m.SerializeToString()


class _Capture:
    handlers: dict[str, grpc.RpcMethodHandler]

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass

    def add_registered_method_handlers(self, name: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.handlers = handlers


def add_to_server(servicer: Any, server: grpc.aio.Server) -> None:
    """The generated registration, except that WatchJobs may yield encoded responses."""
    cap = _Capture()
    events_pb2_grpc.add_EventsServicer_to_server(servicer, cap)
    handlers = dict(cap.handlers)
    handlers["WatchJobs"] = grpc.unary_stream_rpc_method_handler(
        servicer.WatchJobs, request_deserializer=events_pb2.WatchJobsRequest.FromString,
        response_serializer=_serialize)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("raftsched.v1.Events", handlers),))
    server.add_registered_method_handlers("raftsched.v1.Events", handlers)


def event_pb(c: Change, initial: bool = False) -> events_pb2.JobEvent:
    return events_pb2.JobEvent(position=pos_pb(c.pos), job=convert.job_to_pb(c.job),
                               previous_state=_previous_state(c.job),  # type: ignore[arg-type]
                               initial=initial)


