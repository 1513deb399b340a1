"""A small synchronous client that works against any node of a cluster.

Writes carry a request id made here, reused on every retry, so a call retried
after a node or leader failure never applies twice. On UNAVAILABLE the next
address is tried.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Self

import grpc

from raftsched.client import backup
from raftsched.client.credentials import OPTIONS, ClientTLS, open_token_channel
from raftsched.core.freshness import parse as parse_freshness
from raftsched.v1 import (
    cluster_pb2,
    cluster_pb2_grpc,
    jobs_pb2,
    scheduler_pb2,
    scheduler_pb2_grpc,
)

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
__all__ = ["OPTIONS", "Client", "NoNodeReachable", "NodesClient"]
# gRPC's wording when the channel could not open a connection at all (refused, no route,
# DNS, TLS handshake): the node never saw the call.
UNREACHABLE_MARK = "failed to connect to all addresses"


class NoNodeReachable(Exception):
    """Every node refused the connection (nothing listens there, or TLS failed)."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("no node answered: " + "; ".join(
            f"{a}: {d.rsplit(': ', 1)[-1]}" for a, d in errors.items()))


def unreachable(e: grpc.RpcError) -> bool:
    """True when the call failed to connect (as opposed to UNAVAILABLE from a live node)."""
    return e.code() == grpc.StatusCode.UNAVAILABLE and UNREACHABLE_MARK in (e.details() or "")


class NodesClient:
    """Channels to every given node, and a call that moves to the next node on
    UNAVAILABLE until its deadline. Service clients build on it.

    `fail_fast`: raise `NoNodeReachable` at once when every address refused the
    connection (the CLI: no point in 20 s of silence); UNAVAILABLE from a node that
    answered (no leader yet) is still retried until the deadline."""

    def __init__(self, addresses: Sequence[str], timeout: float = 20.0, *,
                 tls: ClientTLS | None = None, token: str | None = None,
                 fail_fast: bool = False) -> None:
        if not addresses:
            raise ValueError("no node addresses given")
        self.addresses = list(addresses)
        self.timeout = timeout
        self.tls = tls
        self.token = token  # sent as `authorization: Bearer <token>` on every call
        self._channels = {a: open_token_channel(a, token, OPTIONS, tls) for a in self.addresses}
        self._current = 0
        self.fail_fast = fail_fast
        # How fresh the last answer was (its node's applied index, leader, stale), from
        # the response metadata of a read (None: a write, or an older server).
        self.last_freshness: dict[str, Any] | None = None
        # Ask every read that has the field for a linearizable answer (CLI --consistent).
        self.consistent = False
        # Called with the freshness of each answer that says stale (CLI: a warning).
        self.on_stale: Callable[[dict[str, Any]], None] | None = None

    def current_channel(self) -> tuple[list[str], grpc.Channel]:
        """The addresses starting with the node calls go to now, and its open channel."""
        i = self._current % len(self.addresses)
        addrs = self.addresses[i:] + self.addresses[:i]
        return addrs, self._channels[addrs[0]]

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _invoke(self, stub_class: Any, method: str, request: Any, timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout or self.timeout)
        if self.consistent and "consistent" in request.DESCRIPTOR.fields_by_name:
            copy = type(request)()
            copy.CopyFrom(request)
            copy.consistent = True
            request = copy
        last: grpc.RpcError | None = None
        refused: dict[str, str] = {}
        while True:
            addr = self.addresses[self._current % len(self.addresses)]
            stub = stub_class(self._channels[addr])
            left = deadline - time.monotonic()
            if left <= 0:
                assert last is not None
                raise last
            try:
                fn = getattr(stub, method)
                with_call = getattr(fn, "with_call", None)
                if with_call is None:
                    return fn(request, timeout=left)
                resp, call = with_call(request, timeout=left)
                fresh = parse_freshness(call.initial_metadata())
                if fresh is not None:
                    fresh["node"] = fresh["node"] or addr
                    if fresh["stale"] and self.on_stale is not None:
                        self.on_stale(fresh)
                self.last_freshness = fresh
                return resp
            except grpc.RpcError as e:
                if e.code() not in RETRYABLE:
                    raise
                last = e
                if unreachable(e):
                    refused[addr] = e.details() or ""
                    if self.fail_fast and len(refused) == len(self._channels):
                        raise NoNodeReachable(refused) from e
                else:
                    refused.clear()
                self._current += 1
                time.sleep(0.05)


