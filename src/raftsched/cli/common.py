"""What every command module shares: exit codes, job states, the JobSpec flags."""

from __future__ import annotations

import argparse
import signal

import grpc

from raftsched.core import constraints as cons
from raftsched.v1 import jobs_pb2

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_REFUSED = 4
EXIT_UNAVAILABLE = 5
EXIT_TOO_OLD = 6
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as for a tool killed by it


class UsageError(Exception):
    """A flag combination the CLI refuses before calling anything: exit 2 with usage."""

EXIT_CODES_HELP = """exit codes:
  0  success
  1  a job waited for (--wait) did not succeed
  2  usage error (bad flags or config)
  3  not found (unknown job id)
  4  refused (invalid argument, no or unknown token, not allowed, quota exceeded,
     or not possible in the job's state)
  5  cluster unavailable (no node reachable, no leader)
  6  watch position too old for the node's buffer (re-list with `watch --initial`)
  141 the output was closed early (e.g. `| head`); nothing is printed about it
"""


def exit_code_of(e: grpc.RpcError) -> int:
    """The exit code for a gRPC status (see EXIT_CODES_HELP)."""
    code = e.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return EXIT_NOT_FOUND
    if code == grpc.StatusCode.OUT_OF_RANGE:
        return EXIT_TOO_OLD
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
                grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.RESOURCE_EXHAUSTED):
        return EXIT_REFUSED
    return EXIT_UNAVAILABLE

STATES = [s for s in jobs_pb2.JobState.keys() if s != "JOB_STATE_UNSPECIFIED"]  # noqa: SIM118


def add_spec_flags(p: argparse.ArgumentParser) -> None:
    """The JobSpec flags shared by `submit` and `template create|update`."""
    p.add_argument("--shell", action="store_true", help="run the command through /bin/sh -c")
    p.add_argument("--cpu", type=int, default=100, help="CPU request in millicores (default 100)")
    p.add_argument("--mem", type=int, default=64, help="memory request in MiB (default 64)")
    p.add_argument("--mem-limit", type=int, default=0, metavar="MIB",
                   help="memory limit in MiB, >= --mem, to allow bursting (default: the request; "
                        "above it the job ends OOM_KILLED)")
    p.add_argument("--cpu-limit", type=int, default=0, metavar="MILLIS",
                   help="CPU quota in millicores, >= --cpu (default: the request)")
    p.add_argument("--pids-limit", type=int, default=0, metavar="N",
                   help="most processes/threads at once (default: the node's pids_limit)")
    p.add_argument("--priority", type=int, default=0, help="-1000..1000 (default 0)")
    p.add_argument("--timeout", type=float, default=0.0, help="job timeout in seconds; 0 = none")
    p.add_argument("--env", action="append", metavar="NAME=VALUE", help="environment (repeatable)")
    p.add_argument("--cwd", help="absolute working directory on the node")
    p.add_argument("--name", help="a label shown in listings")
    p.add_argument("--pool", help="node pool to run in (nodes labelled pool=NAME, including "
                   "nodes dedicated to it)")
    p.add_argument("--namespace", help="namespace of the job (default: the token's first one)")
    p.add_argument("--run-as", metavar="USER", help="run as this user of the node (the namespace "
                   "and the node must both allow it; default: the node's own user)")
    p.add_argument("--python", metavar="PKG.MOD:FN",
                   help="a Python task: call this function in a node's worker pool (no command)")
    p.add_argument("--args", dest="py_args", metavar="JSON", default="",
                   help="--python: positional arguments as a JSON array, e.g. '[1, 2]'")
    p.add_argument("--kwargs", dest="py_kwargs", metavar="JSON", default="",
                   help="--python: keyword arguments as a JSON object, e.g. '{\"x\": 1}'")
    p.add_argument("command", nargs=argparse.REMAINDER, help="program and arguments (after --)")


def add_policy_flags(p: argparse.ArgumentParser) -> None:
    """Retry, placement and ordering flags of `submit`."""
    g = p.add_argument_group(
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


def spec_from_args(args: argparse.Namespace) -> jobs_pb2.JobSpec:
    env = {}
    for kv in args.env or []:
        if "=" not in kv:
            raise UsageError(f"--env {kv!r}: expected NAME=VALUE")
        k, v = kv.split("=", 1)
        env[k] = v
    spec = jobs_pb2.JobSpec(
        env=env,
        working_dir=args.cwd or "",
        resources=jobs_pb2.Resources(cpu_millis=args.cpu, memory_mib=args.mem),
        priority=args.priority,
        timeout_seconds=args.timeout,
        name=args.name or "",
        pool=args.pool or "",
        namespace=args.namespace or "",
        run_as=getattr(args, "run_as", None) or "",
    )
    if getattr(args, "mem_limit", 0) or getattr(args, "cpu_limit", 0) or getattr(args, "pids_limit", 0):
        spec.limits.CopyFrom(jobs_pb2.ResourceLimits(memory_mib=args.mem_limit, cpu_millis=args.cpu_limit,
                                                     pids=args.pids_limit))
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if getattr(args, "python", None):
        if command or args.shell:
            raise UsageError("give either --python or a command, not both")
        spec.python.CopyFrom(jobs_pb2.PythonCall(target=args.python, args_json=args.py_args,
                                                 kwargs_json=args.py_kwargs))
    elif not command and getattr(args, "needs_command", False):
        raise UsageError("no command given: put the program and its arguments after --, or use --python")
    elif args.shell:
        spec.use_shell = True
        spec.shell = " ".join(command)
    else:
        spec.command.extend(command)
    _policy_from_args(args, spec)
    return spec


def _policy_from_args(args: argparse.Namespace, spec: jobs_pb2.JobSpec) -> None:
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
        if not c.key:
            raise UsageError(f"--constraint {text!r}: no label name; e.g. pool=heavy")
        spec.constraints.append(jobs_pb2.Constraint(key=c.key, op=c.op, value=c.value))
    if args.sequence_key:
        spec.sequence_key = args.sequence_key


def reparse(args: argparse.Namespace, *positional: str) -> argparse.Namespace:
    """Options given after the positional arguments land in the REMAINDER list:
    parse them again (with the positionals last) and keep only what follows `--`."""
    rest = list(args.command)
    if "--" in rest:
        i = rest.index("--")
        pre, cmd = rest[:i], rest[i + 1:]
    elif rest and rest[0].startswith("-"):
        pre, cmd = rest, []
    else:
        pre, cmd = [], rest
    if pre:
        pos = [getattr(args, n) for n in positional if getattr(args, n) is not None]
        args = args.own_parser.parse_args([*pre, *pos], namespace=args)
    args.command = cmd
    return args


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP (a closed terminal) end a long-running command like Ctrl-C,
    so its cleanup runs (`cluster up` stops its nodes, `top` restores the terminal)."""
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
