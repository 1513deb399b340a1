"""cluster.toml: the static description of a cluster and its nodes."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raftsched.core import constraints as cons
from raftsched.core import runas
from raftsched.core.model import Resources
from raftsched.core.placement import Strategy
from raftsched.core.runqueue import QueueOrder
from raftsched.node.pytasks.settings import PyConfigError, PyPoolConfig, parse_pool

DEMO_SECRET = "raftsched-local-demo-secret"
FSYNC_MODES = ("always", "batch", "never")
# An acknowledged job survives power loss on a majority (README: Durability).
DEFAULT_FSYNC = "always"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class NodeConfig:
    id: str
    raft: str
    grpc: str
    capacity: Resources
    labels: dict[str, str] = field(default_factory=dict)
    metrics: str = ""  # host:port of this node's Prometheus endpoint ("" = none)
    # host:port of the node's control port: node heartbeats only, served and sent on
    # threads of their own so a busy event loop cannot cost a lease ("" = grpc port + 100)
    control: str = ""
    dedicated: str = ""  # the pool this node is dedicated to ("" = shared: takes any job)
    allowed_run_as: tuple[str, ...] = ()  # users jobs may run as on this node (none by default)
    python: PyPoolConfig = field(default_factory=PyPoolConfig)  # Python task pool (issue 14)

    def __post_init__(self) -> None:
        if not self.control and ":" in self.grpc:  # however made: every node has a control port
            object.__setattr__(self, "control", default_control(self.grpc))


@dataclass(frozen=True)
class IsolationConfig:
    """[isolation]: how nodes contain their jobs (docs/isolation.md)."""

    mode: str = "auto"  # auto, cgroup-v2, cgroup-v1, fallback
    pids_limit: int = 1024  # per job, unless the job sets limits.pids
    output_cap_bytes: int = 16 << 20  # per stream (stdout, stderr) of each attempt
    output_retention_bytes: int = 1 << 30  # output files kept per node, all attempts


ISOLATION_MODES = ("auto", "cgroup-v2", "cgroup-v1", "fallback")


def _isolation(raw: dict, p: Path) -> IsolationConfig:
    mode = str(raw.get("mode", "auto"))
    if mode not in ISOLATION_MODES:
        raise ConfigError(f"{p}: isolation.mode must be one of {', '.join(ISOLATION_MODES)}, got {mode!r}")
    pids = int(raw.get("pids_limit", 1024))
    cap = float(raw.get("output_cap_mib", 16))
    keep = float(raw.get("output_retention_mib", 1024))
    if pids < 0 or cap < 0 or keep < 0:
        raise ConfigError(f"{p}: isolation pids_limit, output_cap_mib and output_retention_mib "
                          "must be >= 0 (0 = unlimited)")
    return IsolationConfig(mode, pids, int(cap * (1 << 20)), int(keep * (1 << 20)))


@dataclass(frozen=True)
class ClusterConfig:
    path: Path
    name: str
    secret: str
    data_dir: Path
    strategy: Strategy  # node choice: spread, binpack, round-robin
    heartbeat_interval: float
    heartbeat_ttl: float
    lease: float
    election_timeout_min: float
    election_timeout_max: float
    append_entries_batch: bool
    fsync: str
    log_compaction_entries: int
    kill_grace: float
    job_retention: float
    log_format: str
    log_level: str
    nodes: tuple[NodeConfig, ...]
    metrics_enabled: bool = True  # [metrics] enabled: serve each node's `metrics` address
    queue_order: QueueOrder = QueueOrder.PRIORITY  # job order: priority (with aging) or fifo
    aging_rate: float = 1.0 / 60  # priority points gained per second of waiting
    idempotency_retention: float = 24 * 3600.0  # seconds an idempotency key is remembered
    isolation: IsolationConfig = IsolationConfig()
    tls: bool = True  # every gRPC listener speaks mutual TLS (certificates under data_dir/tls)
    acl: bool = True  # client calls need a token (see docs/security.md)
    insecure_i_know: bool = False  # allow a non-loopback node without TLS/ACL/strong secret
    pre_vote: bool = True  # Raft pre-vote + leader stickiness (replica/prevote.py)
    check_quorum: bool = True  # a leader without a majority for a timeout steps down (replica/checkquorum.py)
    # nice value of the Raft tick, heartbeat and control-port threads (node/priority.py)
    critical_nice: int = -5
    seed_nodes: tuple[NodeConfig, ...] = ()  # the file's [[nodes]] once node/members.py replaced them

    def is_local(self) -> bool:
        """Every node listens on loopback: a cluster on this machine only."""
        return self.all_loopback()

    def node(self, node_id: str) -> NodeConfig:
        for n in self.nodes:
            if n.id == node_id:
                return n
        known = ", ".join(n.id for n in self.nodes)
        raise ConfigError(f"node id {node_id!r} is not in {self.path} (known: {known})")

    def node_by_raft(self, raft_addr: str) -> NodeConfig | None:
        for n in self.nodes:
            if n.raft == raft_addr:
                return n
        return None

    def node_data_dir(self, node_id: str) -> Path:
        return self.data_dir / node_id

    def static_nodes(self) -> list[tuple[str, dict[str, str], Resources, str]]:
        """(id, labels, capacity, dedicated pool) of every node: for submit validation."""
        return [(n.id, n.labels, n.capacity, n.dedicated) for n in self.nodes]

    def all_loopback(self) -> bool:
        return all(is_loopback(a) for n in self.nodes for a in (n.raft, n.grpc, n.control))

    def max_capacity(self) -> Resources:
        return Resources(
            max(n.capacity.cpu_millis for n in self.nodes),
            max(n.capacity.memory_mib for n in self.nodes),
        )


def _addr(value: object, where: str) -> str:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{where}: expected 'host:port', got {value!r}")
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: expected 'host:port', got {value!r}")
    return value


def default_control(grpc: str) -> str:
    """A node's control address when none is set: its gRPC port + 100, same host."""
    host, _, port = grpc.rpartition(":")
    return f"{host}:{int(port) + 100}"


