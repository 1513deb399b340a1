"""CLI for job semantics: submit flags (retries, constraints, sequence and idempotency
keys) and `raftsched dlq list|retry|purge`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from raftsched import cli
from raftsched import constraints as cons
from raftsched.rpc.client import Client
from raftsched.v1 import jobs_pb2


def _spec_hook(args: argparse.Namespace, spec: jobs_pb2.JobSpec) -> None:
    if not hasattr(args, "max_attempts"):
        return  # a command that builds specs without the submit flags (e.g. `template create`)
    if args.max_attempts:
        r = jobs_pb2.RetryPolicy(max_attempts=args.max_attempts, jitter=args.retry_jitter)
        if args.retry_delay is not None:
            r.initial_delay_seconds = args.retry_delay
        if args.retry_multiplier is not None:
            r.multiplier = args.retry_multiplier
        if args.retry_max_delay is not None:
            r.max_delay_seconds = args.retry_max_delay
        spec.retry.CopyFrom(r)
    for text in args.constraint or []:
        c = cons.parse(text)
        spec.constraints.append(jobs_pb2.Constraint(key=c.key, op=c.op, value=c.value))
    if args.sequence_key:
        spec.sequence_key = args.sequence_key


def cmd_dlq_list(args: argparse.Namespace, client: Client) -> int:
    jobs = list(client.list_all([jobs_pb2.DEAD]))
    if args.json:
        cli._dump({"jobs": [cli._job_dict(j) for j in jobs], "total": len(jobs)})
        return cli.EXIT_OK
    rows = [[j.id, j.spec.name or "-", str(j.failures), str(j.attempt), cli._ts(j.finished_at),
             cli._cmd(j.spec), j.reason] for j in jobs]
    print(cli.table(rows, ["ID", "NAME", "FAILURES", "ATTEMPT", "DIED", "COMMAND", "REASON"]))
    return cli.EXIT_OK


def cmd_dlq_retry(args: argparse.Namespace, client: Client) -> int:
    for jid in args.job_ids:
        j = client.retry_dead(jid)
        if args.json:
            cli._dump(cli._job_dict(j))
        else:
            print(f"{j.id} {jobs_pb2.JobState.Name(j.state)}")
    return cli.EXIT_OK


def cmd_dlq_purge(args: argparse.Namespace, client: Client) -> int:
    if not args.job_ids and not args.yes:
        print("raftsched: dlq purge deletes every DEAD job; add --yes (or give job ids)",
              file=sys.stderr)
        return cli.EXIT_USAGE
    purged = client.purge_dead(args.job_ids)
    if args.json:
        cli._dump({"purged": purged})
    else:
        print(f"purged {len(purged)} dead job(s)")
        for jid in purged:
            print(jid)
    return cli.EXIT_OK


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    cli.SPEC_HOOKS.append(_spec_hook)
    sp = sub.choices["submit"]
    g = sp.add_argument_group(
        "retries, placement and ordering",
        "A retry policy (--max-attempts N >= 1) retries failed or timed-out attempts with\n"
        "exponential backoff; after N failed attempts the job is DEAD (see `raftsched dlq`).\n"
        "Constraints select nodes by their cluster.toml labels:\n"
        "  KEY=V  KEY!=V  KEY=V1|V2 (one of)  KEY!=V1|V2 (none of)  KEY (exists)  !KEY",
    )
    g.add_argument("--max-attempts", type=int, default=0,
                   help="failed attempts allowed before DEAD (default 0: no retries, ends FAILED)")
    g.add_argument("--retry-delay", type=float, help="seconds before the first retry (default 1)")
    g.add_argument("--retry-multiplier", type=float, help="backoff factor per failure (default 2)")
    g.add_argument("--retry-max-delay", type=float, help="longest delay in seconds (default 300)")
    g.add_argument("--retry-jitter", type=float, default=0.0,
                   help="random +-fraction of each delay, 0..1 (default 0)")
    g.add_argument("--constraint", action="append", metavar="EXPR",
                   help="node label constraint (repeatable), e.g. pool=heavy")
    g.add_argument("--sequence-key", metavar="KEY",
                   help="jobs with the same key run one at a time, in submission order")
    g.add_argument("--idempotency-key", metavar="KEY",
                   help="submitting again with this key returns the existing job")

    dp = sub.add_parser("dlq", help="dead-letter queue: jobs that exhausted their retries",
                        formatter_class=fmt, epilog=cli.EXIT_CODES_HELP)
    dsub = dp.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    p = dsub.add_parser("list", help="list DEAD jobs with their reason")
    p.set_defaults(func=cmd_dlq_list, needs_client=True)
    p = dsub.add_parser("retry", help="put DEAD jobs back to PENDING with a fresh retry budget")
    p.add_argument("job_ids", nargs="+", metavar="JOB")
    p.set_defaults(func=cmd_dlq_retry, needs_client=True)
    p = dsub.add_parser("purge", help="delete DEAD jobs (the given ones, or all with --yes)")
    p.add_argument("job_ids", nargs="*", metavar="JOB")
    p.add_argument("--yes", action="store_true", help="really delete every DEAD job")
    p.set_defaults(func=cmd_dlq_purge, needs_client=True)
