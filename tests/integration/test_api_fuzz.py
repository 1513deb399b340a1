"""Fuzzing the public gRPC API of a real cluster with hypothesis.

Random requests for every public method (random field values, sizes, unknown enum
numbers, NaN and huge numbers, random bytes that may not even be a message):
every answer is OK or a documented status with a message (never UNKNOWN or
INTERNAL), no node dies, and replaying the refused writes on a quiet cluster
changes neither the Raft log nor any replica's digest.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftsched.client.observe_client import ClusterWatcher
from raftsched.rpc.auth import METHODS
from raftsched.v1 import (
    acl_pb2,
    cluster_pb2,
    events_pb2,
    jobs_pb2,
    scheduler_pb2,
    workflows_pb2,
    workflows_pb2_grpc,
)
from tests.support.cluster import TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

S = grpc.StatusCode
DOCUMENTED = {S.OK, S.INVALID_ARGUMENT, S.NOT_FOUND, S.FAILED_PRECONDITION, S.PERMISSION_DENIED,
              S.UNAUTHENTICATED, S.RESOURCE_EXHAUSTED, S.ALREADY_EXISTS, S.OUT_OF_RANGE}
STREAMS = {"WatchJobs", "WatchCluster", "FollowJobOutput", "SaveSnapshot"}
WRITES = {"SubmitJob", "SubmitJobs", "CancelJob", "RetryDeadJob", "PurgeDeadJobs", "CreateTemplate",
          "UpdateTemplate", "DeleteTemplate", "SubmitFromTemplate", "AddSchedule", "PauseSchedule",
          "ResumeSchedule", "DeleteSchedule", "RunScheduleNow", "SubmitWorkflow", "CancelWorkflow",
          "Bootstrap", "CreateToken", "RevokeToken", "SetQuota", "DrainNode", "SetNodeEligibility",
          "UpdateNode", "SetClusterConfig", "AddMember", "RemoveMember"}


def _request_types() -> dict[str, tuple[Any, Any]]:
    """method path -> (request class, response class), from the service descriptors."""
    out = {}
    for mod in (scheduler_pb2, cluster_pb2, events_pb2, workflows_pb2, acl_pb2):
        for svc in mod.DESCRIPTOR.services_by_name.values():
            for m in svc.methods:
                out[f"/{svc.full_name}/{m.name}"] = (m.input_type._concrete_class,
                                                     m.output_type._concrete_class)
    return out


TYPES = _request_types()
PUBLIC = sorted(TYPES)

SIZES = st.sampled_from([0, 1, 3, 40, 300, 5000, 70_000, 300_000])
TEXT = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    st.sampled_from(["", "default", "team-a", "*", "../../../x", "n1", "0 * * * *", "UTC", "eq"]),
    SIZES.map(lambda n: "x" * n),
)
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, 1e18]))


def _scalar(f: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = f.type
    if t == FieldDescriptor.TYPE_STRING:
        return TEXT
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return NUMBERS if t == FieldDescriptor.TYPE_DOUBLE else st.floats(width=32)
    if t == FieldDescriptor.TYPE_ENUM:
        return st.one_of(st.sampled_from(sorted(f.enum_type.values_by_number)),
                         st.integers(-5, 100))
    bits = 32 if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32,
                       FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32) else 64
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED32,
             FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2 ** bits - 1)
    return st.one_of(st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1), st.integers(-3, 1000))


def _repeated(f: FieldDescriptor) -> bool:
    rep = getattr(f, "is_repeated", None)
    return bool(rep) if rep is not None else f.label == FieldDescriptor.LABEL_REPEATED


@st.composite
def message(draw: Any, cls: Any, depth: int = 0) -> Any:
    msg = cls()
    for f in cls.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            target = getattr(msg, f.name)  # every map of the API is string -> string
            if draw(st.integers(0, 5)) == 0:
                target.update({f"K{i}": "v" for i in range(2000)})  # many entries
            else:
                target.update(draw(st.dictionaries(TEXT, TEXT, max_size=3)))
            continue
        many = draw(st.integers(0, 5)) == 0  # a long list of one small item
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 3:
                continue
            cls_f = f.message_type._concrete_class
            if _repeated(f):
                if many:
                    getattr(msg, f.name).extend([cls_f()] * 20_000)
                else:
                    getattr(msg, f.name).extend(draw(st.lists(message(cls_f, depth + 1), max_size=3)))
            else:
                getattr(msg, f.name).CopyFrom(draw(message(cls_f, depth + 1)))
        elif _repeated(f):
            if many:
                getattr(msg, f.name).extend([draw(_scalar(f).filter(lambda v: not isinstance(v, str)
                                                                     or len(v) < 50))] * 20_000)
            else:
                getattr(msg, f.name).extend(draw(st.lists(_scalar(f), max_size=4)))
        else:
            setattr(msg, f.name, draw(_scalar(f)))
    return msg


def _safe(req: Any) -> Any:
    """Whatever job a random request would run is `true` (its arguments are ignored)."""
    def fix(m: Any) -> None:
        if isinstance(m, jobs_pb2.JobSpec):
            if m.command:
                m.command[0] = "true"
            m.use_shell = False
        for f, v in m.ListFields():
            if f.type == FieldDescriptor.TYPE_MESSAGE and not (
                    f.message_type.GetOptions().map_entry):
                for x in (v if _repeated(f) else [v]):
                    fix(x)
    fix(req)
    if isinstance(req, acl_pb2.RevokeTokenRequest) and req.name == "bootstrap":
        req.name = "nobody"
    # membership: never really add or remove a member of the fuzzed cluster (an add always
    # lacks its Raft address; a removal names no member), the validation is still fuzzed
    if isinstance(req, cluster_pb2.AddMemberRequest):
        req.member.raft_address = ""
    if isinstance(req, cluster_pb2.RemoveMemberRequest) and req.node_id in ("n1", "n2", "n3"):
        req.node_id = "nobody"
    return req


class Fuzzer:
    def __init__(self, c: TestCluster) -> None:
        self.c = c
        self.channels = {n.id: c.channel(n.id, token=None) for n in c.cfg.nodes}
        self.refused: list[tuple[str, str, bytes, bool]] = []
        self.codes: dict[S, int] = {}
        self.last: list[tuple[str, str, bytes, bool]] = []

    def call(self, method: str, node: str, payload: bytes, with_token: bool) -> tuple[S, str]:
        md = (("authorization", f"Bearer {self.c.token}"),) if with_token else ()
        self.last = [*self.last[-4:], (method, node, payload[:300], with_token)]
        ch = self.channels[node]
        name = method.rsplit("/", 1)[1]
        try:
            if name in STREAMS:
                it = ch.unary_stream(method)(payload, metadata=md, timeout=0.5)
                next(iter(it), None)
                it.cancel()
            else:
                ch.unary_unary(method)(payload, metadata=md, timeout=10)
            code, msg = S.OK, ""
        except grpc.RpcError as e:
            code, msg = e.code(), e.details() or ""
            if name in STREAMS and code in (S.DEADLINE_EXCEEDED, S.CANCELLED):
                code = S.OK  # a live stream ended by our deadline
        self.codes[code] = self.codes.get(code, 0) + 1
        assert code in DOCUMENTED, f"{method}: {code} {msg!r}; last calls {self.last}"
        assert code == S.OK or msg, f"{method}: {code} without a message"
        if code != S.OK and name in WRITES:
            self.refused.append((method, node, payload, with_token))
        return code, msg


@pytest.fixture(scope="module")
def fuzz_cluster() -> Any:
    c = TestCluster(n_nodes=3).start()
    try:
        c.wait_ready()
        yield c
    finally:
        c.close()


def test_every_public_method_is_in_the_permission_table() -> None:
    assert set(PUBLIC) == set(METHODS)


def test_fuzz_public_api(fuzz_cluster: TestCluster) -> None:
    c = fuzz_cluster
    fz = Fuzzer(c)
    nodes = [n.id for n in c.cfg.nodes]

    @settings(max_examples=250, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one(data: Any) -> None:
        method = data.draw(st.sampled_from(PUBLIC))
        node = data.draw(st.sampled_from(nodes))
        token = data.draw(st.integers(0, 9)) != 0  # mostly with the management token
        if data.draw(st.integers(0, 9)) == 0:  # raw bytes: maybe no valid message at all
            payload = data.draw(st.binary(max_size=200))
        else:
            payload = _safe(data.draw(message(TYPES[method][0]))).SerializeToString()
        fz.call(method, node, payload, token)

    one()
    # invalid UTF-8 in a string field (ListJobsRequest.node_id) and an unknown enum number
    bad_utf8 = b"\x12\x02\xff\xfe"
    assert fz.call("/raftsched.v1.Scheduler/ListJobs", "n1", bad_utf8, True)[0] == S.INVALID_ARGUMENT
    code, msg = fz.call("/raftsched.v1.Scheduler/ListJobs", "n1",
                        scheduler_pb2.ListJobsRequest(states=[77]).SerializeToString(), True)
    assert code == S.INVALID_ARGUMENT and "states" in msg
    code, msg = fz.call("/raftsched.v1.Workflows/NextFireTimes", "n2",
                        workflows_pb2.NextFireTimesRequest(cron="* * * * *", after=1e18)
                        .SerializeToString(), True)
    assert code == S.INVALID_ARGUMENT and "after" in msg
    code, msg = fz.call("/raftsched.v1.Scheduler/SubmitJob", "n3", b"", False)
    assert code == S.UNAUTHENTICATED
    print(f"fuzz: {sum(fz.codes.values())} calls, codes {({k.name: v for k, v in fz.codes.items()})}")
    assert all(c.procs[n].poll() is None for n in nodes), "a node died"
    _replay_refused(c, fz)


def _quiet(c: TestCluster) -> int:
    """Stop schedules, wait until no job is active and the log stops growing."""
    wc = workflows_pb2_grpc.WorkflowsStub(c.channel(c.leader()))
    for s in wc.ListSchedules(workflows_pb2.ListSchedulesRequest(), timeout=10).schedules:
        wc.DeleteSchedule(workflows_pb2.ScheduleRef(id=s.id), timeout=10)
    cl = c.client()
    active = {jobs_pb2.PENDING, jobs_pb2.ASSIGNED, jobs_pb2.RUNNING, jobs_pb2.CANCELLING,
              jobs_pb2.WAITING}
    c.wait_until(lambda: not any(j.state in active for j in cl.list_all()), 90, "jobs settle")
    last, since = -1, time.monotonic()
    while time.monotonic() - since < 1.5:
        idx = cl.status().commit_index
        if idx != last:
            last, since = idx, time.monotonic()
        time.sleep(0.1)
    return last


def _replay_refused(c: TestCluster, fz: Fuzzer) -> None:
    # Node up/down entries are the leader's, not the clients': on a loaded machine a late
    # heartbeat may commit some while we replay. Every other entry would be a refused
    # request that reached the log.
    node_entries: set[int] = set()
    watcher = ClusterWatcher([c.addr(n.id) for n in c.cfg.nodes], send_initial=False,
                             token=c.token)

    def watch() -> None:
        with contextlib.suppress(Exception):
            for ev in watcher.events():
                if ev.kind in (events_pb2.NODE_DOWN, events_pb2.NODE_UP):
                    node_entries.add(ev.raft_index)

    threading.Thread(target=watch, daemon=True).start()
    index = _quiet(c)
    digests = {(r.applied_index, r.state_digest) for r in c.replicas_identical()}
    again = 0
    refused, fz.refused = fz.refused, []
    for method, node, payload, token in refused:
        code, _ = fz.call(method, node, payload, token)
        if code != S.OK:
            again += 1
        else:  # refused before only because of the state then (e.g. a quota): start over
            index = _quiet(c)
            digests = {(r.applied_index, r.state_digest) for r in c.replicas_identical()}
    appended = set(range(index + 1, c.client().status().commit_index + 1))
    c.wait_until(lambda: appended <= node_entries, 5, f"entries {sorted(appended)} explained")
    watcher.cancel()
    if not appended:
        assert {(r.applied_index, r.state_digest) for r in c.replicas_identical()} == digests
    print(f"fuzz: {again} refused writes replayed; entries appended meanwhile: "
          f"{len(appended)} (node up/down only)")
    assert again > 20
