"""Cluster membership in the replicated state (issue 15). Command tags 120-129.

The member list (id, Raft address, gRPC address, metrics address, capacity, labels)
lives in the replicated state; cluster.toml only seeds it. Until the first change the
state holds no list and every node uses its config's [[nodes]]; the first change
carries that seed (`seed`), so every replica starts from the same list.

An `AddMember` / `RemoveMember` travels inside pysyncobj's own membership log entry
(replica/membership.py): the Raft configuration changes when the entry is appended
(Raft thesis 4.1, one server at a time) and this state when it is applied, from the
same entry, so the two never disagree once the entry is committed. The handlers are
therefore total (an add of an existing id replaces it, a remove of an unknown id does
nothing): the leader validated the change against this state before proposing it, and
one change at a time means nothing could have changed the list in between.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from raftsched.core import codec
from raftsched.core.codec import command
from raftsched.core.evolve import replace
from raftsched.core.state import ClusterState, Handler, Result, ok, state_extension

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
MAX_LABELS = 256
MAX_LABEL_LEN = 256
MAX_CPU_MILLIS = 1 << 30
MAX_MEMORY_MIB = 1 << 40


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    raft: str
    grpc: str
    metrics: str = ""
    cpu_millis: int = 0
    memory_mib: int = 0
    labels: tuple[tuple[str, str], ...] = ()
    control: str = ""  # heartbeat (control) port; "" = the gRPC port + 100 (config.default_control)


@dataclass
class MembersState:
    members: dict[str, Member] = field(default_factory=dict)  # empty: not seeded (config's list)
    version: int = 0  # changes applied so far


def _dump(m: MembersState) -> Any:
    return {"version": m.version, "members": [codec.to_wire(m.members[k]) for k in sorted(m.members)]}


def _load(w: Any) -> MembersState:
    ms = [codec.from_wire(Member, x) for x in w.get("members", [])]
    return MembersState({m.id: m for m in ms}, int(w.get("version", 0)))


state_extension("members", MembersState, _dump, _load)


def members_of(state: ClusterState) -> MembersState:
    return state.ext["members"]  # type: ignore[no-any-return]


@command(120)
@dataclass(frozen=True, slots=True)
class AddMember:
    """Add (or replace) a member; `seed` is the config's list when the state has none yet."""

    rid: str
    ts: float
    member: Member
    seed: tuple[Member, ...] = ()
    by: str = ""
    fp: str = ""


@command(121)
@dataclass(frozen=True, slots=True)
class RemoveMember:
    rid: str
    ts: float
    node_id: str
    seed: tuple[Member, ...] = ()
    by: str = ""
    fp: str = ""


def _seeded(ms: MembersState, seed: tuple[Member, ...]) -> None:
    if not ms.members:
        ms.members = {m.id: m for m in seed}


def _apply_add(state: ClusterState, cmd: AddMember) -> Result:
    """In the list; an id used before (removed, then added again) starts eligible."""
    ms = members_of(state)
    _seeded(ms, cmd.seed)
    ms.members = {**ms.members, cmd.member.id: cmd.member}
    ms.version += 1
    node = state.nodes.get(cmd.member.id)
    if node is not None and not node.eligible:
        state.nodes[node.id] = replace(node, eligible=True, drain_deadline=0.0)
    return ok(ms.version)


def _apply_remove(state: ClusterState, cmd: RemoveMember) -> Result:
    """Gone from the list; its registration (if any) takes no new placements from here on,
    and the leader declares it down once its heartbeats stop (they are refused now), which
    requeues whatever it still ran (fenced, like any node failure)."""
    ms = members_of(state)
    _seeded(ms, cmd.seed)
    ms.members = {k: v for k, v in ms.members.items() if k != cmd.node_id}
    ms.version += 1
    node = state.nodes.get(cmd.node_id)
    if node is not None and node.eligible:
        state.nodes[cmd.node_id] = replace(node, eligible=False)
    return ok(ms.version)


HANDLERS: dict[type, Handler] = {AddMember: _apply_add, RemoveMember: _apply_remove}


# ---- validation (pure; the leader runs it before proposing) ----------------------------

def address_error(value: str, field_name: str, required: bool = True) -> str:
    """Why `value` is not a usable host:port ("" if it is)."""
    if not value:
        return f"{field_name} is required: host:port" if required else ""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or len(value) > 255 \
            or any(c.isspace() for c in value):
        return f"{field_name} {value[:80]!r}: expected host:port (port 1-65535)"
    return ""


def add_error(current: list[Member], m: Member) -> tuple[str, str]:
    """(field, message) why `m` cannot join a cluster of `current`; ("", "") if it can.
    The field tells INVALID_ARGUMENT (malformed, duplicate) from nothing."""
    if not ID_RE.match(m.id):
        return "id", (f"id {m.id[:64]!r}: 1-63 letters, digits or '-', starting with a letter "
                      "or digit")
    for name, value, required in (("raft_address", m.raft, True), ("grpc_address", m.grpc, True),
                                  ("metrics_address", m.metrics, False),
                                  ("control_address", m.control, False)):
        err = address_error(value, name, required)
        if err:
            return name, err
    if not 0 <= m.cpu_millis <= MAX_CPU_MILLIS:
        return "cpu_millis", f"cpu_millis {m.cpu_millis}: must be 0-{MAX_CPU_MILLIS}"
    if not 0 <= m.memory_mib <= MAX_MEMORY_MIB:
        return "memory_mib", f"memory_mib {m.memory_mib}: must be 0-{MAX_MEMORY_MIB}"
    if len(m.labels) > MAX_LABELS or any(not k or len(k) > MAX_LABEL_LEN or len(v) > MAX_LABEL_LEN
                                         for k, v in m.labels):
        return "labels", (f"labels: at most {MAX_LABELS}, keys non-empty, keys and values at most "
                          f"{MAX_LABEL_LEN} characters")
    for o in current:
        if o.id == m.id:
            return "id", f"id {m.id!r}: already a member (remove it first to replace it)"
        for name, mine, theirs in (("raft_address", m.raft, o.raft), ("grpc_address", m.grpc, o.grpc)):
            if mine == theirs:
                return name, f"{name} {mine!r}: already used by member {o.id!r}"
        for name, mine, theirs in (("metrics_address", m.metrics, o.metrics),
                                   ("control_address", m.control, o.control)):
            if mine and mine == theirs:
                return name, f"{name} {mine!r}: already used by member {o.id!r}"
    return "", ""


def remove_error(current: list[Member], node_id: str) -> tuple[str, str]:
    """("not_found" | "node_id" | "", message) why `node_id` cannot be removed."""
    if not node_id:
        return "node_id", "node_id is required: the id of the member to remove"
    if node_id not in {m.id for m in current}:
        known = ", ".join(sorted(m.id for m in current))
        return "not_found", f"node_id {node_id[:64]!r}: no such member (members: {known})"
    if len(current) <= 1:
        return "node_id", f"node_id {node_id!r}: the last member cannot be removed"
    return "", ""


def with_labels(m: Member, labels: dict[str, str]) -> Member:
    return replace(m, labels=tuple(sorted(labels.items())))
