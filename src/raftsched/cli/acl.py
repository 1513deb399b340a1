"""CLI for access control: `raftsched acl bootstrap|whoami|token ...|quota ...`."""

from __future__ import annotations

import argparse
from typing import Any

from raftsched.cli.common import EXIT_CODES_HELP, EXIT_OK
from raftsched.cli.format import dump_json, fmt_ts, message_dict, table
from raftsched.client.acl_client import AclClient
from raftsched.client.client import Client

ROLES = ["admin", "operator", "submitter", "reader"]


def _acl(client: Client) -> AclClient:
    return AclClient(client.addresses, client.timeout, tls=client.tls, token=client.token,
                     fail_fast=client.fail_fast)


def _d(msg: Any) -> dict[str, Any]:
    return message_dict(msg)


def _print_token(args: argparse.Namespace, secret: str, info: Any) -> None:
    if args.json:
        dump_json({"token": secret, **_d(info)})
        return
    print(secret)
    print(f"# token {info.name!r}: role {info.role}, namespaces {', '.join(info.namespaces)}; "
          "the secret is shown only now (the cluster keeps its hash)")


def cmd_bootstrap(args: argparse.Namespace, client: Client) -> int:
    with _acl(client) as ac:
        secret, info = ac.bootstrap()
    _print_token(args, secret, info)
    return EXIT_OK


def cmd_whoami(args: argparse.Namespace, client: Client) -> int:
    with _acl(client) as ac:
        info = ac.whoami()
    if args.json:
        dump_json(_d(info))
    else:
        print(f"{info.name or '(ACLs off)'} role {info.role} namespaces {', '.join(info.namespaces)}")
    return EXIT_OK


def cmd_token_create(args: argparse.Namespace, client: Client) -> int:
    with _acl(client) as ac:
        secret, info = ac.create_token(args.name, args.role, args.namespace or ["default"])
    _print_token(args, secret, info)
    return EXIT_OK


def cmd_token_list(args: argparse.Namespace, client: Client) -> int:
    with _acl(client) as ac:
        tokens = ac.tokens()
    if args.json:
        dump_json({"tokens": [_d(t) for t in tokens]})
        return EXIT_OK
    rows = [[t.name, t.role, ",".join(t.namespaces), fmt_ts(t.created_at), t.created_by or "-"]
            for t in tokens]
    print(table(rows, ["NAME", "ROLE", "NAMESPACES", "CREATED", "BY"]))
    return EXIT_OK


def cmd_token_revoke(args: argparse.Namespace, client: Client) -> int:
    with _acl(client) as ac:
        for name in args.names:
            ac.revoke(name)
            if not args.json:
                print(f"revoked {name}")
    if args.json:
        dump_json({"revoked": args.names})
    return EXIT_OK


def cmd_quota_set(args: argparse.Namespace, client: Client) -> int:
    with _acl(client) as ac:
        q = ac.set_quota(args.namespace, args.cpu, args.mem, args.pending)
    if args.json:
        dump_json(_d(q))
    else:
        print(f"{q.namespace}: cpu {q.max_cpu_millis}m memory {q.max_memory_mib}Mi "
              f"pending {q.max_pending} (0 = unlimited)")
    return EXIT_OK


def cmd_quota_list(args: argparse.Namespace, client: Client) -> int:
    with _acl(client) as ac:
        quotas = ac.quotas()
    if args.json:
        dump_json({"quotas": [_d(q) for q in quotas]})
        return EXIT_OK
    rows = [[q.namespace, str(q.max_cpu_millis), str(q.max_memory_mib), str(q.max_pending)]
            for q in quotas]
    print(table(rows, ["NAMESPACE", "CPU_MILLIS", "MEMORY_MIB", "PENDING"]))
    return EXIT_OK


def cmd_namespace_set(args: argparse.Namespace, client: Client) -> int:
    with _acl(client) as ac:
        p = ac.set_namespace_policy(args.namespace, args.run_as or [])
    if args.json:
        dump_json(_d(p))
    else:
        print(f"{p.namespace}: jobs may run as {', '.join(p.run_as) or '(only the node user)'}")
    return EXIT_OK


