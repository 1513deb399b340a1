from raftsched.v1 import jobs_pb2 as _jobs_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MisfirePolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MISFIRE_SKIP: _ClassVar[MisfirePolicy]
    MISFIRE_RUN_ONCE: _ClassVar[MisfirePolicy]
    MISFIRE_RUN_ALL: _ClassVar[MisfirePolicy]

class ConcurrencyPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONCURRENCY_ALLOW: _ClassVar[ConcurrencyPolicy]
    CONCURRENCY_FORBID: _ClassVar[ConcurrencyPolicy]
    CONCURRENCY_REPLACE: _ClassVar[ConcurrencyPolicy]
MISFIRE_SKIP: MisfirePolicy
MISFIRE_RUN_ONCE: MisfirePolicy
MISFIRE_RUN_ALL: MisfirePolicy
CONCURRENCY_ALLOW: ConcurrencyPolicy
CONCURRENCY_FORBID: ConcurrencyPolicy
CONCURRENCY_REPLACE: ConcurrencyPolicy

class Template(_message.Message):
    __slots__ = ("name", "spec", "cron", "timezone", "description", "created_at", "updated_at", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: _jobs_pb2.JobSpec
    cron: str
    timezone: str
    description: str
    created_at: float
    updated_at: float
    version: int
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[_jobs_pb2.JobSpec, _Mapping]] = ..., cron: _Optional[str] = ..., timezone: _Optional[str] = ..., description: _Optional[str] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., version: _Optional[int] = ...) -> None: ...

