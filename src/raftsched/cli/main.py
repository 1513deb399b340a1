"""The `raftsched` command line: run nodes, and talk to any node of a cluster."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from raftsched import config as configmod
from raftsched.cli import (
    acl,
    audit,
    bulk,
    dag,
    dlq,
    globalflags,
    listing,
    nodeops,
    observe,
    operator,
    placement,
    pytasks,
    runtimecfg,
    tlscmd,
    workflows,
)
from raftsched.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_CODES_HELP,
    EXIT_JOB_FAILED,
    EXIT_NOT_FOUND,  # noqa: F401  (re-exported: callers of main() compare with them)
    EXIT_OK,
    EXIT_REFUSED,  # noqa: F401
    EXIT_TOO_OLD,  # noqa: F401
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    UsageError,
    add_policy_flags,
    add_spec_flags,
    exit_code_of,
    spec_from_args,
)
from raftsched.cli.format import (
    TERMINAL,
    dump_json,
    freshness_json,
    job_dict,
    message_dict,
    progress,
    render_status,
    table,
)
from raftsched.cli.local import cmd_cluster_up, cmd_node
from raftsched.client.client import Client, NoNodeReachable
from raftsched.client.credentials import TOKEN_ENV, discover, discover_token
from raftsched.core.freshness import stale_warning
from raftsched.v1 import jobs_pb2

# ---- commands ---------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace, client: Client) -> int:
    spec = spec_from_args(args)
    key = getattr(args, "idempotency_key", None)
    if args.count < 1:
        raise UsageError(f"--count {args.count}: must be at least 1")
    if key and args.count != 1:
        raise UsageError("--idempotency-key needs --count 1 (a batch has no single key)")
    existing = False
    if args.count == 1:
        resp = client.submit_ex(spec, idempotency_key=key)
        ids, existing = [resp.job_id], resp.existing
    else:
        ids = client.submit_batch([spec] * args.count)
    if existing and not args.json:
        print(f"# the idempotency key matched job {ids[0]}, submitted before", file=sys.stderr)
    if not args.wait:
        if args.json:
            dump_json({"job_ids": ids, "existing": existing})
        else:
            for i in ids:
                print(i)
        return EXIT_OK
    jobs = _wait(client, ids, quiet=args.json)
    if args.json:
        dump_json({"jobs": [job_dict(j) for j in jobs], "existing": existing})
    else:
        listing.print_wait_result(jobs)
    ok = all(j.state == jobs_pb2.SUCCEEDED for j in jobs)
    return EXIT_OK if ok else EXIT_JOB_FAILED


def _wait(client: Client, ids: list[str], quiet: bool) -> list[jobs_pb2.Job]:
    """Follow the jobs through a live watch (any node, resumes on another one if it goes away)."""
    from raftsched.client.observe_client import JobWatcher

    latest: dict[str, jobs_pb2.Job] = {}
    left = set(ids)
    tty = sys.stderr.isatty() and not quiet
    started = time.monotonic()
    last_draw = 0.0
    w = JobWatcher(client.addresses, job_ids=ids, send_initial=True, token=client.token,
                   tls=client.tls)
    try:
        for resp in w.responses():
            for ev in resp.events:
                latest[ev.job.id] = ev.job
                if ev.job.state in TERMINAL:
                    left.discard(ev.job.id)
            if tty and (not left or time.monotonic() - last_draw > 0.1):
                last_draw = time.monotonic()
                sys.stderr.write("\r\x1b[K" + progress(ids, latest, time.monotonic() - started))
                sys.stderr.flush()
            if not left and w.synced:
                break
    finally:
        w.cancel()
    if tty:
        sys.stderr.write("\n")
    return [latest[i] for i in ids]


def cmd_status(args: argparse.Namespace, client: Client) -> int:
    j = client.get(args.job_id)
    if args.json:
        dump_json({**job_dict(j), "freshness": freshness_json(client)})
    else:
        print(render_status(j))
    return EXIT_OK


def _lag(p99: float, top: float) -> str:
    return f"{p99 * 1000:.0f}/{top * 1000:.0f}ms"


# fields where the API says -1 for "not known here" (a follower has no heartbeat view;
# cgroups usage not measurable): JSON says null instead
UNKNOWN_IS_MINUS_ONE = ("last_heartbeat_age", "cpu_millis_used", "memory_mib_used")


def _unknown_as_null(d: dict[str, Any]) -> dict[str, Any]:
    for k in UNKNOWN_IS_MINUS_ONE:
        if d.get(k, 0) < 0:
            d[k] = None
    return d


def cmd_nodes(args: argparse.Namespace, client: Client) -> int:
    nodes = client.nodes()
    st = client.status(include_replicas=True)
    reps = {r.node_id: r for r in st.replicas}
    if args.json:
        dump_json({
            "leader": st.leader_id,
            "nodes": [_unknown_as_null(message_dict(n)) for n in nodes],
            "replicas": [_unknown_as_null(message_dict(r)) for r in st.replicas],
            "freshness": freshness_json(client),
        })
        return EXIT_OK
    rows = []
    for n in nodes:
        r = reps.get(n.id)
        role = r.raft_state if r and r.reachable else "unreachable"
        cpu = f"{n.allocated.cpu_millis}/{n.capacity.cpu_millis}m"
        mem = f"{n.allocated.memory_mib}/{n.capacity.memory_mib}Mi"
        live = r and r.reachable and r.isolation
        used = (f"{r.cpu_millis_used}m {r.memory_mib_used}Mi" if live and r.cpu_millis_used >= 0  # type: ignore[union-attr]
                else "-")
        rows.append([
            n.id, "up" if n.alive else "down", role, str(n.running_jobs), cpu, mem, used,
            str(r.applied_index) if r and r.reachable else "-",
            r.state_digest[:12] if r and r.reachable else "-",
            _lag(r.loop_lag_p99, r.loop_lag_max) if r and r.reachable else "-",
            _lag(r.tick_lag_p99, r.tick_lag_max) if r and r.reachable else "-",
            n.grpc_address,
            n.labels.get("pool", "-") + (" (dedicated)" if n.dedicated_pool else ""),
            nodeops.scheduling_text(n),
        ])
    print(table(rows, ["NODE", "HEALTH", "RAFT", "JOBS", "CPU", "MEMORY", "USED (CGROUPS)",
                       "APPLIED", "DIGEST", "LOOP LAG p99/max", "TICK LAG p99/max", "ADDRESS",
                       "POOL", "SCHEDULING"]))
    for n in nodes:  # labels and capacity an operator changed (`raftsched node update`)
        if n.label_overrides or n.labels_removed or n.cpu_override or n.memory_override:
            print(runtimecfg.node_text(n))
    return EXIT_OK


def cmd_leader(args: argparse.Namespace, client: Client) -> int:
    st = client.status()
    if args.json:
        dump_json({"leader_id": st.leader_id, "leader_address": st.leader_address, "term": st.term,
                   "commit_index": st.commit_index, "answered_by": st.node_id,
                   "freshness": freshness_json(client)})
    elif not st.leader_id:
        print("no leader elected yet")
        return EXIT_UNAVAILABLE
    else:
        print(f"{st.leader_id} {st.leader_address} term {st.term} commit index {st.commit_index}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from raftsched.dev.demo import run_demo

    return run_demo(args.config, args.jobs)


# ---- parser -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="raftsched",
        description="raftsched: a Raft-replicated distributed job scheduler.\n\n"
        "Client commands talk to any node: reads are answered from that node's replica,\n"
        "writes are forwarded to the leader. By default the nodes of --config are tried\n"
        "in turn; --node HOST:PORT picks one.\n\n" + globalflags.GLOBAL_NOTE,
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    p.add_argument("--config", default=os.environ.get("RAFTSCHED_CONFIG", "cluster.toml"),
                   help="cluster config file (default: cluster.toml or $RAFTSCHED_CONFIG)")
    p.add_argument("--node", action="append", metavar="HOST:PORT",
                   help="gRPC address of a node to talk to (repeatable)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--consistent", action="store_true",
                   help="reads (status, list, nodes, leader) are linearizable: confirmed through the "
                   "leader, UNAVAILABLE when none is reachable (default: the answering node's "
                   "replica, with a warning when it may be stale)")
    p.add_argument("--timeout", dest="rpc_timeout", type=float, default=20.0,
                   help="seconds to keep retrying a call (default 20)")
    p.add_argument("--token", help=f"ACL token (default: ${TOKEN_ENV}, else the local cluster's "
                   "<data_dir>/acl/bootstrap.token)")
    g = p.add_argument_group(
        "TLS", "Nodes speak mutual TLS. Without these flags (or $RAFTSCHED_CA/CERT/KEY) the CLI uses\n"
        "<data_dir>/tls/{ca,client,client-key}.pem of --config (a local cluster makes them).")
    g.add_argument("--ca", help="cluster CA certificate (PEM)")
    g.add_argument("--cert", help="client certificate (PEM)")
    g.add_argument("--key", help="client private key (PEM)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    nodeops.register(sub, fmt, cmd_node)  # `node --id n1` runs a node; `node drain ID`, ...

    cp = sub.add_parser("cluster", help="manage a local cluster")
    csub = cp.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)
    up = csub.add_parser("up", help="start every node of --config on this machine; Ctrl-C stops")
    up.set_defaults(func=cmd_cluster_up, needs_client=False)

    sp = sub.add_parser(
        "submit", help="submit a job", formatter_class=fmt,
        description="Submit a job. The command is an argv list, run without a shell:\n"
        "  raftsched submit -- python3 -c 'print(42)'\n"
        "With --shell the words are joined and run by /bin/sh -c:\n"
        "  raftsched submit --shell -- 'echo hi | tr a-z A-Z'",
        epilog=EXIT_CODES_HELP)
    add_spec_flags(sp)
    sp.add_argument("--count", type=int, default=1, help="submit N copies as one batch")
    sp.add_argument("--wait", action="store_true", help="wait until the job(s) finish; exit 1 "
                    "unless all succeeded")
    add_policy_flags(sp)
    sp.set_defaults(func=cmd_submit, needs_client=True, needs_command=True)

    sp = sub.add_parser("status", help="show one job", epilog=EXIT_CODES_HELP,
                        formatter_class=fmt)
    sp.add_argument("job_id")
    sp.set_defaults(func=cmd_status, needs_client=True)

    sp = sub.add_parser("nodes", help="nodes: health, Raft role, load, applied index, digest")
    sp.set_defaults(func=cmd_nodes, needs_client=True)

    sp = sub.add_parser("leader", help="show the current Raft leader")
    sp.set_defaults(func=cmd_leader, needs_client=True)

    for module in (bulk, listing, observe, workflows, dag, dlq, placement, acl, tlscmd, pytasks,
                   operator):
        module.register(sub, fmt)

    audit.register(sub, fmt)
    sp = sub.add_parser("demo", help="start the local cluster, run a workload, stop")
    sp.add_argument("--jobs", type=int, default=60, help="number of jobs (default 60)")
    sp.set_defaults(func=cmd_demo, needs_client=False)
    globalflags.propagate(p)  # global flags before or after the subcommand
    return p


def connect(args: argparse.Namespace) -> Client:
    """A client for the nodes of --node or --config, with the TLS files found by `discover`
    and the token found by `discover_token`."""
    cfg = None
    try:
        cfg = configmod.load(args.config)
    except configmod.ConfigError:
        if not args.node:
            raise
    addrs = list(args.node) if args.node else [n.grpc for n in cfg.nodes]  # type: ignore[union-attr]
    try:
        tls = discover(args.ca, args.cert, args.key, cfg.data_dir if cfg else None,
                       cfg.tls if cfg else True)
    except ValueError as e:
        raise configmod.ConfigError(str(e)) from None
    token = discover_token(args.token, cfg.data_dir if cfg else None)
    client = Client(addrs, timeout=args.rpc_timeout, tls=tls, token=token, fail_fast=True)
    client.consistent = bool(getattr(args, "consistent", False))
    client.on_stale = _warn_stale()
    return client


def _warn_stale() -> Callable[[dict[str, Any]], None]:
    """Print the stale warning of an answer on stderr (once per node and command)."""
    warned: set[str] = set()

    def warn(fresh: dict[str, Any]) -> None:
        text = stale_warning(fresh)
        if text and fresh.get("node", "") not in warned:
            warned.add(fresh.get("node", ""))
            print(text, file=sys.stderr)

    return warn


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # the reader went away (`raftsched list | head`): no traceback, and no second
        # error when Python flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if not args.needs_client:
            return int(args.func(args) or 0)
        with connect(args) as client:
            try:
                return int(args.func(args, client) or 0)
            except (grpc.RpcError, NoNodeReachable) as e:
                unavailable = isinstance(e, NoNodeReachable) or e.code() == grpc.StatusCode.UNAVAILABLE
                if unavailable and client.tls is None:
                    print("raftsched: no TLS files found (--ca/--cert/--key, $RAFTSCHED_CA..., or "
                          "<data_dir>/tls of --config): a TLS node refuses plaintext", file=sys.stderr)
                raise
    except UsageError as e:
        getattr(args, "usage_parser", parser).error(str(e))  # exits 2 with the command's usage line
    except configmod.ConfigError as e:
        print(f"raftsched: config: {e}", file=sys.stderr)
        return EXIT_USAGE
    except NoNodeReachable as e:
        print(f"raftsched: UNAVAILABLE: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except grpc.RpcError as e:
        print(f"raftsched: {e.code().name}: {e.details()}", file=sys.stderr)
        return exit_code_of(e)
    except KeyboardInterrupt:
        return 130
    return EXIT_USAGE
