"""The member list this node runs with (issue 15).

cluster.toml seeds it; once the replicated state holds a member list
(core/members.py), that list is the truth: every applied change replaces
`cfg.nodes` (the one field of the config that changes at run time, read by
identity checks, heartbeats, forwarding and status) and is written to
`<node data dir>/members.json`, which a restart reads before Raft starts so that
the node knows its peers even before it has loaded its snapshot and journal.

A node started with `--join HOST:GRPC` and an empty data dir asks a member for the
list (NodeAgent.GetMembers, with its node certificate) and starts from it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import grpc
import structlog

from raftsched.config import ClusterConfig, ConfigError, NodeConfig
from raftsched.core.members import Member, members_of
from raftsched.core.model import Resources
from raftsched.ports import ReplicaView

log = structlog.get_logger("raftsched.node.members")
MEMBERS_FILE = "members.json"


def member_of(n: NodeConfig) -> Member:
    return Member(n.id, n.raft, n.grpc, n.metrics, n.capacity.cpu_millis, n.capacity.memory_mib,
                  tuple(sorted(n.labels.items())), n.control)


def node_config(m: Member, seed: dict[str, NodeConfig]) -> NodeConfig:
    """A member as a NodeConfig; node-local settings (allowed run-as users, Python pool,
    dedicated pool) come from cluster.toml when the member is one of its nodes."""
    base = seed.get(m.id)
    labels = dict(m.labels)
    cap = Resources(m.cpu_millis, m.memory_mib)
    if base is None:
        return NodeConfig(m.id, m.raft, m.grpc, cap, labels, metrics=m.metrics, control=m.control)
    return NodeConfig(m.id, m.raft, m.grpc, cap, labels, metrics=m.metrics, control=m.control,
                      dedicated=base.dedicated, allowed_run_as=base.allowed_run_as, python=base.python)


def seed_of(cfg: ClusterConfig) -> tuple[NodeConfig, ...]:
    """The file's [[nodes]]: the member list before the first membership change."""
    return cfg.seed_nodes or cfg.nodes


def seed_members(cfg: ClusterConfig) -> tuple[Member, ...]:
    return tuple(member_of(n) for n in seed_of(cfg))


def apply_list(cfg: ClusterConfig, members: list[Member]) -> None:
    """`cfg.nodes` becomes the member list: the one field of the (frozen) config that
    changes at run time; the file's list stays in `seed_nodes`."""
    seed = seed_of(cfg)
    by_id = {n.id: n for n in seed}
    object.__setattr__(cfg, "seed_nodes", seed)
    object.__setattr__(cfg, "nodes", tuple(node_config(m, by_id) for m in sorted(members, key=lambda m: m.id)))


def _path(cfg: ClusterConfig, node_id: str) -> Path:
    return cfg.node_data_dir(node_id) / MEMBERS_FILE


def persist(cfg: ClusterConfig, node_id: str, members: list[Member], version: int) -> None:
    from raftsched.core import codec

    d = cfg.node_data_dir(node_id)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / (MEMBERS_FILE + ".tmp")
    data = {"version": version, "members": [codec.to_wire(m) for m in members]}
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, d / MEMBERS_FILE)


def load_persisted(cfg: ClusterConfig, node_id: str) -> bool:
    """Use the member list this node saved last (True), or keep the config's."""
    from raftsched.core import codec

    try:
        data = json.loads(_path(cfg, node_id).read_text())
    except FileNotFoundError:
        return False
    members = [codec.from_wire(Member, w) for w in data["members"]]
    apply_list(cfg, members)
    return True


def has_raft_data(cfg: ClusterConfig, node_id: str) -> bool:
    d = cfg.node_data_dir(node_id)
    return (d / "raft.journal").exists() or (d / "raft.snapshot").exists()


class LiveMembers:
    """Follows the replicated member list (called on the tick thread after each applied
    entry and after a snapshot is loaded): cheap unless the list changed."""

    def __init__(self, cfg: ClusterConfig, node_id: str, replica: ReplicaView) -> None:
        self.cfg = cfg
        self.node_id = node_id
        self.replica = replica
        self.version = -1
        self.member = False  # this node was in the list last seen

    def refresh(self, *_: Any) -> None:
        ms = members_of(self.replica.state)
        if not ms.members or ms.version == self.version:
            return
        self.version = ms.version
        members = list(ms.members.values())
        apply_list(self.cfg, members)
        try:
            persist(self.cfg, self.node_id, members, ms.version)
        except OSError as e:
            log.error("cannot save the member list", error=str(e))
        log.info("member list changed", version=ms.version, members=sorted(ms.members))
        was, self.member = self.member, self.node_id in ms.members
        if was and not self.member:
            log.warning("this node was removed from the cluster: stop it (its data dir can go)")

    def current(self) -> tuple[list[Member], bool]:
        """(members, seeded): the replicated list, or the config's seed before any change."""
        ms = members_of(self.replica.state)
        if ms.members:
            return sorted(ms.members.values(), key=lambda m: m.id), True
        return list(seed_members(self.cfg)), False


async def fetch_for_join(cfg: ClusterConfig, node_id: str, addr: str, timeout: float = 120.0) -> None:
    """`--join`: ask `addr` for the member list until it names this node (the operator
    adds it with `raftsched operator members add`), then run with it."""
    from raftsched.client.credentials import open_aio_channel
    from raftsched.rpc.convert_members import member_from_pb
    from raftsched.rpc.identity import node_client_tls
    from raftsched.v1 import node_pb2, node_pb2_grpc

    deadline = time.monotonic() + timeout
    last = said = ""
    async with open_aio_channel(addr, node_client_tls(cfg, node_id)) as ch:
        stub = node_pb2_grpc.NodeAgentStub(ch)
        while time.monotonic() < deadline:
            try:
                resp = await stub.GetMembers(node_pb2.GetMembersRequest(node_id=node_id), timeout=5)
                members = [member_from_pb(m) for m in resp.members]
                if any(m.id == node_id for m in members):
                    apply_list(cfg, members)
                    persist(cfg, node_id, members, resp.version)
                    log.info("joined: member list received", via=addr,
                             members=[m.id for m in members])
                    return
                last = f"{addr} does not list {node_id} yet"
            except grpc.aio.AioRpcError as e:
                last = f"{addr}: {e.code().name}: {e.details()}"
            if last != said:
                said = last
                log.info("waiting to join", reason=last,
                         hint=f"raftsched operator members add {node_id} --raft ... --grpc ...")
            await asyncio.sleep(1.0)
    raise ConfigError(f"cannot join through {addr}: {last}")
