"""`raftsched operator members [add|remove]`: cluster membership (admin token).

    raftsched operator members                       # id, addresses, Raft role, match index, lag
    raftsched operator members add n4 --raft 10.0.0.4:7004 --grpc 10.0.0.4:8004 \\
        [--metrics 10.0.0.4:9004 --control 10.0.0.4:8104 --cpu-millis 4000 --label zone=b]
    raftsched operator members remove n4            # the leader hands over first if it is n4
"""

from __future__ import annotations

import argparse
from typing import Any

from raftsched.cli.common import EXIT_CODES_HELP, EXIT_OK, UsageError
from raftsched.cli.format import dump_json, message_dict, table
from raftsched.client.client import Client
from raftsched.config import default_control
from raftsched.v1 import cluster_pb2, jobs_pb2


def _labels(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise UsageError(f"--label {item!r}: expected key=value")
        out[k] = v
    return out


def _rows(members: list[cluster_pb2.Member]) -> str:
    rows = [[m.id, m.raft_address, m.grpc_address, _control(m), m.metrics_address or "-", m.role or "?",
             str(m.match_index) if m.match_index >= 0 else "-",
             str(m.lag) if m.lag >= 0 else "-",
             f"{m.capacity.cpu_millis}m/{m.capacity.memory_mib}Mi",
             ",".join(f"{k}={v}" for k, v in sorted(m.labels.items())) or "-"] for m in members]
    return table(rows, ["ID", "RAFT", "GRPC", "CONTROL", "METRICS", "ROLE", "MATCH", "LAG", "CAPACITY",
                        "LABELS"])


def _control(m: cluster_pb2.Member) -> str:
    """The heartbeat (control) address a member uses: its own, or the default one."""
    if m.control_address:
        return m.control_address
    try:
        return default_control(m.grpc_address)
    except ValueError:
        return "-"


def cmd_list(args: argparse.Namespace, client: Client) -> int:
    resp = client.members()
    if args.json:
        dump_json(message_dict(resp))
        return EXIT_OK
    print(_rows(list(resp.members)))
    inflight = f", change in flight at index {resp.change_in_flight}" if resp.change_in_flight else ""
    print(f"\nleader {resp.leader_id}, commit index {resp.commit_index}, "
          f"membership version {resp.version}{inflight}")
    return EXIT_OK


def cmd_add(args: argparse.Namespace, client: Client) -> int:
    m = cluster_pb2.Member(
        id=args.node_id, raft_address=args.raft, grpc_address=args.grpc,
        metrics_address=args.metrics or "", control_address=args.control or "",
        capacity=jobs_pb2.Resources(cpu_millis=args.cpu_millis, memory_mib=args.memory_mib),
        labels=_labels(args.label))
    resp = client.add_member(m)
    return _done(args, resp, f"added {args.node_id}; now start it: raftsched --config CONFIG node "
                 f"--id {args.node_id} --join <a member's gRPC address>")


def cmd_remove(args: argparse.Namespace, client: Client) -> int:
    resp = client.remove_member(args.node_id)
    return _done(args, resp, f"removed {args.node_id} (by leader {resp.leader_id}); stop its process")


def _done(args: argparse.Namespace, resp: Any, text: str) -> int:
    if args.json:
        dump_json(message_dict(resp))
    else:
        print(text)
        print(_rows(list(resp.members)))
    return EXIT_OK


def register(osub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    p = osub.add_parser("members", help="list, add or remove cluster members (admin token)",
                        formatter_class=fmt, epilog=EXIT_CODES_HELP, description=__doc__)
    p.set_defaults(func=cmd_list, needs_client=True)
    msub = p.add_subparsers(dest="members_command", metavar="ACTION")
    a = msub.add_parser("add", help="add a member (then start it with node --join)",
                        formatter_class=fmt, epilog=EXIT_CODES_HELP)
    a.add_argument("node_id", metavar="ID")
    a.add_argument("--raft", required=True, metavar="HOST:PORT", help="its Raft address")
    a.add_argument("--grpc", required=True, metavar="HOST:PORT", help="its gRPC address")
    a.add_argument("--metrics", metavar="HOST:PORT", help="its Prometheus address")
    a.add_argument("--control", metavar="HOST:PORT",
                   help="its heartbeat (control) port (default: the gRPC port + 100)")
    a.add_argument("--cpu-millis", type=int, default=1000, help="capacity (default 1000)")
    a.add_argument("--memory-mib", type=int, default=1024, help="capacity (default 1024)")
    a.add_argument("--label", action="append", metavar="K=V", help="a node label (repeatable)")
    a.set_defaults(func=cmd_add, needs_client=True)
    r = msub.add_parser("remove", help="remove a member (the leader hands over first)",
                        formatter_class=fmt, epilog=EXIT_CODES_HELP)
    r.add_argument("node_id", metavar="ID")
    r.set_defaults(func=cmd_remove, needs_client=True)
