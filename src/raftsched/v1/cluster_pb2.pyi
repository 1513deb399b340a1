from raftsched.v1 import jobs_pb2 as _jobs_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeInfo(_message.Message):
    __slots__ = ("id", "grpc_address", "raft_address", "capacity", "allocated", "alive", "running_jobs", "labels", "last_heartbeat_age", "dedicated_pool", "eligible", "draining", "drain_deadline", "scheduling", "label_overrides", "labels_removed", "cpu_override", "memory_override", "incarnation")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelOverridesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_AGE_FIELD_NUMBER: _ClassVar[int]
    DEDICATED_POOL_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    DRAIN_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_FIELD_NUMBER: _ClassVar[int]
    LABEL_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    LABELS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    CPU_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    id: str
    grpc_address: str
    raft_address: str
    capacity: _jobs_pb2.Resources
    allocated: _jobs_pb2.Resources
    alive: bool
    running_jobs: int
    labels: _containers.ScalarMap[str, str]
    last_heartbeat_age: float
    dedicated_pool: str
    eligible: bool
    draining: bool
    drain_deadline: float
    scheduling: str
    label_overrides: _containers.ScalarMap[str, str]
    labels_removed: _containers.RepeatedScalarFieldContainer[str]
    cpu_override: int
    memory_override: int
    incarnation: str
    def __init__(self, id: _Optional[str] = ..., grpc_address: _Optional[str] = ..., raft_address: _Optional[str] = ..., capacity: _Optional[_Union[_jobs_pb2.Resources, _Mapping]] = ..., allocated: _Optional[_Union[_jobs_pb2.Resources, _Mapping]] = ..., alive: _Optional[bool] = ..., running_jobs: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., last_heartbeat_age: _Optional[float] = ..., dedicated_pool: _Optional[str] = ..., eligible: _Optional[bool] = ..., draining: _Optional[bool] = ..., drain_deadline: _Optional[float] = ..., scheduling: _Optional[str] = ..., label_overrides: _Optional[_Mapping[str, str]] = ..., labels_removed: _Optional[_Iterable[str]] = ..., cpu_override: _Optional[int] = ..., memory_override: _Optional[int] = ..., incarnation: _Optional[str] = ...) -> None: ...

