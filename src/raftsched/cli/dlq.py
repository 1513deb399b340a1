"""CLI for job semantics: submit flags (retries, constraints, sequence and idempotency
keys) and `raftsched dlq list|retry|purge`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from raftsched.cli import bulk
from raftsched.cli.common import EXIT_CODES_HELP, EXIT_OK, EXIT_USAGE, UsageError
from raftsched.cli.format import command_line, dump_json, fmt_ts, job_dict, table
from raftsched.client.client import Client
from raftsched.v1 import jobs_pb2


def cmd_dlq_list(args: argparse.Namespace, client: Client) -> int:
    jobs = list(client.list_all([jobs_pb2.DEAD]))
    if args.json:
        dump_json({"jobs": [job_dict(j) for j in jobs], "total": len(jobs)})
        return EXIT_OK
    rows = [[j.id, j.spec.name or "-", str(j.failures), str(j.attempt), fmt_ts(j.finished_at),
             command_line(j.spec), j.reason] for j in jobs]
    print(table(rows, ["ID", "NAME", "FAILURES", "ATTEMPT", "DIED", "COMMAND", "REASON"]))
    return EXIT_OK


def cmd_dlq_retry(args: argparse.Namespace, client: Client) -> int:
    if args.job_ids and (args.all or bulk.filtered(args)):
        raise UsageError("give job ids, or --all / filters, not both")
    if not args.job_ids:
        if not (args.all or bulk.filtered(args)):
            raise UsageError("give job ids, or --all (every DEAD job) or filters with --yes")
        jobs = bulk.select(client, args, ["DEAD"])
        if not args.all and not bulk.confirm(args, jobs, "retry"):
            return EXIT_USAGE
        return bulk.apply_each(args, [j.id for j in jobs], client.retry_dead, "retried")
    for jid in args.job_ids:
        j = client.retry_dead(jid)
        if args.json:
            dump_json(job_dict(j))
        else:
            print(f"{j.id} {jobs_pb2.JobState.Name(j.state)}")
    return EXIT_OK


def cmd_dlq_purge(args: argparse.Namespace, client: Client) -> int:
    if not args.job_ids and not args.yes:
        print("raftsched: dlq purge deletes every DEAD job; add --yes (or give job ids)",
              file=sys.stderr)
        return EXIT_USAGE
    purged = client.purge_dead(args.job_ids)
    if args.json:
        dump_json({"purged": purged})
    else:
        print(f"purged {len(purged)} dead job(s)")
        for jid in purged:
            print(jid)
    return EXIT_OK


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    dp = sub.add_parser("dlq", help="dead-letter queue: jobs that exhausted their retries",
                        formatter_class=fmt, epilog=EXIT_CODES_HELP)
    dsub = dp.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    p = dsub.add_parser("list", help="list DEAD jobs with their reason")
    p.set_defaults(func=cmd_dlq_list, needs_client=True)
    p = dsub.add_parser("retry", help="put DEAD jobs back to PENDING with a fresh retry budget "
                        "(the given ones, --all, or filters with --yes)")
    p.add_argument("job_ids", nargs="*", metavar="JOB")
    p.add_argument("--all", action="store_true", help="every DEAD job (of --namespace, if given)")
    bulk.add_filter_flags(p, states=False)
    p.set_defaults(func=cmd_dlq_retry, needs_client=True)
    p = dsub.add_parser("purge", help="delete DEAD jobs (the given ones, or all with --yes)")
    p.add_argument("job_ids", nargs="*", metavar="JOB")
    p.add_argument("--yes", action="store_true", help="really delete every DEAD job")
    p.set_defaults(func=cmd_dlq_purge, needs_client=True)