class Client(NodesClient):
    """Scheduler and Cluster services."""

    def _call(self, service: str, method: str, request: Any, timeout: float | None = None) -> Any:
        stub = scheduler_pb2_grpc.SchedulerStub if service == "scheduler" else cluster_pb2_grpc.ClusterStub
        return self._invoke(stub, method, request, timeout)

    # ---- jobs ---------------------------------------------------------------------

    def submit(self, spec: jobs_pb2.JobSpec, request_id: str | None = None,
               idempotency_key: str | None = None) -> str:
        return self.submit_ex(spec, request_id, idempotency_key).job_id

    def submit_ex(self, spec: jobs_pb2.JobSpec, request_id: str | None = None,
                  idempotency_key: str | None = None) -> scheduler_pb2.SubmitJobResponse:
        req = scheduler_pb2.SubmitJobRequest(spec=spec, request_id=request_id or uuid.uuid4().hex,
                                             idempotency_key=idempotency_key or "")
        return self._call("scheduler", "SubmitJob", req)

    def submit_batch(self, specs: Sequence[jobs_pb2.JobSpec],
                     request_id: str | None = None) -> list[str]:
        req = scheduler_pb2.SubmitJobsRequest(specs=specs, request_id=request_id or uuid.uuid4().hex)
        return list(self._call("scheduler", "SubmitJobs", req).job_ids)

    def get(self, job_id: str, consistent: bool = False) -> jobs_pb2.Job:
        """The job as the answering node's replica has it; `consistent`: linearizable
        (ReadIndex through the leader), UNAVAILABLE when no leader is reachable."""
        req = scheduler_pb2.GetJobRequest(job_id=job_id, consistent=consistent)
        return self._call("scheduler", "GetJob", req)

    def list_page(self, states: Sequence[int] = (), node_id: str = "", page_size: int = 0,
                  page_token: str = "", namespace: str = "",
                  consistent: bool = False) -> scheduler_pb2.ListJobsResponse:
        req = scheduler_pb2.ListJobsRequest(states=states, node_id=node_id, page_size=page_size,
                                            page_token=page_token, namespace=namespace,
                                            consistent=consistent)
        return self._call("scheduler", "ListJobs", req)

    def list_all(self, states: Sequence[int] = (), node_id: str = "",
                 namespace: str = "", consistent: bool = False) -> Iterator[jobs_pb2.Job]:
        token = ""
        while True:
            resp = self.list_page(states, node_id, 1000, token, namespace, consistent)
            yield from resp.jobs
            if not resp.next_page_token:
                return
            token = resp.next_page_token

    def list_jobs(self, request: scheduler_pb2.ListJobsRequest) -> scheduler_pb2.ListJobsResponse:
        """One page of any ListJobsRequest (every filter and order of the API)."""
        return self._call("scheduler", "ListJobs", request)

    def list_jobs_all(self, request: scheduler_pb2.ListJobsRequest) -> Iterator[jobs_pb2.Job]:
        """Every job of `request` (its page_size and page_token are managed here)."""
        req = scheduler_pb2.ListJobsRequest()
        req.CopyFrom(request)
        req.page_size, req.page_token = 1000, ""
        while True:
            resp = self.list_jobs(req)
            yield from resp.jobs
            if not resp.next_page_token:
                return
            req.page_token = resp.next_page_token

    def cancel(self, job_id: str, request_id: str | None = None) -> jobs_pb2.Job:
        req = scheduler_pb2.CancelJobRequest(job_id=job_id, request_id=request_id or uuid.uuid4().hex)
        return self._call("scheduler", "CancelJob", req).job

    def retry_dead(self, job_id: str, request_id: str | None = None) -> jobs_pb2.Job:
        req = scheduler_pb2.RetryDeadJobRequest(job_id=job_id, request_id=request_id or uuid.uuid4().hex)
        return self._call("scheduler", "RetryDeadJob", req).job

    def purge_dead(self, job_ids: Sequence[str] = (), request_id: str | None = None) -> list[str]:
        req = scheduler_pb2.PurgeDeadJobsRequest(job_ids=job_ids, request_id=request_id or uuid.uuid4().hex)
        return list(self._call("scheduler", "PurgeDeadJobs", req).job_ids)

    def explain(self, job_id: str) -> jobs_pb2.PlacementExplanation:
        """Why the job is (not) placed: holds and every node's placement verdict."""
        return self._call("scheduler", "ExplainJob", scheduler_pb2.ExplainJobRequest(job_id=job_id))

    def plan(self, spec: jobs_pb2.JobSpec) -> jobs_pb2.PlacementExplanation:
        """Where `spec` would be placed now, and why. Submits nothing."""
        return self._call("scheduler", "PlanJob", scheduler_pb2.PlanJobRequest(spec=spec))

    # ---- cluster --------------------------------------------------------------------

    def nodes(self, consistent: bool = False) -> list[cluster_pb2.NodeInfo]:
        req = cluster_pb2.ListNodesRequest(consistent=consistent)
        return list(self._call("cluster", "ListNodes", req).nodes)

    def drain_node(self, node_id: str, deadline_s: float = 0.0, force: bool = False,
                   request_id: str | None = None) -> cluster_pb2.NodeInfo:
        """No new jobs on the node; what still runs there after `deadline_s` (now with
        `force`) is stopped and requeued. Returns the node as it is then."""
        req = cluster_pb2.DrainNodeRequest(node_id=node_id, deadline_seconds=deadline_s, force=force,
                                           request_id=request_id or uuid.uuid4().hex)
        return self._call("cluster", "DrainNode", req).node

    def set_node_eligibility(self, node_id: str, eligible: bool,
                             request_id: str | None = None) -> cluster_pb2.NodeInfo:
        req = cluster_pb2.SetNodeEligibilityRequest(node_id=node_id, eligible=eligible,
                                                    request_id=request_id or uuid.uuid4().hex)
        return self._call("cluster", "SetNodeEligibility", req).node

    def update_node(self, node_id: str, set_labels: dict[str, str] | None = None,
                    remove_labels: Sequence[str] = (), cpu_millis: int = 0, memory_mib: int = 0,
                    request_id: str | None = None) -> cluster_pb2.NodeInfo:
        """Change a node's labels and capacity (admin; 0 leaves a capacity as it is)."""
        req = cluster_pb2.UpdateNodeRequest(node_id=node_id, set_labels=set_labels or {},
                                            remove_labels=list(remove_labels), cpu_millis=cpu_millis,
                                            memory_mib=memory_mib,
                                            request_id=request_id or uuid.uuid4().hex)
        return self._call("cluster", "UpdateNode", req).node

    def cluster_config(self, consistent: bool = False) -> list[cluster_pb2.ClusterSetting]:
        req = cluster_pb2.GetClusterConfigRequest(consistent=consistent)
        return list(self._call("cluster", "GetClusterConfig", req).settings)

    def set_cluster_config(self, key: str, value: str = "", reset: bool = False,
                           request_id: str | None = None) -> cluster_pb2.ClusterSetting:
        """Override a cluster setting (admin); `reset`: back to cluster.toml's value."""
        req = cluster_pb2.SetClusterConfigRequest(key=key, value=value, reset=reset,
                                                  request_id=request_id or uuid.uuid4().hex)
        return self._call("cluster", "SetClusterConfig", req).setting

    # membership (admin token)
    def members(self) -> cluster_pb2.ListMembersResponse:
        return self._call("cluster", "ListMembers", cluster_pb2.ListMembersRequest())

    def add_member(self, member: cluster_pb2.Member,
                   request_id: str | None = None) -> cluster_pb2.AddMemberResponse:
        req = cluster_pb2.AddMemberRequest(member=member, request_id=request_id or uuid.uuid4().hex)
        return self._call("cluster", "AddMember", req, timeout=max(self.timeout, 30.0))

    def remove_member(self, node_id: str,
                      request_id: str | None = None) -> cluster_pb2.RemoveMemberResponse:
        req = cluster_pb2.RemoveMemberRequest(node_id=node_id, request_id=request_id or uuid.uuid4().hex)
        return self._call("cluster", "RemoveMember", req, timeout=max(self.timeout, 30.0))

    def status(self, include_replicas: bool = False,
               consistent: bool = False) -> cluster_pb2.ClusterStatusResponse:
        req = cluster_pb2.ClusterStatusRequest(include_replicas=include_replicas, consistent=consistent)
        return self._call("cluster", "ClusterStatus", req)

    def save_snapshot(self, path: str, consistent: bool = False,
                      timeout: float = 600.0) -> dict[str, Any]:
        """Back up the replicated state to `path` (format: `client.backup`) from the first
        of `addresses` that answers; returns the file's header. `consistent` (or the
        client's `consistent`): the node first catches up with every acknowledged write."""
        req = cluster_pb2.SaveSnapshotRequest(consistent=consistent or self.consistent)
        addrs, _ = self.current_channel()
        for i, addr in enumerate(addrs):
            call = cluster_pb2_grpc.ClusterStub(self._channels[addr]).SaveSnapshot(req, timeout=timeout)
            try:
                first = next(call)
                break
            except grpc.RpcError as e:
                if not unreachable(e) or i == len(addrs) - 1:
                    raise
        last = [first]

        def chunks() -> Iterator[bytes]:
            yield first.data
            for msg in call:
                last[0] = msg
                yield msg.data

        info = first.info
        header = {"cluster_name": info.cluster_name, "node_ids": list(info.node_ids),
                  "node_id": info.node_id, "applied_index": info.applied_index, "term": info.term,
                  "created_at": info.created_at, "state_digest": info.state_digest,
                  "job_count": info.job_count, "state_version": info.state_version,
                  "encoding": info.encoding}
        return backup.save(path, header, chunks(), lambda: last[0].payload_bytes,
                           lambda: last[0].payload_sha256)

    def wait_for_leader(self, timeout: float = 30.0) -> cluster_pb2.ClusterStatusResponse:
        deadline = time.monotonic() + timeout
        while True:
            try:
                st = self.status()
                if st.leader_id:
                    return st
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError("no leader elected")
            time.sleep(0.1)