def _control(n: dict[str, Any], where: str) -> str:
    addr = n.get("control") or default_control(_addr(n.get("grpc"), f"{where}.grpc"))
    return _addr(addr, f"{where}.control (default: grpc port + 100)")


def _positive(value: object, where: str) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected a number of seconds, got {value!r}") from None
    if v <= 0:
        raise ConfigError(f"{where}: must be > 0, got {v:g}")
    return v


def machine_resources() -> tuple[int, int]:
    """(millicores, MiB) this process may use: CPUs in its affinity mask, and
    physical memory or its memory cgroup's limit, whichever is lower."""
    cpu = len(os.sched_getaffinity(0)) * 1000
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            mem = min(mem, int(Path(f).read_text().split()[0]))
    return cpu, mem >> 20


def _capacity(n: dict, where: str) -> tuple[int, int]:
    """cpu_millis / memory_mib of a node: a number, or "auto" (this machine minus
    reserve_cpu_millis, default 500, and reserve_memory_mib, default 512)."""
    out = []
    for key, reserve_key, reserve, i in (("cpu_millis", "reserve_cpu_millis", 500, 0),
                                         ("memory_mib", "reserve_memory_mib", 512, 1)):
        v = n.get(key, 0)
        if v == "auto":
            v = machine_resources()[i] - int(n.get(reserve_key, reserve))
        try:
            out.append(int(v))
        except (TypeError, ValueError):
            raise ConfigError(f"{where}.{key}: expected a number or \"auto\", got {v!r}") from None
    return out[0], out[1]


def _pool(n: dict, labels: dict[str, str], where: str) -> str:
    """A node's `pool` (sets its pool label) and `dedicated` flag; returns the pool it is
    dedicated to, or "". Without either the node is in the one shared pool."""
    pool = n.get("pool")
    if pool is not None:
        if not isinstance(pool, str) or cons.validate_pool(pool) or not pool:
            raise ConfigError(f"{where}.pool: {cons.validate_pool(str(pool)) or 'must be a name'}")
        if labels.setdefault(cons.POOL_LABEL, pool) != pool:
            raise ConfigError(f"{where}: pool = {pool!r} but labels.pool = "
                              f"{labels[cons.POOL_LABEL]!r}; give one")
    dedicated = n.get("dedicated", False)
    if not isinstance(dedicated, bool):
        raise ConfigError(f"{where}.dedicated: expected true or false, got {dedicated!r}")
    if not dedicated:
        return ""
    if not labels.get(cons.POOL_LABEL):
        raise ConfigError(f"{where}: dedicated = true needs a pool (pool = \"name\")")
    return labels[cons.POOL_LABEL]


