"""`raftsched operator`: running a cluster. `snapshot save|inspect|restore`: backup and
restore of the replicated state (docs/operations.md, "Backup and restore")."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from typing import Any

from raftsched import config as configmod
from raftsched.cli import members as members_cli
from raftsched.cli import runtimecfg
from raftsched.cli.common import EXIT_CODES_HELP, EXIT_OK, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE
from raftsched.cli.format import dump_json
from raftsched.client import backup
from raftsched.client.client import Client


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _summary(h: dict[str, Any], path: str) -> dict[str, Any]:
    return {"file": path, "size_bytes": os.path.getsize(path), **h}


def _print(h: dict[str, Any], path: str) -> None:
    created = datetime.datetime.fromtimestamp(h["created_at"], datetime.UTC).isoformat(timespec="seconds")
    rows = [
        ("file", path), ("size", _size(os.path.getsize(path))),
        ("cluster", f"{h['cluster_name']} (nodes {', '.join(h['node_ids'])})"),
        ("from node", h["node_id"]), ("applied index", h["applied_index"]), ("term", h["term"]),
        ("created", created), ("jobs", h["job_count"]), ("state digest", h["state_digest"]),
        ("state version", h["state_version"]), ("format", f"{h['format_version']} ({h['encoding']})"),
        ("payload", f"{h['payload_bytes']} bytes, sha256 {h['payload_sha256']} (verified)"),
    ]
    for k, v in rows:
        print(f"{k + ':':15} {v}")


def cmd_save(args: argparse.Namespace, client: Client) -> int:
    consistent = bool(getattr(args, "consistent", False))
    try:
        h = client.save_snapshot(args.file, consistent=consistent, timeout=max(600.0, client.timeout))
    except backup.BackupError as e:  # the payload did not match the node's checksum
        print(f"raftsched: {e}; nothing saved, retry", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except OSError as e:
        print(f"raftsched: cannot write {args.file}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        dump_json(_summary(h, args.file))
    else:
        print(f"saved {args.file}: applied index {h['applied_index']}, {h['job_count']} jobs, "
              f"digest {h['state_digest']}, {_size(os.path.getsize(args.file))}, "
              f"from node {h['node_id']}{' (consistent)' if consistent else ''}")
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    try:
        h = backup.verify(args.file)
    except backup.BackupError as e:
        print(f"raftsched: {e}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        dump_json(_summary(h, args.file))
    else:
        _print(h, args.file)
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from raftsched.replica.restore import RestoreError, seed

    cfg = configmod.load(args.config)
    try:
        h, state = backup.load(args.file)
        written = seed(cfg, state, h["applied_index"], h["state_digest"], force=args.force)
    except (backup.BackupError, RestoreError) as e:
        print(f"raftsched: restore refused, nothing written: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as e:
        print(f"raftsched: restore failed writing {e.filename}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        dump_json({**_summary(h, args.file), "written": [str(p) for p in written]})
        return EXIT_OK
    print(f"restored {args.file} (applied index {h['applied_index']}, {h['job_count']} jobs, "
          f"digest {h['state_digest']}) into {len(written)} nodes of {cfg.path}:")
    for p in written:
        print(f"  {p}")
    print("start the nodes; they begin at that index. Attempts that were running are "
          "returned to PENDING when their node registers (docs/operations.md).")
    return EXIT_OK


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser(
        "operator", help="run a cluster: members, backup and restore, runtime settings",
        formatter_class=fmt,
        epilog=EXIT_CODES_HELP,
        description="Operating a cluster (docs/operations.md).")
    osub = p.add_subparsers(dest="operator_command", metavar="ACTION", required=True)
    sp = osub.add_parser("snapshot", help="back up / restore the replicated state")
    ssub = sp.add_subparsers(dest="snapshot_command", metavar="ACTION", required=True)
    s = ssub.add_parser(
        "save", help="save a snapshot of the state from a node (admin token)", formatter_class=fmt,
        description="Save the replicated state as one node has applied it, at one Raft index.\n"
        "Any node serves it (--node picks one). With --consistent the node first waits until\n"
        "it has applied every write acknowledged before the call.\n"
        "Example: raftsched operator snapshot save --consistent backup.rsb")
    s.add_argument("file", help="file to write (replaced atomically)")
    s.set_defaults(func=cmd_save, needs_client=True)
    s = ssub.add_parser("inspect", help="verify a backup's checksum and print its header (offline)")
    s.add_argument("file")
    s.set_defaults(func=cmd_inspect, needs_client=False)
    s = ssub.add_parser(
        "restore", help="seed a fresh cluster's data dirs from a backup (offline, nodes stopped)",
        formatter_class=fmt,
        description="Write every node of --config a Raft snapshot holding the backup's state at\n"
        "its applied index; start the nodes afterwards. Refused (nothing written) if the\n"
        "checksum fails or a node's data dir already holds a Raft journal or snapshot\n"
        "(--force replaces them: only with every node stopped).\n"
        "Example: raftsched --config new-cluster.toml operator snapshot restore backup.rsb")
    s.add_argument("file")
    s.add_argument("--force", action="store_true",
                   help="replace existing Raft journals/snapshots in the data dirs")
    s.set_defaults(func=cmd_restore, needs_client=False)
    runtimecfg.register_operator(osub, fmt)
    members_cli.register(osub, fmt)
