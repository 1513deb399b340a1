"""CLI for runtime changes and rolling restarts (issue 15):
`raftsched node update ID [--label k=v ...] [--remove-label k] [--cpu-millis N] [--memory-mib N]`,
`raftsched node wait-ready ID [--timeout S]` and
`raftsched operator config get | set KEY VALUE | reset KEY` (docs/operations.md)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import grpc

from raftsched.cli.common import EXIT_CODES_HELP, EXIT_OK, EXIT_UNAVAILABLE, UsageError
from raftsched.cli.format import dump_json, message_dict, table
from raftsched.client.client import Client
from raftsched.v1 import cluster_pb2

POLL = 0.25


def parse_labels(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or ():
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise UsageError(f"--label {item!r}: expected KEY=VALUE")
        out[k] = v
    return out


def node_text(n: cluster_pb2.NodeInfo) -> str:
    """n2: labels zone=b (runtime: zone=b, -gpu), capacity 2000m 4096Mi (runtime: cpu)."""
    labels = ", ".join(f"{k}={v}" for k, v in sorted(n.labels.items())) or "none"
    changed = [f"{k}={v}" for k, v in sorted(n.label_overrides.items())]
    changed += [f"-{k}" for k in n.labels_removed]
    cap = [name for name, v in (("cpu", n.cpu_override), ("memory", n.memory_override)) if v]
    return (f"{n.id}: labels {labels}" + (f" (runtime: {', '.join(changed)})" if changed else "")
            + f"; capacity {n.capacity.cpu_millis}m {n.capacity.memory_mib}Mi"
            + (f" (runtime: {', '.join(cap)})" if cap else ""))


def cmd_update(args: argparse.Namespace, client: Client) -> int:
    for name in ("cpu_millis", "memory_mib"):
        v = getattr(args, name)
        if v is not None and v <= 0:
            raise UsageError(f"--{name.replace('_', '-')} {v}: must be more than 0")
    n = client.update_node(args.node_id, parse_labels(args.label), args.remove_label or (),
                           args.cpu_millis or 0, args.memory_mib or 0)
    if args.json:
        dump_json(message_dict(n))
    else:
        print(node_text(n))
    return EXIT_OK


def readiness(node_id: str, nodes: list[cluster_pb2.NodeInfo], status: cluster_pb2.ClusterStatusResponse,
              target: int) -> tuple[str, int]:
    """("" if `node_id` is ready else why not, the leader's commit index now). Ready: its
    process answers, the cluster registered that process (same incarnation, alive), it is
    eligible, and its replica applied at least `target` (the leader's commit index seen on
    an earlier check; 0: none yet)."""
    reps = {r.node_id: r for r in status.replicas}
    leader = next((r for r in status.replicas if r.reachable and r.raft_state == "leader"), None)
    commit = leader.commit_index if leader else 0
    me = reps.get(node_id)
    n = next((x for x in nodes if x.id == node_id), None)
    if n is None or me is None:
        return f"node {node_id} is not in the cluster", commit
    if not me.reachable:
        return f"node {node_id} does not answer ({me.error or 'unreachable'})", commit
    if leader is None:
        return "no leader", commit
    if not n.alive or n.incarnation != me.incarnation:
        return f"node {node_id} has not registered with the leader since it started", commit
    if not target or me.applied_index < target:
        return (f"node {node_id} applied index {me.applied_index}, leader commit index "
                f"{target or commit}"), commit
    if n.scheduling != "eligible":
        return (f"node {node_id} is {n.scheduling or 'ineligible'} "
                f"(`raftsched node eligibility {node_id} --enable`)"), commit
    return "", commit


def cmd_wait_ready(args: argparse.Namespace, client: Client) -> int:
    deadline = time.monotonic() + args.timeout
    target, why = 0, "not checked yet"
    while time.monotonic() < deadline:
        try:
            status = client.status(include_replicas=True)
            why, commit = readiness(args.node_id, client.nodes(), status, target)
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            why, commit = f"cluster: {e.details()}", 0
        if not why:
            if args.json:
                dump_json({"node_id": args.node_id, "ready": True, "applied_index_at_least": target})
            else:
                print(f"{args.node_id}: ready (up, registered, eligible, applied index >= {target})")
            return EXIT_OK
        target = max(target, commit) if commit else target
        time.sleep(POLL)
    print(f"raftsched: node {args.node_id} not ready after {args.timeout:g}s: {why}", file=sys.stderr)
    return EXIT_UNAVAILABLE


def _rows(settings: list[cluster_pb2.ClusterSetting]) -> list[list[str]]:
    return [[s.key, s.value, s.source, s.file_value] for s in settings]


def cmd_config_get(args: argparse.Namespace, client: Client) -> int:
    settings = client.cluster_config(consistent=bool(getattr(args, "consistent", False)))
    if args.setting:
        settings = [s for s in settings if s.key == args.setting]
        if not settings:
            raise UsageError(f"key {args.setting!r}: not a cluster setting")
    if args.json:
        dump_json({"settings": [message_dict(s) for s in settings]})
    else:
        print(table(_rows(settings), ["KEY", "VALUE", "SOURCE", "CLUSTER.TOML"]))
    return EXIT_OK


def _show_setting(args: argparse.Namespace, s: cluster_pb2.ClusterSetting) -> int:
    if args.json:
        dump_json(message_dict(s))
    else:
        print(f"{s.key} = {s.value} ({s.source})")
    return EXIT_OK


def cmd_config_set(args: argparse.Namespace, client: Client) -> int:
    return _show_setting(args, client.set_cluster_config(args.setting, args.value))


def cmd_config_reset(args: argparse.Namespace, client: Client) -> int:
    return _show_setting(args, client.set_cluster_config(args.setting, reset=True))


def register_node(nsub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """`raftsched node update` and `raftsched node wait-ready`."""
    p = nsub.add_parser(
        "update", help="change a node's labels or capacity at runtime (admin)", formatter_class=fmt,
        epilog=EXIT_CODES_HELP,
        description="Replicated: placement uses the new values from its next decision on, and they\n"
        "stay when the node restarts. A lower capacity stops nothing: running jobs finish, and\n"
        "nothing new is placed there until they leave room.\n"
        "  raftsched node update n2 --label zone=b --remove-label gpu --cpu-millis 2000")
    p.add_argument("node_id", metavar="ID")
    p.add_argument("--label", action="append", metavar="KEY=VALUE", help="set a label (repeatable)")
    p.add_argument("--remove-label", action="append", metavar="KEY", help="remove a label (repeatable)")
    p.add_argument("--cpu-millis", type=int, metavar="N", help="CPU capacity in millicores")
    p.add_argument("--memory-mib", type=int, metavar="N", help="memory capacity in MiB")
    p.set_defaults(func=cmd_update, needs_client=True)
    p = nsub.add_parser(
        "wait-ready", help="wait until a (restarted) node is up, caught up and eligible",
        formatter_class=fmt, epilog=EXIT_CODES_HELP,
        description="Exit 0 once the node's process answers, the leader has registered that\n"
        "process, its replica has applied the leader's commit index, and it is eligible;\n"
        "exit 5 after --timeout. For scripts (docs/operations.md, Rolling restart / upgrade):\n"
        "  raftsched node wait-ready n2 --timeout 120 && raftsched node drain n3 --deadline 10m")
    p.add_argument("node_id", metavar="ID")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    p.set_defaults(func=cmd_wait_ready, needs_client=True)


def register_operator(osub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """`raftsched operator config get|set|reset`."""
    cp = osub.add_parser("config", help="cluster-wide scheduling settings at runtime (set: admin)",
                         formatter_class=fmt, epilog=EXIT_CODES_HELP,
                         description="Settings changeable without a restart: strategy, queue_order,\n"
                         "aging_rate, job_retention, idempotency_retention. A set value is replicated\n"
                         "and wins over cluster.toml until reset.\n"
                         "  raftsched operator config set strategy binpack")
    csub = cp.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    p = csub.add_parser("get", help="the settings in effect and where they come from")
    p.add_argument("setting", nargs="?", metavar="KEY", help="only this setting")
    p.set_defaults(func=cmd_config_get, needs_client=True)
    p = csub.add_parser("set", help="override a setting (admin)", epilog=EXIT_CODES_HELP)
    p.add_argument("setting", metavar="KEY")  # not "key": --key is the TLS key file
    p.add_argument("value", metavar="VALUE")
    p.set_defaults(func=cmd_config_set, needs_client=True)
    p = csub.add_parser("reset", help="back to cluster.toml's value (admin)", epilog=EXIT_CODES_HELP)
    p.add_argument("setting", metavar="KEY")
    p.set_defaults(func=cmd_config_reset, needs_client=True)
