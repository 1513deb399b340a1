"""`raftsched tls init`: a CA, node and client certificates for a config; `tls node ID`:
a certificate for a node to add (issue 15)."""

from __future__ import annotations

import argparse
import sys

from raftsched import config as configmod
from raftsched.cli.common import EXIT_OK, EXIT_USAGE


def cmd_tls_init(args: argparse.Namespace) -> int:
    from raftsched.node import certs

    cfg = configmod.load(args.config)
    clients = tuple(args.client or ["client"])
    made = certs.init(cfg, clients=clients, force=args.force)
    d = certs.tls_dir(cfg)
    if not made:
        print(f"{d}: every certificate already exists (--force re-issues them)", file=sys.stderr)
    for path in made:
        print(path)
    print(f"\nCopy {d}/ca.pem, <node>.pem and <node>-key.pem to each node's {d}/ (mode 0600);\n"
          f"clients need ca.pem and a client certificate: raftsched --ca {d}/ca.pem "
          f"--cert {d}/{clients[0]}.pem --key {d}/{clients[0]}-key.pem ...\n"
          f"Keep {d}/ca-key.pem off the nodes if you can: it mints node identities.",
          file=sys.stderr)
    return EXIT_OK


def cmd_tls_node(args: argparse.Namespace) -> int:
    from raftsched.core.members import ID_RE
    from raftsched.node import certs

    if not ID_RE.match(args.node_id):
        print(f"raftsched: node id {args.node_id!r}: letters, digits or '-'", file=sys.stderr)
        return EXIT_USAGE
    cfg = configmod.load(args.config)
    try:
        made = certs.issue_node(cfg, args.node_id, list(args.host or []), force=args.force)
    except FileNotFoundError as e:
        print(f"raftsched: {e}", file=sys.stderr)
        return EXIT_USAGE
    d = certs.tls_dir(cfg)
    if not made:
        print(f"{d}/{args.node_id}.pem already exists (--force re-issues it)", file=sys.stderr)
    for path in made:
        print(path)
    print(f"\nCopy {d}/ca.pem, {args.node_id}.pem and {args.node_id}-key.pem to the new node's "
          f"{d}/ (mode 0600), then: raftsched operator members add {args.node_id} ...",
          file=sys.stderr)
    return EXIT_OK


def register(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    tp = sub.add_parser("tls", help="certificates for mutual TLS")
    tsub = tp.add_subparsers(dest="tls_command", metavar="ACTION", required=True)
    sp = tsub.add_parser(
        "init", formatter_class=fmt,
        help="create the cluster CA, a certificate per node of --config and a client certificate",
        description="Create <data_dir>/tls/: ca.pem + ca-key.pem (kept if present), <node>.pem +\n"
        "<node>-key.pem for every node (common name node:<id>, the node's gRPC host as\n"
        "subject alternative name), client.pem + client-key.pem. Keys are 0600.")
    sp.add_argument("--client", action="append", metavar="NAME",
                    help="client certificate names to issue (repeatable; default: client)")
    sp.add_argument("--force", action="store_true", help="re-issue node and client certificates")
    sp.set_defaults(func=cmd_tls_init, needs_client=False)
    sp = tsub.add_parser(
        "node", formatter_class=fmt,
        help="issue a certificate for a new node (not in --config) from the cluster CA",
        description="Issue <data_dir>/tls/<ID>.pem + <ID>-key.pem (common name node:<ID>) from\n"
        "the existing CA, for a node to add with `raftsched operator members add ID ...`.\n"
        "Example: raftsched --config cluster.toml tls node n4 --host 10.0.0.4")
    sp.add_argument("node_id", metavar="ID")
    sp.add_argument("--host", action="append", metavar="HOST",
                    help="its gRPC host name or IP (subject alternative name; repeatable)")
    sp.add_argument("--force", action="store_true", help="re-issue it")
    sp.set_defaults(func=cmd_tls_node, needs_client=False)
