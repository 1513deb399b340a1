from raftsched.v1 import jobs_pb2 as _jobs_pb2
from raftsched.v1 import cluster_pb2 as _cluster_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReportKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPORT_KIND_UNSPECIFIED: _ClassVar[ReportKind]
    STARTED: _ClassVar[ReportKind]
    FINISHED: _ClassVar[ReportKind]
REPORT_KIND_UNSPECIFIED: ReportKind
STARTED: ReportKind
FINISHED: ReportKind

class StartJob(_message.Message):
    __slots__ = ("job_id", "attempt", "fencing_token", "spec")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    fencing_token: int
    spec: _jobs_pb2.JobSpec
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., fencing_token: _Optional[int] = ..., spec: _Optional[_Union[_jobs_pb2.JobSpec, _Mapping]] = ...) -> None: ...

class StartJobsRequest(_message.Message):
    __slots__ = ("leader_id", "term", "jobs", "incarnation", "generation")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    leader_id: str
    term: int
    jobs: _containers.RepeatedCompositeFieldContainer[StartJob]
    incarnation: str
    generation: int
    def __init__(self, leader_id: _Optional[str] = ..., term: _Optional[int] = ..., jobs: _Optional[_Iterable[_Union[StartJob, _Mapping]]] = ..., incarnation: _Optional[str] = ..., generation: _Optional[int] = ...) -> None: ...

class StartJobsResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...

class JobReport(_message.Message):
    __slots__ = ("job_id", "attempt", "fencing_token", "kind", "at", "exit_code", "timed_out", "error", "stdout_tail", "stderr_tail", "has_exit_code", "lost", "oom_killed", "isolation", "result_json")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STDOUT_TAIL_FIELD_NUMBER: _ClassVar[int]
    STDERR_TAIL_FIELD_NUMBER: _ClassVar[int]
    HAS_EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLED_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    fencing_token: int
    kind: ReportKind
    at: float
    exit_code: int
    timed_out: bool
    error: str
    stdout_tail: str
    stderr_tail: str
    has_exit_code: bool
    lost: bool
    oom_killed: bool
    isolation: str
    result_json: str
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., fencing_token: _Optional[int] = ..., kind: _Optional[_Union[ReportKind, str]] = ..., at: _Optional[float] = ..., exit_code: _Optional[int] = ..., timed_out: _Optional[bool] = ..., error: _Optional[str] = ..., stdout_tail: _Optional[str] = ..., stderr_tail: _Optional[str] = ..., has_exit_code: _Optional[bool] = ..., lost: _Optional[bool] = ..., oom_killed: _Optional[bool] = ..., isolation: _Optional[str] = ..., result_json: _Optional[str] = ...) -> None: ...

class ReportJobsRequest(_message.Message):
    __slots__ = ("node_id", "reports")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    reports: _containers.RepeatedCompositeFieldContainer[JobReport]
    def __init__(self, node_id: _Optional[str] = ..., reports: _Optional[_Iterable[_Union[JobReport, _Mapping]]] = ...) -> None: ...

class ReportJobsResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...

class RunningAttempt(_message.Message):
    __slots__ = ("job_id", "attempt", "fencing_token")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    fencing_token: int
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., fencing_token: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("node_id", "grpc_address", "raft_address", "capacity", "labels", "running", "incarnation", "running_jobs", "cpu_millis_in_use", "memory_mib_in_use", "dedicated_pool")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    CPU_MILLIS_IN_USE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_IN_USE_FIELD_NUMBER: _ClassVar[int]
    DEDICATED_POOL_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    grpc_address: str
    raft_address: str
    capacity: _jobs_pb2.Resources
    labels: _containers.ScalarMap[str, str]
    running: _containers.RepeatedCompositeFieldContainer[RunningAttempt]
    incarnation: str
    running_jobs: int
    cpu_millis_in_use: int
    memory_mib_in_use: int
    dedicated_pool: str
    def __init__(self, node_id: _Optional[str] = ..., grpc_address: _Optional[str] = ..., raft_address: _Optional[str] = ..., capacity: _Optional[_Union[_jobs_pb2.Resources, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., running: _Optional[_Iterable[_Union[RunningAttempt, _Mapping]]] = ..., incarnation: _Optional[str] = ..., running_jobs: _Optional[int] = ..., cpu_millis_in_use: _Optional[int] = ..., memory_mib_in_use: _Optional[int] = ..., dedicated_pool: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("leader_id", "term", "revoke", "lease_seconds", "generation")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    REVOKE_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    leader_id: str
    term: int
    revoke: _containers.RepeatedCompositeFieldContainer[RunningAttempt]
    lease_seconds: float
    generation: int
    def __init__(self, leader_id: _Optional[str] = ..., term: _Optional[int] = ..., revoke: _Optional[_Iterable[_Union[RunningAttempt, _Mapping]]] = ..., lease_seconds: _Optional[float] = ..., generation: _Optional[int] = ...) -> None: ...

class ReplicaStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReadIndexRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class ReadIndexResponse(_message.Message):
    __slots__ = ("read_index", "term")
    READ_INDEX_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    read_index: int
    term: int
    def __init__(self, read_index: _Optional[int] = ..., term: _Optional[int] = ...) -> None: ...

class ReplicaStatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _cluster_pb2.ReplicaStatus
    def __init__(self, status: _Optional[_Union[_cluster_pb2.ReplicaStatus, _Mapping]] = ...) -> None: ...

class GetMembersRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class GetMembersResponse(_message.Message):
    __slots__ = ("members", "version")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[_cluster_pb2.Member]
    version: int
    def __init__(self, members: _Optional[_Iterable[_Union[_cluster_pb2.Member, _Mapping]]] = ..., version: _Optional[int] = ...) -> None: ...