def cmd_namespace_list(args: argparse.Namespace, client: Client) -> int:
    with _acl(client) as ac:
        policies = ac.namespace_policies()
    if args.json:
        dump_json({"policies": [_d(p) for p in policies]})
        return EXIT_OK
    print(table([[p.namespace, ",".join(p.run_as)] for p in policies], ["NAMESPACE", "RUN_AS"]))
    return EXIT_OK


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    p = sub.add_parser(
        "acl", help="tokens, roles, namespaces and quotas", formatter_class=fmt, epilog=EXIT_CODES_HELP,
        description="Access control. Every client call carries a token (--token, RAFTSCHED_TOKEN,\n"
        "or <data_dir>/acl/bootstrap.token of a local cluster). Roles: admin (everything),\n"
        "operator (submitter + retry dead jobs, pause/run schedules), submitter (submit, read,\n"
        "cancel in its namespaces), reader (read only). See docs/security.md.")
    asub = p.add_subparsers(dest="acl_command", metavar="ACTION", required=True)
    sp = asub.add_parser("bootstrap", help="create the first management token (once per cluster)")
    sp.set_defaults(func=cmd_bootstrap, needs_client=True)
    sp = asub.add_parser("whoami", help="show the token in use")
    sp.set_defaults(func=cmd_whoami, needs_client=True)

    tp = asub.add_parser("token", help="create, list, revoke tokens (admin)")
    tsub = tp.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    sp = tsub.add_parser("create", help="create a token; prints its secret once")
    sp.add_argument("--name", required=True, help="unique name, recorded in job history")
    sp.add_argument("--role", required=True, choices=ROLES)
    sp.add_argument("--namespace", action="append", metavar="NS",
                    help="namespace the token may use (repeatable; '*' = all; default: default)")
    sp.set_defaults(func=cmd_token_create, needs_client=True)
    sp = tsub.add_parser("list", help="list tokens (names and roles, never secrets)")
    sp.set_defaults(func=cmd_token_list, needs_client=True)
    sp = tsub.add_parser("revoke", help="revoke tokens: refused on every node from the commit on")
    sp.add_argument("names", nargs="+", metavar="NAME")
    sp.set_defaults(func=cmd_token_revoke, needs_client=True)

    qp = asub.add_parser("quota", help="per-namespace quotas")
    qsub = qp.add_subparsers(dest="quota_command", metavar="ACTION", required=True)
    sp = qsub.add_parser("set", help="set a namespace's limits (0 = unlimited; all 0 removes)")
    sp.add_argument("namespace")
    sp.add_argument("--cpu", type=int, default=0, help="millicores requested by unfinished jobs")
    sp.add_argument("--mem", type=int, default=0, help="MiB requested by unfinished jobs")
    sp.add_argument("--pending", type=int, default=0, help="PENDING jobs")
    sp.set_defaults(func=cmd_quota_set, needs_client=True)
    sp = qsub.add_parser("list", help="list quotas")
    sp.set_defaults(func=cmd_quota_list, needs_client=True)
    np = asub.add_parser("namespace", help="per-namespace policies: users jobs may run as")
    nsub = np.add_subparsers(dest="namespace_command", metavar="ACTION", required=True)
    sp = nsub.add_parser("set", help="set the users a namespace's jobs may run as (submit "
                         "--run-as); replaces the list, none given: none allowed")
    sp.add_argument("namespace")
    sp.add_argument("--run-as", action="append", metavar="USER",
                    help="a user its jobs may run as (repeatable); each node must allow it too "
                    "(allowed_run_as in its [[nodes]] table)")
    sp.set_defaults(func=cmd_namespace_set, needs_client=True)
    sp = nsub.add_parser("list", help="list namespace policies")
    sp.set_defaults(func=cmd_namespace_list, needs_client=True)
    for leaf in [*asub.choices.values(), *tsub.choices.values(), *qsub.choices.values(),
                 *nsub.choices.values()]:
        if leaf.get_default("func"):  # `--json` after the action too
            leaf.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                              help="print machine-readable JSON")
