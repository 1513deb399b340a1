"""CLI: `raftsched dag submit|status|cancel` (DAG workflows from a TOML file)."""

from __future__ import annotations

import argparse
import sys
import tomllib
from typing import Any

from raftsched.cli.common import EXIT_CODES_HELP, EXIT_JOB_FAILED, EXIT_OK, EXIT_USAGE
from raftsched.cli.format import dump_json, table
from raftsched.cli.workflows import as_dict, workflows_client
from raftsched.client.client import Client
from raftsched.v1 import jobs_pb2
from raftsched.v1 import workflows_pb2 as wpb


class DagFileError(ValueError):
    pass


def workflow_from_toml(text: str) -> wpb.SubmitWorkflowRequest:
    """Parse a workflow file:

        name = "etl"
        [[jobs]]
        name = "extract"
        command = ["python3", "extract.py"]   # or: shell = "..."
        depends_on = []                         # names of jobs in this file
        cpu_millis = 100                        # optional: memory_mib, env, priority,
                                                # timeout_seconds, working_dir, pool
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DagFileError(f"not valid TOML: {e}") from None
    jobs = doc.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise DagFileError("no [[jobs]] tables: add one per job")
    known = {"name", "command", "shell", "depends_on", "cpu_millis", "memory_mib", "env", "priority",
             "timeout_seconds", "working_dir", "pool"}
    req = wpb.SubmitWorkflowRequest(name=str(doc.get("name", "")))
    for i, j in enumerate(jobs):
        where = f"jobs[{i}]"
        if not isinstance(j, dict):
            raise DagFileError(f"{where} is not a table")
        extra = sorted(set(j) - known)
        if extra:
            raise DagFileError(f"{where}: unknown keys {extra}; known: {sorted(known)}")
        if "name" not in j:
            raise DagFileError(f"{where}: name is missing")
        spec = jobs_pb2.JobSpec(name=str(j["name"]))
        if "shell" in j:
            spec.use_shell, spec.shell = True, str(j["shell"])
        cmd = j.get("command", [])
        if isinstance(cmd, str):
            raise DagFileError(f"{where}: command must be a list of strings (or use shell = '...')")
        spec.command.extend(str(a) for a in cmd)
        spec.resources.cpu_millis = int(j.get("cpu_millis", 100))
        spec.resources.memory_mib = int(j.get("memory_mib", 64))
        spec.env.update({str(k): str(v) for k, v in dict(j.get("env", {})).items()})
        spec.priority = int(j.get("priority", 0))
        spec.timeout_seconds = float(j.get("timeout_seconds", 0.0))
        spec.working_dir = str(j.get("working_dir", ""))
        spec.pool = str(j.get("pool", ""))
        deps = j.get("depends_on", [])
        if isinstance(deps, str):
            deps = [deps]
        req.jobs.append(wpb.WorkflowJobSpec(name=str(j["name"]), spec=spec,
                                            depends_on=[str(d) for d in deps]))
    return req


def cmd_dag_submit(args: argparse.Namespace, client: Client) -> int:
    try:
        with open(args.file, encoding="utf-8") as f:
            req = workflow_from_toml(f.read())
    except (OSError, DagFileError) as e:
        print(f"raftsched: {args.file}: {e}", file=sys.stderr)
        return EXIT_USAGE
    with workflows_client(client) as wc:
        r = wc.call("SubmitWorkflow", req)
    if args.json:
        dump_json(as_dict(r))
    else:
        print(r.workflow_id)
    return EXIT_OK


def cmd_dag_status(args: argparse.Namespace, client: Client) -> int:
    with workflows_client(client) as wc:
        w = wc.workflow(args.workflow_id)
    if args.json:
        dump_json(as_dict(w))
    else:
        print(f"workflow {w.workflow_id} {w.name!r}: {w.state}  "
              + " ".join(f"{k}={v}" for k, v in sorted(w.counts.items())))
        rows = [[j.name, jobs_pb2.JobState.Name(j.job.state), ",".join(
            d.removeprefix(w.workflow_id + "-") for d in j.job.depends_on) or "-",
            j.job.node_id or "-", j.job.reason] for j in w.jobs]
        print(table(rows, ["JOB", "STATE", "DEPENDS ON", "NODE", "REASON"]))
    return EXIT_OK if w.state in ("RUNNING", "SUCCEEDED") else EXIT_JOB_FAILED


def cmd_dag_cancel(args: argparse.Namespace, client: Client) -> int:
    with workflows_client(client) as wc:
        r = wc.call("CancelWorkflow", wpb.CancelWorkflowRequest(workflow_id=args.workflow_id))
    if args.json:
        dump_json(as_dict(r))
    else:
        print(f"cancelled {r.cancelled} jobs; still running: {', '.join(r.still_running) or 'none'}")
    return EXIT_OK


# ---- parser -----------------------------------------------------------------------


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    dp = sub.add_parser("dag", help="DAG workflows", formatter_class=fmt, epilog=EXIT_CODES_HELP)
    dsub = dp.add_subparsers(dest="dag_command", metavar="ACTION", required=True)
    p = dsub.add_parser("submit", help="submit a workflow file (TOML), atomically",
                        formatter_class=fmt, description=workflow_from_toml.__doc__)
    p.add_argument("file", metavar="FILE.toml")
    p.set_defaults(func=cmd_dag_submit, needs_client=True)
    p = dsub.add_parser("status", help="each job's state (exit 1 if the workflow failed)")
    p.add_argument("workflow_id", metavar="ID")
    p.set_defaults(func=cmd_dag_status, needs_client=True)
    p = dsub.add_parser("cancel", help="cancel every job of the workflow not started yet")
    p.add_argument("workflow_id", metavar="ID")
    p.set_defaults(func=cmd_dag_cancel, needs_client=True)
