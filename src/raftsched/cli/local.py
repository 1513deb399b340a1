"""Commands that run processes on this machine: `node` (one node) and `cluster up`
(every node of a local cluster config)."""

from __future__ import annotations

import argparse
import sys

from raftsched import config as configmod
from raftsched.cli.common import EXIT_OK, UsageError, stop_on_signals


def cmd_node(args: argparse.Namespace) -> int:
    import asyncio

    from raftsched import logs
    from raftsched.node.runtime import serve

    if not args.id:
        raise UsageError("--id is required to run a node (or: node drain ID, node eligibility ID)")
    cfg = configmod.load(args.config)
    join = getattr(args, "join", None) or ""
    if not join and not (cfg.node_data_dir(args.id) / "members.json").exists():
        cfg.node(args.id)  # fail early on an unknown id (a joined node knows it from its data dir)
    logs.configure(args.log_format or cfg.log_format, args.log_level or cfg.log_level,
                   node=args.id)
    asyncio.run(serve(cfg, args.id, join))
    return EXIT_OK


def cmd_cluster_up(args: argparse.Namespace) -> int:
    from raftsched.dev.launcher import LocalCluster

    cfg = configmod.load(args.config)
    cluster = LocalCluster(cfg)
    print(f"starting {len(cfg.nodes)} nodes from {cfg.path} (Ctrl-C stops them)", file=sys.stderr)
    stop_on_signals()  # SIGTERM too: never leave the nodes behind
    cluster.start()
    try:
        return cluster.wait()
    except KeyboardInterrupt:
        print("\nstopping nodes...", file=sys.stderr)
        return EXIT_OK
    finally:
        cluster.stop()
