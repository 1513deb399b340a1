from raftsched.v1 import jobs_pb2 as _jobs_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClusterEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLUSTER_EVENT_KIND_UNSPECIFIED: _ClassVar[ClusterEventKind]
    LEADER_CHANGED: _ClassVar[ClusterEventKind]
    NODE_DOWN: _ClassVar[ClusterEventKind]
    NODE_UP: _ClassVar[ClusterEventKind]
    NODE_SCHEDULING: _ClassVar[ClusterEventKind]
    NODE_UPDATED: _ClassVar[ClusterEventKind]
    CLUSTER_CONFIG: _ClassVar[ClusterEventKind]

class OutputSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_SOURCE_UNSPECIFIED: _ClassVar[OutputSource]
    NODE_FILE: _ClassVar[OutputSource]
    REPLICATED_TAIL: _ClassVar[OutputSource]
CLUSTER_EVENT_KIND_UNSPECIFIED: ClusterEventKind
LEADER_CHANGED: ClusterEventKind
NODE_DOWN: ClusterEventKind
NODE_UP: ClusterEventKind
NODE_SCHEDULING: ClusterEventKind
NODE_UPDATED: ClusterEventKind
CLUSTER_CONFIG: ClusterEventKind
OUTPUT_SOURCE_UNSPECIFIED: OutputSource
NODE_FILE: OutputSource
REPLICATED_TAIL: OutputSource

class Position(_message.Message):
    __slots__ = ("index", "ordinal")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ORDINAL_FIELD_NUMBER: _ClassVar[int]
    index: int
    ordinal: int
    def __init__(self, index: _Optional[int] = ..., ordinal: _Optional[int] = ...) -> None: ...

class WatchJobsRequest(_message.Message):
    __slots__ = ("job_ids", "workflow_id", "states", "node_id", "resume_from", "has_resume_from", "send_initial")
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    HAS_RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    SEND_INITIAL_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    workflow_id: str
    states: _containers.RepeatedScalarFieldContainer[_jobs_pb2.JobState]
    node_id: str
    resume_from: Position
    has_resume_from: bool
    send_initial: bool
    def __init__(self, job_ids: _Optional[_Iterable[str]] = ..., workflow_id: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_jobs_pb2.JobState, str]]] = ..., node_id: _Optional[str] = ..., resume_from: _Optional[_Union[Position, _Mapping]] = ..., has_resume_from: _Optional[bool] = ..., send_initial: _Optional[bool] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("position", "job", "previous_state", "initial")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATE_FIELD_NUMBER: _ClassVar[int]
    INITIAL_FIELD_NUMBER: _ClassVar[int]
    position: Position
    job: _jobs_pb2.Job
    previous_state: _jobs_pb2.JobState
    initial: bool
    def __init__(self, position: _Optional[_Union[Position, _Mapping]] = ..., job: _Optional[_Union[_jobs_pb2.Job, _Mapping]] = ..., previous_state: _Optional[_Union[_jobs_pb2.JobState, str]] = ..., initial: _Optional[bool] = ...) -> None: ...

class WatchJobsResponse(_message.Message):
    __slots__ = ("events", "position", "synced")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    SYNCED_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[JobEvent]
    position: Position
    synced: bool
    def __init__(self, events: _Optional[_Iterable[_Union[JobEvent, _Mapping]]] = ..., position: _Optional[_Union[Position, _Mapping]] = ..., synced: _Optional[bool] = ...) -> None: ...

class WatchClusterRequest(_message.Message):
    __slots__ = ("send_initial",)
    SEND_INITIAL_FIELD_NUMBER: _ClassVar[int]
    send_initial: bool
    def __init__(self, send_initial: _Optional[bool] = ...) -> None: ...

class ClusterEvent(_message.Message):
    __slots__ = ("kind", "node_id", "term", "at", "raft_index", "reason", "initial", "observed_by")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    RAFT_INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    INITIAL_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_BY_FIELD_NUMBER: _ClassVar[int]
    kind: ClusterEventKind
    node_id: str
    term: int
    at: float
    raft_index: int
    reason: str
    initial: bool
    observed_by: str
    def __init__(self, kind: _Optional[_Union[ClusterEventKind, str]] = ..., node_id: _Optional[str] = ..., term: _Optional[int] = ..., at: _Optional[float] = ..., raft_index: _Optional[int] = ..., reason: _Optional[str] = ..., initial: _Optional[bool] = ..., observed_by: _Optional[str] = ...) -> None: ...

class JobOutputRequest(_message.Message):
    __slots__ = ("job_id", "attempt", "local_only", "stdout_offset", "stderr_offset")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LOCAL_ONLY_FIELD_NUMBER: _ClassVar[int]
    STDOUT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    STDERR_OFFSET_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    local_only: bool
    stdout_offset: int
    stderr_offset: int
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., local_only: _Optional[bool] = ..., stdout_offset: _Optional[int] = ..., stderr_offset: _Optional[int] = ...) -> None: ...

class JobOutputResponse(_message.Message):
    __slots__ = ("job_id", "attempt", "node_id", "source", "stdout", "stderr", "truncated", "note", "running")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    node_id: str
    source: OutputSource
    stdout: bytes
    stderr: bytes
    truncated: bool
    note: str
    running: bool
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., node_id: _Optional[str] = ..., source: _Optional[_Union[OutputSource, str]] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., truncated: _Optional[bool] = ..., note: _Optional[str] = ..., running: _Optional[bool] = ...) -> None: ...

class JobOutputChunk(_message.Message):
    __slots__ = ("stdout", "stderr", "source", "node_id", "attempt", "done", "note")
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    stdout: bytes
    stderr: bytes
    source: OutputSource
    node_id: str
    attempt: int
    done: bool
    note: str
    def __init__(self, stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., source: _Optional[_Union[OutputSource, str]] = ..., node_id: _Optional[str] = ..., attempt: _Optional[int] = ..., done: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...
