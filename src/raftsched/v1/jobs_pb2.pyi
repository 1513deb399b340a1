from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    PENDING: _ClassVar[JobState]
    ASSIGNED: _ClassVar[JobState]
    RUNNING: _ClassVar[JobState]
    SUCCEEDED: _ClassVar[JobState]
    FAILED: _ClassVar[JobState]
    CANCELLED: _ClassVar[JobState]
    WAITING: _ClassVar[JobState]
    UPSTREAM_FAILED: _ClassVar[JobState]
    TIMED_OUT: _ClassVar[JobState]
    DEAD: _ClassVar[JobState]
    CANCELLING: _ClassVar[JobState]
JOB_STATE_UNSPECIFIED: JobState
PENDING: JobState
ASSIGNED: JobState
RUNNING: JobState
SUCCEEDED: JobState
FAILED: JobState
CANCELLED: JobState
WAITING: JobState
UPSTREAM_FAILED: JobState
TIMED_OUT: JobState
DEAD: JobState
CANCELLING: JobState

class RetryPolicy(_message.Message):
    __slots__ = ("max_attempts", "initial_delay_seconds", "multiplier", "max_delay_seconds", "jitter")
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    MAX_DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    initial_delay_seconds: float
    multiplier: float
    max_delay_seconds: float
    jitter: float
    def __init__(self, max_attempts: _Optional[int] = ..., initial_delay_seconds: _Optional[float] = ..., multiplier: _Optional[float] = ..., max_delay_seconds: _Optional[float] = ..., jitter: _Optional[float] = ...) -> None: ...

