"""Commands of runtime changes (issue 15): a node's labels and capacity (`raftsched node
update`), and cluster-wide scheduling settings (`raftsched operator config set`).

Their handlers are in `core.nodeupdate` and `core.settings`. Tags 130-139.
"""

from __future__ import annotations

from dataclasses import dataclass

from raftsched.core.codec import command


@command(130)
@dataclass(frozen=True, slots=True)
class SetSetting:
    """Override one cluster setting (`value` "": back to cluster.toml's value)."""

    rid: str
    ts: float
    key: str
    value: str = ""
    by: str = ""
    fp: str = ""


@command(131)
@dataclass(frozen=True, slots=True)
class UpdateNode:
    """Set and remove labels of a node; set its capacity (0: leave it as it is)."""

    rid: str
    ts: float
    node_id: str
    set_labels: tuple[tuple[str, str], ...] = ()
    remove_labels: tuple[str, ...] = ()
    cpu_millis: int = 0
    memory_mib: int = 0
    by: str = ""
    fp: str = ""
