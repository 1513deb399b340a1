"""CLI for node operations (issue 15): `raftsched node drain ID [--deadline 10m] [--force]`
and `raftsched node eligibility ID --disable|--enable`, subcommands of `raftsched node`,
which without one runs a node (`raftsched node --id n1`)."""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from typing import Any

from raftsched.cli import runtimecfg
from raftsched.cli.common import EXIT_CODES_HELP, EXIT_OK, UsageError
from raftsched.cli.format import dump_json, message_dict
from raftsched.client.client import Client
from raftsched.v1 import cluster_pb2

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, flag: str = "--deadline") -> float:
    """Seconds of "90", "30s", "10m", "1h30m", "2d" (a bare number is seconds)."""
    t = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", t):
        return float(t)
    parts = _PART.findall(t)
    if not t or "".join(n + u for n, u in parts) != t:
        raise UsageError(f"{flag} {text!r}: not a duration; use e.g. 30s, 10m, 1h30m or seconds")
    return sum(float(n) * _UNIT[u] for n, u in parts)


def scheduling_text(n: cluster_pb2.NodeInfo) -> str:
    """eligible | ineligible | draining (3 running, deadline 12:00:00) | drained."""
    if n.scheduling == "draining":
        when = time.strftime("%H:%M:%S", time.localtime(n.drain_deadline))
        return f"draining ({n.running_jobs} running, deadline {when})"
    return n.scheduling or ("eligible" if n.eligible else "ineligible")


def _show(args: argparse.Namespace, n: cluster_pb2.NodeInfo) -> int:
    if args.json:
        dump_json(message_dict(n))
    else:
        print(f"{n.id}: {scheduling_text(n)}")
    return EXIT_OK


def cmd_drain(args: argparse.Namespace, client: Client) -> int:
    if args.force and args.deadline is not None:
        raise UsageError("--deadline and --force: give one (--force = deadline now)")
    seconds = 0.0 if args.force else parse_duration(args.deadline or "1h")
    if not args.force and seconds <= 0:
        raise UsageError(f"--deadline {args.deadline!r}: must be more than 0 (or use --force)")
    return _show(args, client.drain_node(args.node_id, seconds, args.force))


def cmd_eligibility(args: argparse.Namespace, client: Client) -> int:
    return _show(args, client.set_node_eligibility(args.node_id, args.enable))


def register(sub: Any, fmt: type[argparse.HelpFormatter], run: Callable[[argparse.Namespace], int]) -> None:
    """`raftsched node` (run a node with --id) and its subcommands drain, eligibility."""
    sp = sub.add_parser("node", help="run one node of the cluster; or drain it, set its eligibility",
                        formatter_class=fmt,
                        description="Run one raftsched node (Raft replica, gRPC API, executor):\n"
                        "  raftsched node --config cluster.toml --id n1\n"
                        "  raftsched node --config cluster.toml --id n4 --join 10.0.0.1:8001\n"
                        "or change a node of a running cluster (operator token for every namespace):\n"
                        "  raftsched node drain n2 --deadline 10m   # no new jobs; requeue what "
                        "still runs then\n"
                        "  raftsched node eligibility n2 --disable  # no new jobs; running ones stay")
    sp.add_argument("--id", help="node id from the config (to run a node)")
    sp.add_argument("--join", metavar="HOST:GRPC",
                    help="start a node added with `operator members add` (empty data dir): learn "
                    "the member list from this member, catch up by snapshot + log")
    sp.add_argument("--log-format", choices=["console", "json"], help="override config")
    sp.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    sp.set_defaults(func=run, needs_client=False)
    nsub = sp.add_subparsers(dest="node_command", metavar="ACTION")
    p = nsub.add_parser("drain", help="no new jobs on the node; requeue what still runs at the deadline",
                        formatter_class=fmt, epilog=EXIT_CODES_HELP)
    p.add_argument("node_id", metavar="ID")
    p.add_argument("--deadline", help="how long running jobs may go on: 30s, 10m, 1h30m (default 1h)")
    p.add_argument("--force", action="store_true", help="requeue the running jobs now")
    p.set_defaults(func=cmd_drain, needs_client=True)
    p = nsub.add_parser("eligibility", help="allow or stop new jobs on the node (--enable ends a drain)",
                        formatter_class=fmt, epilog=EXIT_CODES_HELP)
    p.add_argument("node_id", metavar="ID")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--enable", action="store_true", help="take new jobs again; ends a drain")
    g.add_argument("--disable", action="store_true", help="no new jobs; running ones are untouched")
    p.set_defaults(func=cmd_eligibility, needs_client=True)
    runtimecfg.register_node(nsub, fmt)
