"""Runtime changes of a node's labels and capacity (issue 15): `raftsched node update`.
Pure and deterministic.

The operator's changes are kept in the node's record (`Node.label_overrides`,
`labels_removed`, `cpu_override`, `memory_override`) and applied on top of what the node
registers with (`with_overrides`: on every NodeUp, and when the leader compares a
heartbeat with the state), so they survive the node's restart and a snapshot. Placement
reads `Node.labels` and `Node.capacity`, which already hold the result, from the next
decision on. A capacity lowered below what runs there stops nothing: running attempts
finish, and nothing new is placed until they leave room (the Assign check `fits`).
The command, `UpdateNode`, is in `core.runtimeops`.
"""

from __future__ import annotations

from collections.abc import Iterable

from raftsched.core.constraints import POOL_LABEL
from raftsched.core.evolve import replace
from raftsched.core.model import Node, Resources
from raftsched.core.runtimeops import UpdateNode
from raftsched.core.state import ClusterState, Code, Handler, Result, ok

MAX_LABELS = 256
MAX_LABEL_TEXT = 256
MAX_CAPACITY = 1_000_000_000  # millicores or MiB


def _label_error(set_labels: Iterable[tuple[str, str]], remove: Iterable[str]) -> str | None:
    remove = list(remove)
    for k, v in set_labels:
        if not k or len(k) > MAX_LABEL_TEXT or any(c in k for c in "=,\0"):
            return (f"set_labels key {k[:64]!r}: 1-{MAX_LABEL_TEXT} characters, without "
                    "'=', ',' or NUL")
        if len(v) > MAX_LABEL_TEXT or "\0" in v:
            return f"set_labels[{k[:64]!r}] value: at most {MAX_LABEL_TEXT} characters, no NUL"
        if k in remove:
            return f"label {k[:64]!r} is both set and removed: give one"
    for k in remove:
        if not k or len(k) > MAX_LABEL_TEXT:
            return f"remove_labels {k[:64]!r}: a label key of 1-{MAX_LABEL_TEXT} characters"
    return None


def update_error(node: Node, set_labels: tuple[tuple[str, str], ...], remove: tuple[str, ...],
                 cpu_millis: int, memory_mib: int) -> str | None:
    """Why this change of `node` is refused, naming the field; None if it is fine."""
    if not set_labels and not remove and not cpu_millis and not memory_mib:
        return ("nothing to change: give labels to set or remove, cpu_millis or memory_mib "
                "(`raftsched node update ID --label k=v --remove-label k --cpu-millis N`)")
    err = _label_error(set_labels, remove)
    if err:
        return err
    for name, v in (("cpu_millis", cpu_millis), ("memory_mib", memory_mib)):
        if not 0 <= v <= MAX_CAPACITY:
            return f"{name} {v}: must be > 0 and at most {MAX_CAPACITY} (0 leaves it unchanged)"
    if node.dedicated and (POOL_LABEL in remove or any(k == POOL_LABEL for k, _ in set_labels)):
        return (f"label {POOL_LABEL!r} of node {node.id}: the node is dedicated to pool "
                f"{node.dedicated!r} in cluster.toml; change it there and restart the node")
    labels = dict(node.labels)
    for k in remove:
        labels.pop(k, None)
    labels.update(set_labels)
    if len(labels) > MAX_LABELS:
        return f"set_labels: the node would have {len(labels)} labels; at most {MAX_LABELS}"
    return None


def with_overrides(registered: Node, known: Node) -> Node:
    """`registered` (what a node says of itself, or the state's record) with the operator's
    changes kept in `known` applied on top."""
    if not (known.label_overrides or known.labels_removed or known.cpu_override
            or known.memory_override):
        return registered
    labels = dict(registered.labels)
    for k in known.labels_removed:
        labels.pop(k, None)
    labels.update(known.label_overrides)
    capacity = Resources(known.cpu_override or registered.capacity.cpu_millis,
                         known.memory_override or registered.capacity.memory_mib)
    return replace(registered, labels=tuple(sorted(labels.items())), capacity=capacity,
                   label_overrides=known.label_overrides, labels_removed=known.labels_removed,
                   cpu_override=known.cpu_override, memory_override=known.memory_override)


def _apply_update(state: ClusterState, cmd: UpdateNode) -> Result:
    """Value: the node's id."""
    node = state.nodes.get(cmd.node_id)
    if node is None:
        return Result(Code.NOT_FOUND, None, f"node {cmd.node_id} is not registered")
    err = update_error(node, cmd.set_labels, cmd.remove_labels, cmd.cpu_millis, cmd.memory_mib)
    if err:
        return Result(Code.INVALID, None, err)
    ov = dict(node.label_overrides)
    removed = set(node.labels_removed)
    for k in cmd.remove_labels:
        ov.pop(k, None)
        removed.add(k)
    for k, v in cmd.set_labels:
        ov[k] = v
        removed.discard(k)
    changes = replace(node, label_overrides=tuple(sorted(ov.items())),
                      labels_removed=tuple(sorted(removed)),
                      cpu_override=cmd.cpu_millis or node.cpu_override,
                      memory_override=cmd.memory_mib or node.memory_override)
    new = with_overrides(node, changes)
    state.nodes[node.id] = new
    return ok(new.id)


HANDLERS: dict[type, Handler] = {UpdateNode: _apply_update}
