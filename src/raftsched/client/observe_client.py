"""Synchronous client helpers for the Events service (watch, cluster events, output).

`JobWatcher` keeps the last position it received and, when the node it talks
to goes away, reconnects to the next address with that position: positions are
Raft (index, ordinal) pairs, the same on every node, so nothing is missed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import grpc

from raftsched.client.credentials import OPTIONS, ClientTLS, open_token_channel
from raftsched.v1 import events_pb2, events_pb2_grpc

# Each (re)connection gets a channel of its own subchannels: one shared with other
# clients may still be in its reconnect backoff from before the node listened.
OWN_POOL = [*OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
RECONNECT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL,
             grpc.StatusCode.UNKNOWN}


class JobWatcher:
    def __init__(self, addresses: Sequence[str], *, job_ids: Sequence[str] = (), workflow_id: str = "",
                 states: Sequence[int] = (), node_id: str = "",
                 resume_from: tuple[int, int] | None = None, send_initial: bool = False,
                 reconnect_for: float = 20.0, token: str | None = None,
                 tls: ClientTLS | None = None, channel: grpc.Channel | None = None) -> None:
        """`channel`: an open channel to `addresses[0]` for the first connection (the
        caller's, left open); reconnections open channels of their own."""
        self.addresses = list(addresses)
        self._first = channel
        self.token = token
        self.tls = tls
        self.base = events_pb2.WatchJobsRequest(job_ids=job_ids, workflow_id=workflow_id,
                                                states=states,  # type: ignore[arg-type]
                                                node_id=node_id, send_initial=send_initial)
        self.position = resume_from
        self.reconnect_for = reconnect_for
        self.connected_to = ""
        self.synced = False
        self._call: grpc.Future | None = None
        self._cancelled = False
        self._i = 0

    def cancel(self) -> None:
        """End `responses()` (from any thread): it returns instead of reconnecting."""
        self._cancelled = True
        if self._call is not None:
            self._call.cancel()

    def _request(self) -> events_pb2.WatchJobsRequest:
        req = events_pb2.WatchJobsRequest()
        req.CopyFrom(self.base)
        if self.position is not None:
            req.has_resume_from = True
            req.resume_from.index, req.resume_from.ordinal = self.position
            req.send_initial = False
        return req

    def responses(self) -> Iterator[events_pb2.WatchJobsResponse]:
        """Every response (events and position-only progress), reconnecting as needed."""
        down_since: float | None = None
        while not self._cancelled:
            addr = self.addresses[self._i % len(self.addresses)]
            ch = self._first or open_token_channel(addr, self.token, OWN_POOL, self.tls)
            owned, self._first = self._first is None, None
            with contextlib.nullcontext(ch) if not owned else ch:
                stub = events_pb2_grpc.EventsStub(ch)
                self._call = stub.WatchJobs(self._request())
                if self._cancelled:  # cancelled while this call was being made
                    self._call.cancel()
                self.connected_to = addr
                try:
                    for resp in self._call:
                        down_since = None
                        if resp.synced:
                            self.synced = True
                        self.position = (resp.position.index, resp.position.ordinal)
                        yield resp
                    return
                except grpc.RpcError as e:
                    if e.code() == grpc.StatusCode.CANCELLED and (self._cancelled or self._call.cancelled()):
                        return
                    if e.code() not in RECONNECT:
                        raise
                    down_since = down_since or time.monotonic()
                    if time.monotonic() - down_since > self.reconnect_for:
                        raise
            self._i += 1
            time.sleep(0.1)

    def events(self) -> Iterator[events_pb2.JobEvent]:
        for resp in self.responses():
            yield from resp.events


def _stub(addr: str, token: str | None,
          tls: ClientTLS | None = None) -> tuple[grpc.Channel, events_pb2_grpc.EventsStub]:
    ch = open_token_channel(addr, token, OWN_POOL, tls)
    return ch, events_pb2_grpc.EventsStub(ch)


def get_output(addresses: Sequence[str], job_id: str, attempt: int = 0,
               timeout: float = 20.0, token: str | None = None, *,
               tls: ClientTLS | None = None) -> events_pb2.JobOutputResponse:
    last: grpc.RpcError | None = None
    deadline = time.monotonic() + timeout
    for addr in list(addresses) * 3:
        ch, stub = _stub(addr, token, tls)
        with ch:
            try:
                return stub.GetJobOutput(events_pb2.JobOutputRequest(job_id=job_id, attempt=attempt),
                                         timeout=max(0.1, deadline - time.monotonic()))
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                last = e
    assert last is not None
    raise last


def follow_output(addresses: Sequence[str], job_id: str, attempt: int = 0,
                  token: str | None = None, *,
                  tls: ClientTLS | None = None) -> Iterator[events_pb2.JobOutputChunk]:
    """Chunks of an attempt's output as written; resumes from the byte offsets on reconnect."""
    offs = [0, 0]
    tries = 0
    for addr in list(addresses) * 3:
        ch, stub = _stub(addr, token, tls)
        with ch:
            req = events_pb2.JobOutputRequest(job_id=job_id, attempt=attempt,
                                              stdout_offset=offs[0], stderr_offset=offs[1])
            try:
                for chunk in stub.FollowJobOutput(req):
                    if chunk.source == events_pb2.NODE_FILE:
                        offs[0] += len(chunk.stdout)
                        offs[1] += len(chunk.stderr)
                    yield chunk
                    if chunk.done:
                        return
                return
            except grpc.RpcError as e:
                tries += 1
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
    raise RuntimeError(f"no node reachable after {tries} tries")


class ClusterWatcher:
    """Cluster events from any node; reconnects to the next node (with a fresh initial view)."""

    def __init__(self, addresses: Sequence[str], send_initial: bool = True,
                 token: str | None = None, *, tls: ClientTLS | None = None) -> None:
        self.addresses = list(addresses)
        self.token = token
        self.tls = tls
        self.send_initial = send_initial
        self._call: Any = None
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True
        if self._call is not None:
            self._call.cancel()

    def events(self) -> Iterator[events_pb2.ClusterEvent]:
        i = 0
        send_initial = self.send_initial
        while not self._cancelled:
            ch, stub = _stub(self.addresses[i % len(self.addresses)], self.token, self.tls)
            with ch:
                self._call = stub.WatchCluster(events_pb2.WatchClusterRequest(send_initial=send_initial))
                try:
                    yield from self._call
                    return
                except grpc.RpcError as e:
                    if self._cancelled:
                        return
                    if e.code() not in RECONNECT:
                        raise
            i += 1
            send_initial = True
            time.sleep(0.2)
