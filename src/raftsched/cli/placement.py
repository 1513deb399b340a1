"""CLI for placement: `raftsched explain JOB` (why is it pending?) and `raftsched plan`
(where would this spec go, and why?)."""

from __future__ import annotations

import argparse
from typing import Any

from raftsched.cli.common import EXIT_CODES_HELP, EXIT_OK, add_spec_flags, reparse, spec_from_args
from raftsched.cli.format import color, dump_json, message_dict, table
from raftsched.client.client import Client
from raftsched.v1 import jobs_pb2

CHECK_COLORS = {"ok": "32", "down": "31", "ineligible": "31", "pool": "35", "labels": "35", "cpu": "33", "memory": "33"}


def render(e: jobs_pb2.PlacementExplanation) -> str:
    """Summary, holds, then one row per node: the failing check or ok, and the choice."""
    state = jobs_pb2.JobState.Name(e.state)
    out = [f"job        {e.job_id}   {state}",
           f"summary    {e.summary}"]
    for h in e.holds:
        out.append(f"holds      {h}")
    if e.avoided_node:
        out.append(f"retry      avoids {e.avoided_node} (its previous attempt failed there) "
                   "while another node fits")
    if e.nodes:
        rank = {nid: i + 1 for i, nid in enumerate(e.ranked)}
        rows = [[v.node_id, color(v.check, CHECK_COLORS.get(v.check, "0")),
                 str(rank.get(v.node_id, "-")), "<- chosen" if v.node_id == e.node_id else "",
                 v.detail] for v in e.nodes]
        out.append(f"nodes      (strategy {e.strategy}; replica of {e.answered_by} "
                   f"at index {e.applied_index})")
        out.append(table(rows, ["NODE", "CHECK", "RANK", "", "DETAIL"]))
    return "\n".join(out)


def _show(args: argparse.Namespace, e: jobs_pb2.PlacementExplanation) -> int:
    if args.json:
        dump_json(message_dict(e))
    else:
        print(render(e))
    return EXIT_OK


def cmd_explain(args: argparse.Namespace, client: Client) -> int:
    return _show(args, client.explain(args.job_id))


def cmd_plan(args: argparse.Namespace, client: Client) -> int:
    args = reparse(args)
    return _show(args, client.plan(spec_from_args(args)))


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser(
        "explain", help="why is a job pending? per node: the failing check, or where it goes",
        formatter_class=fmt, epilog=EXIT_CODES_HELP,
        description="Explain a job's placement from the answering node's replica, with the\n"
        "code the leader places with. Holds (retry delay, sequence key, workflow dependency)\n"
        "keep a job out of the queue whatever the nodes; per node the first failing filter:\n"
        "down, pool (dedicated to another pool), labels (constraints), cpu, memory.")
    p.add_argument("job_id")
    p.set_defaults(func=cmd_explain, needs_client=True)

    p = sub.add_parser(
        "plan", help="where would this job go now, and why? (nothing is submitted)",
        formatter_class=fmt, epilog=EXIT_CODES_HELP,
        description="Take the same flags as `submit` and show where the job would be placed\n"
        "right now, with every node's verdict. Example:\n"
        "  raftsched plan --cpu 1500 --pool heavy -- ./render.sh")
    add_spec_flags(p)
    g = p.add_argument_group("placement")
    g.add_argument("--constraint", action="append", metavar="EXPR",
                   help="node label constraint (repeatable), e.g. size=big")
    g.add_argument("--sequence-key", metavar="KEY", help="as for submit")
    p.set_defaults(func=cmd_plan, needs_client=True, own_parser=p, max_attempts=0,
                   needs_command=True)