class PutTemplateRequest(_message.Message):
    __slots__ = ("template", "request_id")
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    template: Template
    request_id: str
    def __init__(self, template: _Optional[_Union[Template, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetTemplateRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListTemplatesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTemplatesResponse(_message.Message):
    __slots__ = ("templates",)
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[Template]
    def __init__(self, templates: _Optional[_Iterable[_Union[Template, _Mapping]]] = ...) -> None: ...

class DeleteTemplateRequest(_message.Message):
    __slots__ = ("name", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteTemplateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SpecOverrides(_message.Message):
    __slots__ = ("command", "shell", "env", "working_dir", "cpu_millis", "memory_mib", "priority", "timeout_seconds", "name")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    SHELL_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    CPU_MILLIS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    command: _containers.RepeatedScalarFieldContainer[str]
    shell: str
    env: _containers.ScalarMap[str, str]
    working_dir: str
    cpu_millis: int
    memory_mib: int
    priority: int
    timeout_seconds: float
    name: str
    def __init__(self, command: _Optional[_Iterable[str]] = ..., shell: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., working_dir: _Optional[str] = ..., cpu_millis: _Optional[int] = ..., memory_mib: _Optional[int] = ..., priority: _Optional[int] = ..., timeout_seconds: _Optional[float] = ..., name: _Optional[str] = ...) -> None: ...

class SubmitFromTemplateRequest(_message.Message):
    __slots__ = ("template", "overrides", "request_id")
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    template: str
    overrides: SpecOverrides
    request_id: str
    def __init__(self, template: _Optional[str] = ..., overrides: _Optional[_Union[SpecOverrides, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitFromTemplateResponse(_message.Message):
    __slots__ = ("job_id", "spec")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    spec: _jobs_pb2.JobSpec
    def __init__(self, job_id: _Optional[str] = ..., spec: _Optional[_Union[_jobs_pb2.JobSpec, _Mapping]] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("id", "cron", "timezone", "spec", "template", "start", "end", "misfire", "misfire_threshold_seconds", "misfire_deadline_seconds", "concurrency", "paused", "created_at", "last_fired", "last_job_id", "runs", "skipped", "next_fire")
    ID_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    MISFIRE_FIELD_NUMBER: _ClassVar[int]
    MISFIRE_THRESHOLD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MISFIRE_DEADLINE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_FIRED_FIELD_NUMBER: _ClassVar[int]
    LAST_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIRE_FIELD_NUMBER: _ClassVar[int]
    id: str
    cron: str
    timezone: str
    spec: _jobs_pb2.JobSpec
    template: str
    start: float
    end: float
    misfire: MisfirePolicy
    misfire_threshold_seconds: float
    misfire_deadline_seconds: float
    concurrency: ConcurrencyPolicy
    paused: bool
    created_at: float
    last_fired: float
    last_job_id: str
    runs: int
    skipped: int
    next_fire: float
    def __init__(self, id: _Optional[str] = ..., cron: _Optional[str] = ..., timezone: _Optional[str] = ..., spec: _Optional[_Union[_jobs_pb2.JobSpec, _Mapping]] = ..., template: _Optional[str] = ..., start: _Optional[float] = ..., end: _Optional[float] = ..., misfire: _Optional[_Union[MisfirePolicy, str]] = ..., misfire_threshold_seconds: _Optional[float] = ..., misfire_deadline_seconds: _Optional[float] = ..., concurrency: _Optional[_Union[ConcurrencyPolicy, str]] = ..., paused: _Optional[bool] = ..., created_at: _Optional[float] = ..., last_fired: _Optional[float] = ..., last_job_id: _Optional[str] = ..., runs: _Optional[int] = ..., skipped: _Optional[int] = ..., next_fire: _Optional[float] = ...) -> None: ...

class AddScheduleRequest(_message.Message):
    __slots__ = ("schedule", "request_id")
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    schedule: Schedule
    request_id: str
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListSchedulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSchedulesResponse(_message.Message):
    __slots__ = ("schedules",)
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    schedules: _containers.RepeatedCompositeFieldContainer[Schedule]
    def __init__(self, schedules: _Optional[_Iterable[_Union[Schedule, _Mapping]]] = ...) -> None: ...

class ScheduleRef(_message.Message):
    __slots__ = ("id", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    request_id: str
    def __init__(self, id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteScheduleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunScheduleNowResponse(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class NextFireTimesRequest(_message.Message):
    __slots__ = ("id", "cron", "timezone", "after", "count", "start", "end")
    ID_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    id: str
    cron: str
    timezone: str
    after: float
    count: int
    start: float
    end: float
    def __init__(self, id: _Optional[str] = ..., cron: _Optional[str] = ..., timezone: _Optional[str] = ..., after: _Optional[float] = ..., count: _Optional[int] = ..., start: _Optional[float] = ..., end: _Optional[float] = ...) -> None: ...

class NextFireTimesResponse(_message.Message):
    __slots__ = ("times", "local")
    TIMES_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    times: _containers.RepeatedScalarFieldContainer[float]
    local: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, times: _Optional[_Iterable[float]] = ..., local: _Optional[_Iterable[str]] = ...) -> None: ...

class WorkflowJobSpec(_message.Message):
    __slots__ = ("name", "spec", "depends_on")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: _jobs_pb2.JobSpec
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[_jobs_pb2.JobSpec, _Mapping]] = ..., depends_on: _Optional[_Iterable[str]] = ...) -> None: ...

class SubmitWorkflowRequest(_message.Message):
    __slots__ = ("name", "jobs", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    jobs: _containers.RepeatedCompositeFieldContainer[WorkflowJobSpec]
    request_id: str
    def __init__(self, name: _Optional[str] = ..., jobs: _Optional[_Iterable[_Union[WorkflowJobSpec, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitWorkflowResponse(_message.Message):
    __slots__ = ("workflow_id", "job_ids")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, workflow_id: _Optional[str] = ..., job_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetWorkflowRequest(_message.Message):
    __slots__ = ("workflow_id",)
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    def __init__(self, workflow_id: _Optional[str] = ...) -> None: ...

class WorkflowJobStatus(_message.Message):
    __slots__ = ("name", "job")
    NAME_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    name: str
    job: _jobs_pb2.Job
    def __init__(self, name: _Optional[str] = ..., job: _Optional[_Union[_jobs_pb2.Job, _Mapping]] = ...) -> None: ...

class WorkflowStatus(_message.Message):
    __slots__ = ("workflow_id", "name", "submitted_at", "cancelled", "state", "jobs", "counts")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    name: str
    submitted_at: float
    cancelled: bool
    state: str
    jobs: _containers.RepeatedCompositeFieldContainer[WorkflowJobStatus]
    counts: _containers.ScalarMap[str, int]
    def __init__(self, workflow_id: _Optional[str] = ..., name: _Optional[str] = ..., submitted_at: _Optional[float] = ..., cancelled: _Optional[bool] = ..., state: _Optional[str] = ..., jobs: _Optional[_Iterable[_Union[WorkflowJobStatus, _Mapping]]] = ..., counts: _Optional[_Mapping[str, int]] = ...) -> None: ...

class CancelWorkflowRequest(_message.Message):
    __slots__ = ("workflow_id", "request_id")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    request_id: str
    def __init__(self, workflow_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CancelWorkflowResponse(_message.Message):
    __slots__ = ("cancelled", "still_running")
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    STILL_RUNNING_FIELD_NUMBER: _ClassVar[int]
    cancelled: int
    still_running: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cancelled: _Optional[int] = ..., still_running: _Optional[_Iterable[str]] = ...) -> None: ...