def _run_as(n: dict, where: str) -> tuple[str, ...]:
    users = n.get("allowed_run_as", [])
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise ConfigError(f"{where}.allowed_run_as: expected a list of user names")
    err = runas.users_error(users, f"{where}.allowed_run_as")
    if err:
        raise ConfigError(err)
    return tuple(sorted(set(users)))


def host_of(addr: str) -> str:
    return addr.rpartition(":")[0].strip("[]")


def is_loopback(addr: str) -> bool:
    """True if every address the host of `addr` resolves to is a loopback address
    (a name like `127.evil.example` is resolved, not matched as text)."""
    host = host_of(addr)
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    ips = {info[4][0] for info in infos}
    return bool(ips) and all(ipaddress.ip_address(ip.split("%")[0]).is_loopback for ip in ips)


def load(path: str | os.PathLike[str]) -> ClusterConfig:
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: {e}") from None
    return parse(raw, p)


def parse(raw: dict, p: Path) -> ClusterConfig:
    c = raw.get("cluster", {})
    secret = os.environ.get("RAFTSCHED_SECRET") or c.get("secret", "")
    if not secret:
        raise ConfigError(
            f"{p}: [cluster] secret is empty; set it (or RAFTSCHED_SECRET): without it anyone "
            "reaching the Raft port could run code on the node"
        )
    nodes_raw = raw.get("nodes", [])
    if not nodes_raw:
        raise ConfigError(f"{p}: no [[nodes]] defined")
    nodes = []
    seen: set[str] = set()
    for i, n in enumerate(nodes_raw):
        where = f"{p}: nodes[{i}]"
        nid = n.get("id")
        if not isinstance(nid, str) or not nid or not nid.replace("-", "").isalnum():
            raise ConfigError(f"{where}: id must be a non-empty alphanumeric string")
        if nid in seen:
            raise ConfigError(f"{where}: duplicate node id {nid!r}")
        seen.add(nid)
        cpu, mem = _capacity(n, where)
        if cpu <= 0 or mem <= 0:
            raise ConfigError(f"{where}: cpu_millis and memory_mib must be positive (after the reserve)")
        labels = {str(k): str(v) for k, v in n.get("labels", {}).items()}
        if len(labels) > 256 or any(len(k) > 256 or len(v) > 256 for k, v in labels.items()):
            raise ConfigError(f"{where}.labels: at most 256, each key and value at most 256 "
                              "characters (heartbeats are bounded)")
        dedicated = _pool(n, labels, where)
        nodes.append(
            NodeConfig(
                id=nid,
                raft=_addr(n.get("raft"), f"{where}.raft"),
                grpc=_addr(n.get("grpc"), f"{where}.grpc"),
                capacity=Resources(cpu, mem),
                labels=labels,
                metrics=_addr(n["metrics"], f"{where}.metrics") if n.get("metrics") else "",
                control=_control(n, where),
                dedicated=dedicated,
                allowed_run_as=_run_as(n, where),
                python=_python_pool(n, where, p.parent),
            )
        )
    insecure = _flag(c, "insecure_i_know", False, p)
    if secret == DEMO_SECRET and not insecure:
        for n in nodes:
            if not (is_loopback(n.raft) and is_loopback(n.grpc)):
                raise ConfigError(
                    f"{p}: the demo secret may only be used on loopback addresses; "
                    f"node {n.id} listens on {n.raft}/{n.grpc}. Set a real secret."
                )
    data_dir = Path(c.get("data_dir", "data"))
    if not data_dir.is_absolute():
        data_dir = (p.parent / data_dir).resolve()
    fsync = c.get("fsync", DEFAULT_FSYNC)
    if fsync not in FSYNC_MODES:
        raise ConfigError(f"{p}: fsync must be one of {', '.join(FSYNC_MODES)}, got {fsync!r}")
    try:
        strategy = Strategy(c.get("strategy", "spread"))
    except ValueError:
        choices = ", ".join(s.value for s in Strategy)
        raise ConfigError(f"{p}: strategy must be one of {choices}") from None
    try:
        queue_order = QueueOrder(c.get("queue_order", "priority"))
    except ValueError:
        choices = ", ".join(q.value for q in QueueOrder)
        raise ConfigError(f"{p}: queue_order must be one of {choices}") from None
    aging_rate = float(c.get("aging_rate", 1.0 / 60))
    if not 0 <= aging_rate <= 1e6:
        raise ConfigError(f"{p}: aging_rate must be >= 0 (priority points per second waited)")
    retention = float(c.get("idempotency_retention", 24 * 3600.0))
    if not retention > 0:
        raise ConfigError(f"{p}: idempotency_retention must be > 0 seconds")
    hb = float(c.get("heartbeat_interval", 0.2))
    ttl = float(c.get("heartbeat_ttl", 1.5))
    if not 0 < hb < ttl:
        raise ConfigError(f"{p}: need 0 < heartbeat_interval < heartbeat_ttl")
    lease = float(c.get("lease", max(hb * 2, ttl - max(0.5, ttl / 3))))
    if not hb < lease <= ttl - 0.2:
        raise ConfigError(
            f"{p}: need heartbeat_interval < lease <= heartbeat_ttl - 0.2 s: a node must kill its jobs "
            f"(lease {lease:g}s) before the leader may reassign them (ttl {ttl:g}s)"
        )
    emin = float(c.get("election_timeout_min", 0.3))
    emax = float(c.get("election_timeout_max", 0.6))
    if not 0 < emin < emax:
        raise ConfigError(f"{p}: need 0 < election_timeout_min < election_timeout_max")
    return ClusterConfig(
        path=p,
        name=str(c.get("name", "raftsched")),
        secret=secret,
        data_dir=data_dir,
        strategy=strategy,
        heartbeat_interval=hb,
        heartbeat_ttl=ttl,
        lease=lease,
        election_timeout_min=emin,
        election_timeout_max=emax,
        append_entries_batch=bool(c.get("append_entries_batch", False)),
        fsync=fsync,
        log_compaction_entries=int(c.get("log_compaction_entries", 20000)),
        kill_grace=float(c.get("kill_grace", 3.0)),
        job_retention=_positive(c.get("job_retention", 3600.0), f"{p}: job_retention"),
        log_format=str(c.get("log_format", "console")),
        log_level=str(c.get("log_level", "info")),
        nodes=tuple(nodes),
        metrics_enabled=bool(raw.get("metrics", {}).get("enabled", True)),
        queue_order=queue_order,
        aging_rate=aging_rate,
        idempotency_retention=retention,
        isolation=_isolation(raw.get("isolation", {}), p),
        tls=_flag(c, "tls", True, p),
        acl=_flag(c, "acl", True, p),
        insecure_i_know=insecure,
        pre_vote=_flag(c, "pre_vote", True, p),
        check_quorum=_flag(c, "check_quorum", True, p),
        critical_nice=_int_in(c, "critical_nice", -5, -20, 0, p),
    )


def _python_pool(n: dict, where: str, base: Path) -> PyPoolConfig:
    try:
        return parse_pool(n, where, base)
    except PyConfigError as e:
        raise ConfigError(str(e)) from None


def _int_in(c: dict, key: str, default: int, lo: int, hi: int, p: Path) -> int:
    v = c.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ConfigError(f"{p}: [cluster] {key} must be an integer from {lo} to {hi}, got {v!r}")
    return v

def _flag(c: dict, key: str, default: bool, p: Path) -> bool:
    v = c.get(key, default)
    if not isinstance(v, bool):
        raise ConfigError(f"{p}: [cluster] {key} must be true or false, got {v!r}")
    return v