class Constraint(_message.Message):
    __slots__ = ("key", "op", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    op: str
    value: str
    def __init__(self, key: _Optional[str] = ..., op: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class AttemptRecord(_message.Message):
    __slots__ = ("attempt", "node_id", "fencing_token", "assigned_at", "started_at", "finished_at", "outcome", "exit_code", "has_exit_code", "reason")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    HAS_EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    node_id: str
    fencing_token: int
    assigned_at: float
    started_at: float
    finished_at: float
    outcome: str
    exit_code: int
    has_exit_code: bool
    reason: str
    def __init__(self, attempt: _Optional[int] = ..., node_id: _Optional[str] = ..., fencing_token: _Optional[int] = ..., assigned_at: _Optional[float] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., outcome: _Optional[str] = ..., exit_code: _Optional[int] = ..., has_exit_code: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("cpu_millis", "memory_mib")
    CPU_MILLIS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    cpu_millis: int
    memory_mib: int
    def __init__(self, cpu_millis: _Optional[int] = ..., memory_mib: _Optional[int] = ...) -> None: ...

class ResourceLimits(_message.Message):
    __slots__ = ("memory_mib", "cpu_millis", "pids")
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    CPU_MILLIS_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    memory_mib: int
    cpu_millis: int
    pids: int
    def __init__(self, memory_mib: _Optional[int] = ..., cpu_millis: _Optional[int] = ..., pids: _Optional[int] = ...) -> None: ...

class PythonCall(_message.Message):
    __slots__ = ("target", "args_json", "kwargs_json")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    KWARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    target: str
    args_json: str
    kwargs_json: str
    def __init__(self, target: _Optional[str] = ..., args_json: _Optional[str] = ..., kwargs_json: _Optional[str] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("command", "shell", "use_shell", "env", "working_dir", "resources", "priority", "timeout_seconds", "name", "retry", "constraints", "sequence_key", "limits", "pool", "namespace", "run_as", "python")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    SHELL_FIELD_NUMBER: _ClassVar[int]
    USE_SHELL_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_KEY_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    RUN_AS_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    command: _containers.RepeatedScalarFieldContainer[str]
    shell: str
    use_shell: bool
    env: _containers.ScalarMap[str, str]
    working_dir: str
    resources: Resources
    priority: int
    timeout_seconds: float
    name: str
    retry: RetryPolicy
    constraints: _containers.RepeatedCompositeFieldContainer[Constraint]
    sequence_key: str
    limits: ResourceLimits
    pool: str
    namespace: str
    run_as: str
    python: PythonCall
    def __init__(self, command: _Optional[_Iterable[str]] = ..., shell: _Optional[str] = ..., use_shell: _Optional[bool] = ..., env: _Optional[_Mapping[str, str]] = ..., working_dir: _Optional[str] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., priority: _Optional[int] = ..., timeout_seconds: _Optional[float] = ..., name: _Optional[str] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., constraints: _Optional[_Iterable[_Union[Constraint, _Mapping]]] = ..., sequence_key: _Optional[str] = ..., limits: _Optional[_Union[ResourceLimits, _Mapping]] = ..., pool: _Optional[str] = ..., namespace: _Optional[str] = ..., run_as: _Optional[str] = ..., python: _Optional[_Union[PythonCall, _Mapping]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "spec", "state", "node_id", "attempt", "fencing_token", "seq", "submitted_at", "assigned_at", "started_at", "finished_at", "exit_code", "has_exit_code", "reason", "stdout_tail", "stderr_tail", "workflow_id", "depends_on", "schedule_id", "scheduled_at", "history", "not_before", "failures", "attempts", "cancel_requested_at", "submitted_by", "cancelled_by", "pending_reason", "result_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    HAS_EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STDOUT_TAIL_FIELD_NUMBER: _ClassVar[int]
    STDERR_TAIL_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_BY_FIELD_NUMBER: _ClassVar[int]
    PENDING_REASON_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec: JobSpec
    state: JobState
    node_id: str
    attempt: int
    fencing_token: int
    seq: int
    submitted_at: float
    assigned_at: float
    started_at: float
    finished_at: float
    exit_code: int
    has_exit_code: bool
    reason: str
    stdout_tail: str
    stderr_tail: str
    workflow_id: str
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    schedule_id: str
    scheduled_at: float
    history: _containers.RepeatedCompositeFieldContainer[JobTransition]
    not_before: float
    failures: int
    attempts: _containers.RepeatedCompositeFieldContainer[AttemptRecord]
    cancel_requested_at: float
    submitted_by: str
    cancelled_by: str
    pending_reason: str
    result_json: str
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., node_id: _Optional[str] = ..., attempt: _Optional[int] = ..., fencing_token: _Optional[int] = ..., seq: _Optional[int] = ..., submitted_at: _Optional[float] = ..., assigned_at: _Optional[float] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., exit_code: _Optional[int] = ..., has_exit_code: _Optional[bool] = ..., reason: _Optional[str] = ..., stdout_tail: _Optional[str] = ..., stderr_tail: _Optional[str] = ..., workflow_id: _Optional[str] = ..., depends_on: _Optional[_Iterable[str]] = ..., schedule_id: _Optional[str] = ..., scheduled_at: _Optional[float] = ..., history: _Optional[_Iterable[_Union[JobTransition, _Mapping]]] = ..., not_before: _Optional[float] = ..., failures: _Optional[int] = ..., attempts: _Optional[_Iterable[_Union[AttemptRecord, _Mapping]]] = ..., cancel_requested_at: _Optional[float] = ..., submitted_by: _Optional[str] = ..., cancelled_by: _Optional[str] = ..., pending_reason: _Optional[str] = ..., result_json: _Optional[str] = ...) -> None: ...

class NodeVerdict(_message.Message):
    __slots__ = ("node_id", "check", "detail")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CHECK_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    check: str
    detail: str
    def __init__(self, node_id: _Optional[str] = ..., check: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class PlacementExplanation(_message.Message):
    __slots__ = ("job_id", "state", "summary", "holds", "nodes", "node_id", "ranked", "avoided_node", "strategy", "answered_by", "applied_index")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RANKED_FIELD_NUMBER: _ClassVar[int]
    AVOIDED_NODE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: JobState
    summary: str
    holds: _containers.RepeatedScalarFieldContainer[str]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeVerdict]
    node_id: str
    ranked: _containers.RepeatedScalarFieldContainer[str]
    avoided_node: str
    strategy: str
    answered_by: str
    applied_index: int
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., summary: _Optional[str] = ..., holds: _Optional[_Iterable[str]] = ..., nodes: _Optional[_Iterable[_Union[NodeVerdict, _Mapping]]] = ..., node_id: _Optional[str] = ..., ranked: _Optional[_Iterable[str]] = ..., avoided_node: _Optional[str] = ..., strategy: _Optional[str] = ..., answered_by: _Optional[str] = ..., applied_index: _Optional[int] = ...) -> None: ...

class JobTransition(_message.Message):
    __slots__ = ("at", "state", "node_id", "attempt", "fencing_token", "reason")
    AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    at: float
    state: JobState
    node_id: str
    attempt: int
    fencing_token: int
    reason: str
    def __init__(self, at: _Optional[float] = ..., state: _Optional[_Union[JobState, str]] = ..., node_id: _Optional[str] = ..., attempt: _Optional[int] = ..., fencing_token: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...
