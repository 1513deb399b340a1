"""CLI: `raftsched template ...` and `raftsched cron ...`."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from raftsched.cli.common import EXIT_CODES_HELP, EXIT_OK, EXIT_USAGE, add_spec_flags, reparse, spec_from_args
from raftsched.cli.format import dump_json, message_dict, table
from raftsched.client.client import Client
from raftsched.client.workflows_client import WorkflowsClient
from raftsched.core import cron as cronmod
from raftsched.v1 import workflows_pb2 as wpb

MISFIRE = {"skip": wpb.MISFIRE_SKIP, "run_once": wpb.MISFIRE_RUN_ONCE, "run_all": wpb.MISFIRE_RUN_ALL}
CONCURRENCY = {"allow": wpb.CONCURRENCY_ALLOW, "forbid": wpb.CONCURRENCY_FORBID,
               "replace": wpb.CONCURRENCY_REPLACE}


def workflows_client(client: Client) -> WorkflowsClient:
    return WorkflowsClient(client.addresses, client.timeout, tls=client.tls, token=client.token,
                           fail_fast=client.fail_fast)


def as_dict(msg: Any) -> dict[str, Any]:
    return message_dict(msg)


def _when(t: float, tz: str = "") -> str:
    if not t:
        return "-"
    try:
        return cronmod.iso(t, cronmod.zone(tz or "UTC"))
    except cronmod.CronError:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))


# ---- template ---------------------------------------------------------------------


def _template_msg(args: argparse.Namespace) -> wpb.Template:
    return wpb.Template(name=args.template_name, spec=spec_from_args(args), cron=args.cron or "",
                        timezone=args.tz or "", description=args.description or "")


def _print_template(t: wpb.Template) -> None:
    s = t.spec
    cmd = s.shell if s.use_shell else " ".join(s.command)
    print(f"template   {t.name} (version {t.version})")
    print(f"command    {cmd}{' (shell)' if s.use_shell else ''}")
    print(f"resources  cpu {s.resources.cpu_millis}m  memory {s.resources.memory_mib} MiB  "
          f"priority {s.priority}  timeout {s.timeout_seconds:g}s")
    if s.env:
        print("env        " + " ".join(f"{k}={v}" for k, v in sorted(s.env.items())))
    if t.cron:
        print(f"schedule   {t.cron} ({t.timezone or 'UTC'})")
    if t.description:
        print(f"about      {t.description}")


def cmd_template_put(args: argparse.Namespace, client: Client) -> int:
    args = reparse(args, "template_name")
    method = "CreateTemplate" if args.template_command == "create" else "UpdateTemplate"
    with workflows_client(client) as wc:
        t = wc.call(method, wpb.PutTemplateRequest(template=_template_msg(args)))
    if args.json:
        dump_json(as_dict(t))
    else:
        print(f"{t.name} version {t.version}")
    return EXIT_OK


def cmd_template_get(args: argparse.Namespace, client: Client) -> int:
    with workflows_client(client) as wc:
        t = wc.call("GetTemplate", wpb.GetTemplateRequest(name=args.template_name))
    if args.json:
        dump_json(as_dict(t))
    else:
        _print_template(t)
    return EXIT_OK


def cmd_template_list(args: argparse.Namespace, client: Client) -> int:
    with workflows_client(client) as wc:
        ts = list(wc.call("ListTemplates", wpb.ListTemplatesRequest()).templates)
    if args.json:
        dump_json({"templates": [as_dict(t) for t in ts]})
        return EXIT_OK
    rows = [[t.name, str(t.version), t.spec.shell if t.spec.use_shell else " ".join(t.spec.command),
             t.cron or "-", t.description] for t in ts]
    print(table(rows, ["NAME", "VERSION", "COMMAND", "CRON", "DESCRIPTION"]))
    return EXIT_OK


def cmd_template_delete(args: argparse.Namespace, client: Client) -> int:
    with workflows_client(client) as wc:
        wc.call("DeleteTemplate", wpb.DeleteTemplateRequest(name=args.template_name))
    print(f"deleted {args.template_name}")
    return EXIT_OK


def cmd_template_submit(args: argparse.Namespace, client: Client) -> int:
    args = reparse(args, "template_name")
    o = wpb.SpecOverrides()
    command = list(args.command)
    if command:
        if args.shell:
            o.shell = " ".join(command)
        else:
            o.command.extend(command)
    for kv in args.env or []:
        if "=" not in kv:
            print(f"raftsched: --env {kv!r}: expected NAME=VALUE", file=sys.stderr)
            return EXIT_USAGE
        k, v = kv.split("=", 1)
        o.env[k] = v
    for flag, field in (("cwd", "working_dir"), ("cpu", "cpu_millis"), ("mem", "memory_mib"),
                        ("priority", "priority"), ("timeout", "timeout_seconds"), ("name", "name")):
        v = getattr(args, flag)
        if v is not None:
            setattr(o, field, v)
    with workflows_client(client) as wc:
        r = wc.call("SubmitFromTemplate",
                    wpb.SubmitFromTemplateRequest(template=args.template_name, overrides=o))
    if args.json:
        dump_json(as_dict(r))
    else:
        print(r.job_id)
    return EXIT_OK


# ---- cron -------------------------------------------------------------------------


def _time_arg(text: str | None, tz: str) -> float:
    if not text:
        return 0.0
    return cronmod.parse_time(text, cronmod.zone(tz or "UTC"))


def cmd_cron_add(args: argparse.Namespace, client: Client) -> int:
    args = reparse(args, "expr")
    command = list(args.command)
    try:
        start = _time_arg(args.start, args.tz)
        end = _time_arg(args.end, args.tz)
    except cronmod.CronError as e:
        print(f"raftsched: {e}", file=sys.stderr)
        return EXIT_USAGE
    s = wpb.Schedule(
        id=args.id or "", cron=args.expr or "", timezone=args.tz or "", template=args.template or "",
        start=start, end=end, misfire=MISFIRE[args.misfire], concurrency=CONCURRENCY[args.concurrency],
        misfire_threshold_seconds=args.misfire_threshold or 0.0,
        misfire_deadline_seconds=args.misfire_deadline or 0.0, paused=args.paused,
    )
    if command:
        s.spec.CopyFrom(spec_from_args(args))
    with workflows_client(client) as wc:
        got = wc.add_schedule(s)
    if args.json:
        dump_json(as_dict(got))
    else:
        print(f"{got.id} next {_when(got.next_fire, got.timezone)}")
    return EXIT_OK


def cmd_cron_list(args: argparse.Namespace, client: Client) -> int:
    with workflows_client(client) as wc:
        ss = list(wc.call("ListSchedules", wpb.ListSchedulesRequest()).schedules)
    if args.json:
        dump_json({"schedules": [as_dict(s) for s in ss]})
        return EXIT_OK
    rows = [[s.id, s.cron, s.timezone, "paused" if s.paused else "active",
             _when(s.next_fire, s.timezone), str(s.runs), str(s.skipped), s.last_job_id or "-"]
            for s in ss]
    print(table(rows, ["ID", "CRON", "TZ", "STATE", "NEXT", "RUNS", "SKIPPED", "LAST JOB"]))
    return EXIT_OK


def cmd_cron_simple(args: argparse.Namespace, client: Client) -> int:
    method = {"pause": "PauseSchedule", "resume": "ResumeSchedule", "delete": "DeleteSchedule",
              "run": "RunScheduleNow", "get": "GetSchedule"}[args.cron_command]
    with workflows_client(client) as wc:
        r = wc.call(method, wpb.ScheduleRef(id=args.schedule_id))
    if args.json:
        dump_json(as_dict(r))
    elif args.cron_command == "run":
        print(r.job_id)
    elif args.cron_command == "delete":
        print(f"deleted {args.schedule_id}")
    else:
        print(f"{r.id} {'paused' if r.paused else 'active'} next {_when(r.next_fire, r.timezone)}")
    return EXIT_OK


def cmd_cron_next(args: argparse.Namespace, client: Client) -> int:
    req = wpb.NextFireTimesRequest(count=args.count)
    if args.expr:
        req.cron, req.timezone = args.expr, args.tz or "UTC"
        if args.schedule_id:
            print("raftsched: give a schedule id or --cron, not both", file=sys.stderr)
            return EXIT_USAGE
    elif args.schedule_id:
        req.id = args.schedule_id
    else:
        print("raftsched: give a schedule id or --cron EXPR", file=sys.stderr)
        return EXIT_USAGE
    with workflows_client(client) as wc:
        r = wc.call("NextFireTimes", req)
    if args.json:
        dump_json({"times": list(r.times), "local": list(r.local)})
    else:
        for t, loc in zip(r.times, r.local, strict=True):
            print(f"{loc}  ({t:.0f})")
    return EXIT_OK


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    tp = sub.add_parser("template", help="named job templates", formatter_class=fmt,
                        epilog=EXIT_CODES_HELP)
    tsub = tp.add_subparsers(dest="template_command", metavar="ACTION", required=True)
    for action in ("create", "update"):
        p = tsub.add_parser(action, help=f"{action} a template (update replaces it whole)",
                            formatter_class=fmt,
                            description=f"Example: raftsched template {action} backup --cpu 200 "
                            "-- /usr/bin/backup --all")
        p.add_argument("template_name", metavar="NAME")
        p.add_argument("--cron", help="default schedule for `cron add --template`")
        p.add_argument("--tz", help="IANA timezone of --cron (default UTC)")
        p.add_argument("--description")
        add_spec_flags(p)
        p.set_defaults(func=cmd_template_put, needs_client=True, own_parser=p)
    for action, fn, helptext in (("get", cmd_template_get, "show a template"),
                                 ("delete", cmd_template_delete, "delete a template")):
        p = tsub.add_parser(action, help=helptext)
        p.add_argument("template_name", metavar="NAME")
        p.set_defaults(func=fn, needs_client=True)
    p = tsub.add_parser("list", help="list templates")
    p.set_defaults(func=cmd_template_list, needs_client=True)
    p = tsub.add_parser("submit", help="submit a job from a template, with overrides",
                        formatter_class=fmt,
                        description="Flags given override the template; --env is merged.\n"
                        "Example: raftsched template submit backup --priority 10 --env DRY=1")
    p.add_argument("template_name", metavar="NAME")
    p.add_argument("--shell", action="store_true", help="the override command is a shell string")
    p.add_argument("--cpu", type=int)
    p.add_argument("--mem", type=int)
    p.add_argument("--priority", type=int)
    p.add_argument("--timeout", type=float)
    p.add_argument("--env", action="append", metavar="NAME=VALUE")
    p.add_argument("--cwd")
    p.add_argument("--name")
    p.add_argument("command", nargs=argparse.REMAINDER, help="override command (after --)")
    p.set_defaults(func=cmd_template_submit, needs_client=True, own_parser=p)

    cp = sub.add_parser(
        "cron", help="cron schedules", formatter_class=fmt, epilog=EXIT_CODES_HELP,
        description="Cron schedules, fired by the Raft leader exactly once per instant.\n"
        "Expressions: 5 fields 'min hour dom month dow', 6 with a leading seconds field,\n"
        "or @yearly @monthly @weekly @daily @hourly. Timezones are IANA names; a wall\n"
        "time skipped by a spring-forward fires once at the end of the gap, a wall time\n"
        "repeated by a fall-back fires once, at its first occurrence.")
    csub = cp.add_subparsers(dest="cron_command", metavar="ACTION", required=True)
    p = csub.add_parser("add", help="add a schedule", formatter_class=fmt,
                        description="Examples:\n"
                        "  raftsched cron add '*/5 * * * *' --id tidy -- /usr/bin/tidy\n"
                        "  raftsched cron add @daily --tz Europe/Berlin --template backup\n"
                        "  raftsched cron add '*/10 * * * * *' --misfire run_all -- date")
    p.add_argument("expr", nargs="?", help="cron expression (default: the template's)")
    p.add_argument("--id", help="schedule id (default: generated)")
    p.add_argument("--tz", help="IANA timezone (default UTC or the template's)")
    p.add_argument("--template", help="run this template's spec")
    p.add_argument("--start", help="no fire before this time (ISO 8601 in --tz, or epoch seconds)")
    p.add_argument("--end", help="no fire after this time")
    p.add_argument("--misfire", choices=sorted(MISFIRE), default="skip",
                   help="instants missed while no leader could fire (default skip)")
    p.add_argument("--misfire-threshold", type=float,
                   help="seconds late after which an instant counts as missed (default 1)")
    p.add_argument("--misfire-deadline", type=float,
                   help="run_once/run_all: older missed instants are dropped (default 3600)")
    p.add_argument("--concurrency", choices=sorted(CONCURRENCY), default="allow",
                   help="when the previous run is unfinished (default allow)")
    p.add_argument("--paused", action="store_true", help="create paused")
    add_spec_flags(p)
    p.set_defaults(func=cmd_cron_add, needs_client=True, own_parser=p)
    p = csub.add_parser("list", help="list schedules")
    p.set_defaults(func=cmd_cron_list, needs_client=True)
    for action, helptext in (("get", "show a schedule"), ("pause", "pause a schedule"),
                             ("resume", "resume (instants passed while paused are not fired)"),
                             ("delete", "delete a schedule (its jobs stay)"),
                             ("run", "run the schedule's job now")):
        p = csub.add_parser(action, help=helptext)
        p.add_argument("schedule_id", metavar="ID")
        p.set_defaults(func=cmd_cron_simple, needs_client=True)
    p = csub.add_parser("next", help="show the coming fire times",
                        description="raftsched cron next ID, or raftsched cron next --cron EXPR --tz TZ")
    p.add_argument("schedule_id", metavar="ID", nargs="?")
    p.add_argument("--cron", dest="expr", help="an expression instead of a schedule")
    p.add_argument("--tz", help="timezone of --cron (default UTC)")
    p.add_argument("--count", type=int, default=5, help="how many (default 5)")
    p.set_defaults(func=cmd_cron_next, needs_client=True)
