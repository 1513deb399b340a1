"""Presentation for the `raftsched` CLI: tables, colours, times, job views."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from raftsched.core.model import Constraint
from raftsched.v1 import jobs_pb2

TERMINAL = {jobs_pb2.SUCCEEDED, jobs_pb2.FAILED, jobs_pb2.CANCELLED, jobs_pb2.UPSTREAM_FAILED,
            jobs_pb2.TIMED_OUT, jobs_pb2.DEAD}


def color(text: str, code: str, stream: TextIO | None = None) -> str:
    """ANSI colour, only when the stream (stdout by default) is a terminal."""
    if not (stream or sys.stdout).isatty() or os.environ.get("NO_COLOR"):
        return text
    return f"\x1b[{code}m{text}\x1b[0m"


STATE_COLORS = {"SUCCEEDED": "32", "FAILED": "31", "CANCELLED": "33", "RUNNING": "36",
                "ASSIGNED": "34", "PENDING": "37", "WAITING": "37", "UPSTREAM_FAILED": "35",
                "TIMED_OUT": "31", "DEAD": "35", "CANCELLING": "33"}


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [len(h) for h in header]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for r in rows:
        cells = []
        for i, c in enumerate(r):
            cell = c.ljust(widths[i])
            if header[i] == "STATE":
                cell = color(cell, STATE_COLORS.get(c, "0"))
            cells.append(cell)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def fmt_ts(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 1000):03d}" if t else "-"


def command_line(spec: jobs_pb2.JobSpec) -> str:
    text = spec.shell if spec.use_shell else " ".join(spec.command)
    if spec.python.target:
        text = f"python {spec.python.target}({spec.python.args_json or ''})"
    return text if len(text) <= 40 else text[:37] + "..."


def constraint_text(c: jobs_pb2.Constraint) -> str:
    return Constraint(c.key, c.op or "eq", c.value).describe()


def dump_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}


def message_dict(msg: Message) -> dict[str, Any]:
    """The one JSON form of a message in the CLI: proto field names, every field present
    (0, "", false, [] included), enums by name, and 64-bit integers as JSON numbers
    (json_format writes them as strings, which no other output of the CLI does)."""
    d = MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    return _numbers(msg.DESCRIPTOR, d)


def _numbers(desc: Descriptor, d: dict[str, Any]) -> dict[str, Any]:
    for f in desc.fields:
        if f.name not in d:
            continue
        v = d[f.name]
        mt = f.message_type
        if mt is not None and mt.full_name.startswith("google.protobuf."):
            continue
        if mt is not None and mt.GetOptions().map_entry:
            vf = mt.fields_by_name["value"]
            if vf.message_type is not None:
                d[f.name] = {k: _numbers(vf.message_type, x) for k, x in v.items()}
            elif vf.type in _INT64:
                d[f.name] = {k: int(x) for k, x in v.items()}
        elif mt is not None:
            d[f.name] = [_numbers(mt, x) for x in v] if isinstance(v, list) else _numbers(mt, v)
        elif f.type in _INT64:
            d[f.name] = [int(x) for x in v] if isinstance(v, list) else int(v)
    return d


def job_dict(j: jobs_pb2.Job) -> dict[str, Any]:
    return message_dict(j)


def job_summary(j: jobs_pb2.Job) -> dict[str, Any]:
    """A job in a listing: what a row shows, without spec details, history or output
    (`list --json --full` and `status --json` give everything)."""
    return {
        "id": j.id, "name": j.spec.name, "namespace": j.spec.namespace,
        "state": jobs_pb2.JobState.Name(j.state), "node_id": j.node_id, "attempt": j.attempt,
        "priority": j.spec.priority, "exit_code": j.exit_code if j.has_exit_code else None,
        "submitted_at": j.submitted_at, "finished_at": j.finished_at or None,
        "reason": j.reason, "command": (j.spec.shell if j.spec.use_shell else list(j.spec.command)),
        "workflow_id": j.workflow_id, "seq": j.seq,
    }


def progress(ids: list[str], latest: dict[str, jobs_pb2.Job], elapsed: float, width: int = 30) -> str:
    counts: dict[str, int] = {}
    for i in ids:
        j = latest.get(i)
        name = jobs_pb2.JobState.Name(j.state) if j else "PENDING"
        counts[name] = counts.get(name, 0) + 1
    done = sum(n for s, n in counts.items() if jobs_pb2.JobState.Value(s) in TERMINAL)
    filled = round(width * done / len(ids)) if ids else width
    code = "31" if counts.get("FAILED") else "32"
    bar = "[" + color("#" * filled, code, sys.stderr) + "." * (width - filled) + "]"
    parts = [f"{s.lower()} {counts[s]}" for s in ("SUCCEEDED", "FAILED", "CANCELLED", "RUNNING",
                                                   "ASSIGNED", "PENDING") if counts.get(s)]
    return f"{bar} {done}/{len(ids)} done  " + "  ".join(parts) + f"  {elapsed:.1f}s"


def print_jobs(jobs: Sequence[jobs_pb2.Job]) -> None:
    rows = [
        [j.id, j.spec.name or "-", jobs_pb2.JobState.Name(j.state), j.node_id or "-",
         str(j.attempt), str(j.spec.priority),
         str(j.exit_code) if j.has_exit_code else "-", command_line(j.spec), j.reason]
        for j in jobs
    ]
    print(table(rows, ["ID", "NAME", "STATE", "NODE", "ATTEMPT", "PRIO", "EXIT", "COMMAND",
                       "REASON"]))


def render_status(j: jobs_pb2.Job) -> str:
    """`raftsched status`: the job, its attempts, its timeline and its output tail."""
    out: list[str] = []
    s = j.spec
    r = s.resources
    out.append(f"job        {j.id}")
    state = jobs_pb2.JobState.Name(j.state)
    out.append(f"state      {color(state, STATE_COLORS.get(state, '0'))}")
    out.append(f"name       {s.name or '-'}")
    if s.python.target:
        out.append(f"python     {s.python.target}  args {s.python.args_json or '[]'}  "
                   f"kwargs {s.python.kwargs_json or '{}'}")
    else:
        out.append(f"command    {s.shell if s.use_shell else s.command!r}{' (shell)' if s.use_shell else ''}")
    if s.run_as:
        out.append(f"run as     {s.run_as}")
    timeout = f"   timeout {s.timeout_seconds:g}s" if s.timeout_seconds else ""
    out.append(f"resources  cpu {r.cpu_millis}m  memory {r.memory_mib} MiB   priority {s.priority}{timeout}")
    if s.HasField("limits"):
        lim = s.limits
        out.append(f"limits     cpu {lim.cpu_millis or r.cpu_millis}m  memory {lim.memory_mib or r.memory_mib} MiB"
                   f"  pids {lim.pids or 'node default'}")
    out.append(f"node       {j.node_id or '-'}   attempt {j.attempt}   fencing token {j.fencing_token}")
    out.append(f"submitted  {fmt_ts(j.submitted_at)}   assigned {fmt_ts(j.assigned_at)}   "
               f"started {fmt_ts(j.started_at)}   finished {fmt_ts(j.finished_at)}")
    if j.has_exit_code:
        out.append(f"exit code  {j.exit_code}")
    if j.reason:
        out.append(f"reason     {j.reason}")
    if j.result_json:
        out.append(f"result     {j.result_json if len(j.result_json) <= 200 else j.result_json[:197] + '...'}")
    if s.pool or s.constraints:
        cs = "  ".join(constraint_text(c) for c in s.constraints)
        out.append(f"placement  pool {s.pool or '-'}   constraints {cs or '-'}")
    if j.pending_reason:
        out.append(f"pending    {j.pending_reason}   (details: raftsched explain {j.id})")
    if j.not_before and j.state == jobs_pb2.PENDING:
        out.append(f"retry at   {fmt_ts(j.not_before)}   failed attempts {j.failures}")
    if j.attempts:
        out.append("attempts:")
        for a in j.attempts:
            code = str(a.exit_code) if a.has_exit_code else "-"
            out.append(f"  #{a.attempt:<3} {a.outcome:<10} node {a.node_id or '-':<6} token {a.fencing_token:<6} "
                       f"{fmt_ts(a.started_at or a.assigned_at)} -> {fmt_ts(a.finished_at)}  exit {code}  {a.reason}")
    if j.history:
        out.append("timeline")
        out.append(timeline(j))
    if j.stdout_tail:
        out.append("--- stdout (tail) ---")
        out.append(j.stdout_tail.rstrip("\n"))
    if j.stderr_tail:
        out.append("--- stderr (tail) ---")
        out.append(j.stderr_tail.rstrip("\n"))
    return "\n".join(out)


def timeline(j: jobs_pb2.Job) -> str:
    """One line per transition: time, +seconds since submission, state, node, attempt, token, reason."""
    lines = []
    t0 = j.history[0].at if j.history else 0.0
    for t in j.history:
        state = jobs_pb2.JobState.Name(t.state)
        cells = [f"  {fmt_ts(t.at)}", f"+{t.at - t0:.3f}s".rjust(10),
                 color(f"{state:<9}", STATE_COLORS.get(state, "0"))]
        if t.node_id:
            cells.append(f"node {t.node_id}")
        if t.attempt:
            cells.append(f"attempt {t.attempt}  token {t.fencing_token}")
        if t.reason:
            cells.append(t.reason)
        lines.append("  ".join(cells))
    return "\n".join(lines)


def freshness_json(client: Any) -> dict[str, Any] | None:
    """The `freshness` field of a read's --json output: which node answered, its applied
    index, the leader it knows, whether it may be stale (null: an older server)."""
    f = getattr(client, "last_freshness", None)
    if f is None:
        return None
    return {"node": f["node"], "applied_index": f["applied_index"], "leader": f["leader"],
            "stale": f["stale"], "contact_age": f["contact_age"]}

