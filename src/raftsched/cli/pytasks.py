"""`raftsched result JOB_ID`: wait for a job and print its return value (Python tasks,
issue 14). `submit --python pkg.mod:fn --args '[1,2]' --kwargs '{}'` is in common.py."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from raftsched.cli.common import EXIT_CODES_HELP, EXIT_JOB_FAILED, EXIT_OK, EXIT_UNAVAILABLE
from raftsched.client.api import wait_terminal
from raftsched.client.client import Client
from raftsched.v1 import jobs_pb2


def cmd_result(args: argparse.Namespace, client: Client) -> int:
    try:
        job = wait_terminal(client, [args.job_id], args.wait_timeout or None)[args.job_id]
    except TimeoutError as e:
        print(f"raftsched: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    state = jobs_pb2.JobState.Name(job.state)
    if args.json:
        out: dict[str, Any] = {"job_id": job.id, "state": state, "reason": job.reason,
                               "result": json.loads(job.result_json) if job.result_json else None}
        print(json.dumps(out))
    elif job.state == jobs_pb2.SUCCEEDED:
        print(job.result_json or "null")
    if job.state != jobs_pb2.SUCCEEDED:
        if not args.json:
            print(f"job {job.id} ended {state}: {job.reason}", file=sys.stderr)
            if job.stderr_tail:
                print(job.stderr_tail.rstrip("\n"), file=sys.stderr)
        return EXIT_JOB_FAILED
    return EXIT_OK


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    sp = sub.add_parser("result", help="wait for a job and print its return value (JSON)",
                        epilog=EXIT_CODES_HELP, formatter_class=fmt,
                        description="Wait until the job ends. A succeeded Python task prints its "
                        "return value as JSON\n(a command job prints null); otherwise the state, "
                        "the reason and the traceback\ntail go to stderr and the exit code is 1.")
    sp.add_argument("job_id")
    sp.add_argument("--wait-timeout", type=float, default=0.0, metavar="SECONDS",
                    help="give up after this long (default: wait as long as it takes)")
    sp.set_defaults(func=cmd_result, needs_client=True)
