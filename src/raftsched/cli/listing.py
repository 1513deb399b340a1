"""`raftsched list`: jobs newest first, with filters, pages, a summary JSON form; and
the short summary `submit --wait` prints for a big batch."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from raftsched.cli.common import EXIT_CODES_HELP, EXIT_OK, STATES, UsageError
from raftsched.cli.format import dump_json, freshness_json, job_dict, job_summary, print_jobs
from raftsched.client.client import Client
from raftsched.v1 import jobs_pb2, scheduler_pb2

# `submit --wait` prints every row up to this many jobs, a summary above it
WAIT_ROWS = 20
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """`--since`: a duration back from now (90s, 10m, 2h, 1d) or an ISO time
    (2026-12-02T18:00, local time unless it names a zone) -> unix seconds."""
    m = _DURATION.match(text.strip())
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise UsageError(f"--since {text!r}: expected a duration (90s, 10m, 2h, 1d) or an ISO "
                         "time (2026-12-02T18:00)") from None


def request_from_args(args: argparse.Namespace) -> scheduler_pb2.ListJobsRequest:
    if not 1 <= args.limit <= 1000:
        raise UsageError(f"--limit {args.limit}: must be 1..1000")
    return scheduler_pb2.ListJobsRequest(
        states=[jobs_pb2.JobState.Value(s) for s in args.state or []],
        node_id=args.on_node or "", page_size=args.limit, page_token=args.page_token or "",
        namespace=args.namespace or "", newest_first=args.sort == "newest",
        name=args.name or "", submitted_since=parse_since(args.since) if args.since else 0.0)


def cmd_list(args: argparse.Namespace, client: Client) -> int:
    req = request_from_args(args)
    if args.all:
        jobs = list(client.list_jobs_all(req))
        total = len(jobs)
    else:
        resp = client.list_jobs(req)
        jobs, total = list(resp.jobs), resp.total
        if resp.next_page_token and not args.json:
            print(f"# {len(jobs)} of {total}; next page: --page-token {resp.next_page_token}",
                  file=sys.stderr)
    if args.json:
        shape = job_dict if args.full else job_summary
        out: dict[str, Any] = {"jobs": [shape(j) for j in jobs], "total": total}
        if not args.all:
            out["next_page_token"] = resp.next_page_token
        out["freshness"] = freshness_json(client)
        dump_json(out)
    else:
        print_jobs(jobs)
    return EXIT_OK


def print_wait_result(jobs: Sequence[jobs_pb2.Job]) -> None:
    """The jobs `submit --wait` followed: every row for a few, else counts per state and
    the jobs that did not succeed (the first WAIT_ROWS of them)."""
    if len(jobs) <= WAIT_ROWS:
        print_jobs(jobs)
        return
    counts = Counter(jobs_pb2.JobState.Name(j.state) for j in jobs)
    print(f"{len(jobs)} jobs: " + ", ".join(f"{n} {s.lower()}" for s, n in counts.most_common()))
    bad = [j for j in jobs if j.state != jobs_pb2.SUCCEEDED]
    if bad:
        print_jobs(bad[:WAIT_ROWS])
        if len(bad) > WAIT_ROWS:
            print(f"# {len(bad) - WAIT_ROWS} more did not succeed: raftsched list --state failed "
                  "(or --state timed_out, dead, cancelled)", file=sys.stderr)


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    sp = sub.add_parser(
        "list", help="list jobs (newest first)", epilog=EXIT_CODES_HELP, formatter_class=fmt,
        description="List jobs, newest first (--sort oldest: submission order), one page at a\n"
        "time. Filters combine: --state, --on-node, --namespace, --name (a name or a glob\n"
        "such as 'build-*'), --since (10m, 2h, 1d, or an ISO time).\n"
        "--json prints a summary per job; --json --full the whole job (spec, attempts,\n"
        "history, output tails), as `status --json` does.")
    sp.add_argument("--state", action="append", type=str.upper, choices=STATES,
                    help="only jobs in this state (repeatable)")
    sp.add_argument("--on-node", metavar="NODE_ID", help="only jobs on this node")
    sp.add_argument("--namespace", help="only jobs of this namespace (default: every one you may read)")
    sp.add_argument("--name", metavar="NAME|GLOB", help="only jobs with this name (submit --name)")
    sp.add_argument("--since", metavar="AGO|TIME", help="only jobs submitted since, e.g. 10m, 2h, "
                    "1d, 2026-12-02T18:00")
    sp.add_argument("--sort", choices=["newest", "oldest"], default="newest",
                    help="newest first (default) or oldest first (submission order)")
    sp.add_argument("--limit", type=int, default=50, help="page size (default 50, max 1000)")
    sp.add_argument("--page-token", help="continue from a previous page (same --sort)")
    sp.add_argument("--all", action="store_true", help="fetch every page")
    sp.add_argument("--full", action="store_true", help="with --json: every field of each job")
    sp.set_defaults(func=cmd_list, needs_client=True)
