"""Actions on many jobs: `raftsched cancel` by ids or by filter (`--yes`), and the job
selection `dlq retry --all` shares with it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import grpc

from raftsched.cli.common import EXIT_CODES_HELP, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, STATES, UsageError
from raftsched.cli.format import dump_json, job_dict
from raftsched.cli.listing import parse_since
from raftsched.client.client import Client
from raftsched.v1 import jobs_pb2, scheduler_pb2

UNFINISHED = ["PENDING", "WAITING", "ASSIGNED", "RUNNING"]


def add_filter_flags(p: argparse.ArgumentParser, states: bool = True) -> None:
    if states:
        p.add_argument("--state", action="append", type=str.upper, choices=STATES,
                       help="only jobs in this state (repeatable)")
    p.add_argument("--name", metavar="NAME|GLOB", help="only jobs with this name, e.g. 'etl-*'")
    p.add_argument("--namespace", help="only jobs of this namespace")
    p.add_argument("--on-node", metavar="NODE_ID", help="only jobs on this node")
    p.add_argument("--since", metavar="AGO|TIME", help="only jobs submitted since (10m, 2h, ISO)")
    p.add_argument("--yes", action="store_true", help="act on every matching job")


def filtered(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "state", None) or args.name or args.namespace or args.on_node
                or args.since)


def select(client: Client, args: argparse.Namespace, states: list[str]) -> list[jobs_pb2.Job]:
    req = scheduler_pb2.ListJobsRequest(
        states=[jobs_pb2.JobState.Value(s) for s in states], node_id=args.on_node or "",
        namespace=args.namespace or "", name=args.name or "",
        submitted_since=parse_since(args.since) if args.since else 0.0)
    return list(client.list_jobs_all(req))


def apply_each(args: argparse.Namespace, ids: list[str], action: Callable[[str], jobs_pb2.Job],
               verb: str) -> int:
    """`action` on every id; a refusal of one job (already finished...) does not stop the
    rest. Exit 4 if any was refused."""
    done: list[jobs_pb2.Job] = []
    refused: list[tuple[str, str]] = []
    for jid in ids:
        try:
            done.append(action(jid))
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                            grpc.StatusCode.UNAUTHENTICATED):
                raise
            refused.append((jid, f"{e.code().name}: {e.details()}"))
    if args.json:
        dump_json({"jobs": [job_dict(j) for j in done] if len(ids) == 1 and done else
                   [{"id": j.id, "state": jobs_pb2.JobState.Name(j.state)} for j in done],
                   "refused": [{"id": i, "error": err} for i, err in refused]})
    else:
        for j in done:
            print(f"{j.id} {jobs_pb2.JobState.Name(j.state)}")
        for jid, err in refused:
            print(f"raftsched: {jid}: {err}", file=sys.stderr)
        if len(ids) > 1:
            print(f"# {verb} {len(done)} of {len(ids)} job(s)", file=sys.stderr)
    return EXIT_REFUSED if refused else EXIT_OK


def confirm(args: argparse.Namespace, jobs: list[jobs_pb2.Job], verb: str) -> bool:
    if args.yes:
        return True
    print(f"raftsched: {len(jobs)} job(s) match; add --yes to {verb} them", file=sys.stderr)
    for j in jobs[:10]:
        print(f"  {j.id} {j.spec.name or '-'} {jobs_pb2.JobState.Name(j.state)}", file=sys.stderr)
    return False


def cmd_cancel(args: argparse.Namespace, client: Client) -> int:
    if args.job_ids and filtered(args):
        raise UsageError("give job ids or filters, not both")
    if args.job_ids:
        if len(args.job_ids) == 1 and not args.json:  # one job: its errors as before
            j = client.cancel(args.job_ids[0])
            print(f"{j.id} {jobs_pb2.JobState.Name(j.state)}")
            return EXIT_OK
        return apply_each(args, args.job_ids, client.cancel, "cancelled")
    if not filtered(args):
        raise UsageError("give job ids, or filters (--state, --name, --namespace, --on-node, "
                         "--since) and --yes")
    states = [s for s in (args.state or UNFINISHED) if s in UNFINISHED]
    if not states:
        raise UsageError("--state: only unfinished jobs can be cancelled "
                         f"({', '.join(s.lower() for s in UNFINISHED)})")
    jobs = select(client, args, states)
    if not confirm(args, jobs, "cancel"):
        return EXIT_USAGE
    return apply_each(args, [j.id for j in jobs], client.cancel, "cancelled")


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    sp = sub.add_parser(
        "cancel", help="cancel jobs (a running one is killed: SIGTERM, grace, SIGKILL)",
        epilog=EXIT_CODES_HELP, formatter_class=fmt,
        description="Cancel the given jobs, or every unfinished job matching the filters:\n"
        "  raftsched cancel JOB_ID [JOB_ID...]\n"
        "  raftsched cancel --name 'etl-*' --state pending --yes\n"
        "Without --yes a filter only shows what matches (exit 2). A job that cannot be\n"
        "cancelled (already finished) is reported and the others still are (exit 4).")
    sp.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    add_filter_flags(sp)
    sp.set_defaults(func=cmd_cancel, needs_client=True)
