"""The member list a node runs with (node/members.py): the replicated list replaces the
config's nodes (keeping node-local settings of seed nodes), survives a restart through
members.json, and a restarted node reads it before anything else."""

from __future__ import annotations

import threading
from pathlib import Path

from raftsched import config as configmod
from raftsched.cli.common import UsageError
from raftsched.cli.members import _labels
from raftsched.core.apply import apply
from raftsched.core.members import AddMember, Member, RemoveMember
from raftsched.core.state import ClusterState
from raftsched.dev.launcher import write_config
from raftsched.node.members import LiveMembers, load_persisted, seed_members, seed_of


class Replica:
    def __init__(self) -> None:
        self.state = ClusterState()
        self.lock = threading.RLock()


def test_the_replicated_list_replaces_the_config_and_survives_a_restart(tmp_path: Path) -> None:
    path = write_config(tmp_path, 3, node_extra=['allowed_run_as = ["nobody"]'] * 3)
    cfg = configmod.load(path)
    rep = Replica()
    live = LiveMembers(cfg, "n1", rep)
    assert live.current() == (list(seed_members(cfg)), False)
    live.refresh()  # nothing seeded yet: the config stays
    assert [n.id for n in cfg.nodes] == ["n1", "n2", "n3"]
    n4 = Member("n4", "127.0.0.1:1", "127.0.0.1:2", "", 500, 256, (("zone", "b"),))
    apply(rep.state, AddMember("r1", 1.0, n4, seed_members(cfg)))
    apply(rep.state, RemoveMember("r2", 2.0, "n2"))
    live.refresh()
    assert [n.id for n in cfg.nodes] == ["n1", "n3", "n4"]
    assert cfg.node("n1").allowed_run_as == ("nobody",)  # node-local settings of the file
    four = cfg.node("n4")
    assert (four.raft, four.capacity.cpu_millis, four.labels) == ("127.0.0.1:1", 500, {"zone": "b"})
    assert four.allowed_run_as == ()
    assert [n.id for n in seed_of(cfg)] == ["n1", "n2", "n3"]
    assert {n.id for n in cfg.nodes} == {"n1", "n3", "n4"}
    # a restart reads members.json before Raft starts
    again = configmod.load(path)
    assert load_persisted(again, "n1")
    assert {n.id for n in again.nodes} == {"n1", "n3", "n4"} and again.node("n4").grpc == "127.0.0.1:2"
    assert not load_persisted(configmod.load(path), "n2")  # n2 never saved one


def test_cli_labels() -> None:
    assert _labels(["zone=b", "gpu=", "a=b=c"]) == {"zone": "b", "gpu": "", "a": "b=c"}
    for bad in (["zone"], ["=x"]):
        try:
            _labels(bad)
        except UsageError as e:
            assert "--label" in str(e)
        else:
            raise AssertionError(bad)