class UpdateNodeRequest(_message.Message):
    __slots__ = ("node_id", "set_labels", "remove_labels", "cpu_millis", "memory_mib", "request_id")
    class SetLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SET_LABELS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_LABELS_FIELD_NUMBER: _ClassVar[int]
    CPU_MILLIS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    set_labels: _containers.ScalarMap[str, str]
    remove_labels: _containers.RepeatedScalarFieldContainer[str]
    cpu_millis: int
    memory_mib: int
    request_id: str
    def __init__(self, node_id: _Optional[str] = ..., set_labels: _Optional[_Mapping[str, str]] = ..., remove_labels: _Optional[_Iterable[str]] = ..., cpu_millis: _Optional[int] = ..., memory_mib: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdateNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: NodeInfo
    def __init__(self, node: _Optional[_Union[NodeInfo, _Mapping]] = ...) -> None: ...

class ClusterSetting(_message.Message):
    __slots__ = ("key", "value", "source", "file_value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FILE_VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    source: str
    file_value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., source: _Optional[str] = ..., file_value: _Optional[str] = ...) -> None: ...

class GetClusterConfigRequest(_message.Message):
    __slots__ = ("consistent",)
    CONSISTENT_FIELD_NUMBER: _ClassVar[int]
    consistent: bool
    def __init__(self, consistent: _Optional[bool] = ...) -> None: ...

class GetClusterConfigResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: _containers.RepeatedCompositeFieldContainer[ClusterSetting]
    def __init__(self, settings: _Optional[_Iterable[_Union[ClusterSetting, _Mapping]]] = ...) -> None: ...

class SetClusterConfigRequest(_message.Message):
    __slots__ = ("key", "value", "reset", "request_id")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    reset: bool
    request_id: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., reset: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class SetClusterConfigResponse(_message.Message):
    __slots__ = ("setting",)
    SETTING_FIELD_NUMBER: _ClassVar[int]
    setting: ClusterSetting
    def __init__(self, setting: _Optional[_Union[ClusterSetting, _Mapping]] = ...) -> None: ...

class DrainNodeRequest(_message.Message):
    __slots__ = ("node_id", "deadline_seconds", "force", "request_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    deadline_seconds: float
    force: bool
    request_id: str
    def __init__(self, node_id: _Optional[str] = ..., deadline_seconds: _Optional[float] = ..., force: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class DrainNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: NodeInfo
    def __init__(self, node: _Optional[_Union[NodeInfo, _Mapping]] = ...) -> None: ...

class SetNodeEligibilityRequest(_message.Message):
    __slots__ = ("node_id", "eligible", "request_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    eligible: bool
    request_id: str
    def __init__(self, node_id: _Optional[str] = ..., eligible: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class SetNodeEligibilityResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: NodeInfo
    def __init__(self, node: _Optional[_Union[NodeInfo, _Mapping]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("consistent",)
    CONSISTENT_FIELD_NUMBER: _ClassVar[int]
    consistent: bool
    def __init__(self, consistent: _Optional[bool] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ...) -> None: ...

class ClusterStatusRequest(_message.Message):
    __slots__ = ("include_replicas", "consistent")
    INCLUDE_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    CONSISTENT_FIELD_NUMBER: _ClassVar[int]
    include_replicas: bool
    consistent: bool
    def __init__(self, include_replicas: _Optional[bool] = ..., consistent: _Optional[bool] = ...) -> None: ...

class ReplicaStatus(_message.Message):
    __slots__ = ("node_id", "reachable", "raft_state", "term", "commit_index", "applied_index", "state_digest", "error", "cpu_millis_used", "memory_mib_used", "isolation", "loop_lag_p99", "loop_lag_max", "tick_lag_p99", "tick_lag_max", "incarnation")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    RAFT_STATE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    STATE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CPU_MILLIS_USED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_USED_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_FIELD_NUMBER: _ClassVar[int]
    LOOP_LAG_P99_FIELD_NUMBER: _ClassVar[int]
    LOOP_LAG_MAX_FIELD_NUMBER: _ClassVar[int]
    TICK_LAG_P99_FIELD_NUMBER: _ClassVar[int]
    TICK_LAG_MAX_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    reachable: bool
    raft_state: str
    term: int
    commit_index: int
    applied_index: int
    state_digest: str
    error: str
    cpu_millis_used: int
    memory_mib_used: int
    isolation: str
    loop_lag_p99: float
    loop_lag_max: float
    tick_lag_p99: float
    tick_lag_max: float
    incarnation: str
    def __init__(self, node_id: _Optional[str] = ..., reachable: _Optional[bool] = ..., raft_state: _Optional[str] = ..., term: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., state_digest: _Optional[str] = ..., error: _Optional[str] = ..., cpu_millis_used: _Optional[int] = ..., memory_mib_used: _Optional[int] = ..., isolation: _Optional[str] = ..., loop_lag_p99: _Optional[float] = ..., loop_lag_max: _Optional[float] = ..., tick_lag_p99: _Optional[float] = ..., tick_lag_max: _Optional[float] = ..., incarnation: _Optional[str] = ...) -> None: ...

class ClusterStatusResponse(_message.Message):
    __slots__ = ("node_id", "leader_id", "leader_address", "term", "commit_index", "applied_index", "state_digest", "jobs_by_state", "replicas")
    class JobsByStateEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    STATE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    JOBS_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    leader_id: str
    leader_address: str
    term: int
    commit_index: int
    applied_index: int
    state_digest: str
    jobs_by_state: _containers.ScalarMap[str, int]
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaStatus]
    def __init__(self, node_id: _Optional[str] = ..., leader_id: _Optional[str] = ..., leader_address: _Optional[str] = ..., term: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., state_digest: _Optional[str] = ..., jobs_by_state: _Optional[_Mapping[str, int]] = ..., replicas: _Optional[_Iterable[_Union[ReplicaStatus, _Mapping]]] = ...) -> None: ...

class SaveSnapshotRequest(_message.Message):
    __slots__ = ("consistent",)
    CONSISTENT_FIELD_NUMBER: _ClassVar[int]
    consistent: bool
    def __init__(self, consistent: _Optional[bool] = ...) -> None: ...

class SnapshotInfo(_message.Message):
    __slots__ = ("applied_index", "term", "node_id", "cluster_name", "node_ids", "state_digest", "job_count", "created_at", "encoding", "state_version")
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    STATE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    JOB_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    STATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    applied_index: int
    term: int
    node_id: str
    cluster_name: str
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    state_digest: str
    job_count: int
    created_at: float
    encoding: str
    state_version: int
    def __init__(self, applied_index: _Optional[int] = ..., term: _Optional[int] = ..., node_id: _Optional[str] = ..., cluster_name: _Optional[str] = ..., node_ids: _Optional[_Iterable[str]] = ..., state_digest: _Optional[str] = ..., job_count: _Optional[int] = ..., created_at: _Optional[float] = ..., encoding: _Optional[str] = ..., state_version: _Optional[int] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("info", "data", "payload_sha256", "payload_bytes")
    INFO_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_SHA256_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    info: SnapshotInfo
    data: bytes
    payload_sha256: str
    payload_bytes: int
    def __init__(self, info: _Optional[_Union[SnapshotInfo, _Mapping]] = ..., data: _Optional[bytes] = ..., payload_sha256: _Optional[str] = ..., payload_bytes: _Optional[int] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("id", "raft_address", "grpc_address", "metrics_address", "capacity", "labels", "role", "match_index", "lag", "connected", "control_address")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    MATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    CONTROL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    raft_address: str
    grpc_address: str
    metrics_address: str
    capacity: _jobs_pb2.Resources
    labels: _containers.ScalarMap[str, str]
    role: str
    match_index: int
    lag: int
    connected: bool
    control_address: str
    def __init__(self, id: _Optional[str] = ..., raft_address: _Optional[str] = ..., grpc_address: _Optional[str] = ..., metrics_address: _Optional[str] = ..., capacity: _Optional[_Union[_jobs_pb2.Resources, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., role: _Optional[str] = ..., match_index: _Optional[int] = ..., lag: _Optional[int] = ..., connected: _Optional[bool] = ..., control_address: _Optional[str] = ...) -> None: ...

class ListMembersRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class ListMembersResponse(_message.Message):
    __slots__ = ("members", "leader_id", "commit_index", "version", "change_in_flight")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGE_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    leader_id: str
    commit_index: int
    version: int
    change_in_flight: int
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., leader_id: _Optional[str] = ..., commit_index: _Optional[int] = ..., version: _Optional[int] = ..., change_in_flight: _Optional[int] = ...) -> None: ...

class AddMemberRequest(_message.Message):
    __slots__ = ("member", "request_id")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    member: Member
    request_id: str
    def __init__(self, member: _Optional[_Union[Member, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class AddMemberResponse(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class RemoveMemberRequest(_message.Message):
    __slots__ = ("node_id", "request_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    request_id: str
    def __init__(self, node_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RemoveMemberResponse(_message.Message):
    __slots__ = ("members", "leader_id")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    leader_id: str
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., leader_id: _Optional[str] = ...) -> None: ...
