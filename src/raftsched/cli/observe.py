"""CLI for watching a cluster: `raftsched watch`, `raftsched logs`, `raftsched top`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import Any

import grpc

from raftsched.cli.common import EXIT_CODES_HELP, EXIT_OK, STATES, UsageError, stop_on_signals
from raftsched.cli.format import STATE_COLORS, TERMINAL, command_line, dump_json, fmt_ts, message_dict
from raftsched.client.client import Client
from raftsched.client.observe_client import JobWatcher, follow_output, get_output
from raftsched.v1 import events_pb2, jobs_pb2

TOP_RECENT_FAILURES = 5
TOP_RUNNING = 15


def _colorize(text: str, code: str, enabled: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if enabled else text


def _use_color() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _parse_position(s: str) -> tuple[int, int]:
    idx, _, ordinal = s.partition(".")
    try:
        return int(idx), int(ordinal) if ordinal else 0xFFFFFFFF
    except ValueError:
        raise argparse.ArgumentTypeError(f"position {s!r}: expected INDEX.ORDINAL, e.g. 1234.0") from None


# ---- watch ---------------------------------------------------------------------------


def _print_event(ev: events_pb2.JobEvent, as_json: bool, color: bool) -> None:
    j = ev.job
    state = jobs_pb2.JobState.Name(j.state)
    at = j.history[-1].at if j.history else j.submitted_at
    pos = f"{ev.position.index}.{ev.position.ordinal}"
    if as_json:
        print(json.dumps({
            "position": pos, "job_id": j.id, "name": j.spec.name, "state": state,
            "previous_state": jobs_pb2.JobState.Name(ev.previous_state),
            "node_id": j.node_id, "attempt": j.attempt, "fencing_token": j.fencing_token,
            "reason": j.reason, "initial": ev.initial, "at": at,
        }), flush=True)
        return
    prev = jobs_pb2.JobState.Name(ev.previous_state) if ev.previous_state else "-"
    tag = " (current)" if ev.initial else ""
    print(f"{pos:<10} {fmt_ts(at)} {j.id}  "
          f"{prev:>9} -> {_colorize(state, STATE_COLORS.get(state, '0'), color):9}"
          f" node {j.node_id or '-'} attempt {j.attempt}"
          f"{'  ' + j.reason if j.reason else ''}{tag}", flush=True)


def cmd_watch(args: argparse.Namespace, client: Client) -> int:
    if args.until_done and not args.job:
        raise UsageError("--until-done needs --job JOB_ID (repeatable): it ends when those jobs "
                         "are finished")
    if args.count < 0:
        raise UsageError(f"--count {args.count}: must be >= 0")
    waiting: set[str] = set()
    # after --from, a job already finished may have nothing left to send: it is done
    # once the stream has caught up with the index its state was read at
    finished_at_start: set[str] = set()
    caught_up = client.status().commit_index  # and no node reachable: exit 5 now
    if args.until_done:
        for jid in dict.fromkeys(args.job):
            j = client.get(jid)  # NOT_FOUND: exit 3 instead of waiting for a job that is not there
            waiting.add(jid)
            if args.resume_from is not None and j.state in TERMINAL:
                finished_at_start.add(jid)
    states = [jobs_pb2.JobState.Value(s) for s in args.state or []]
    # --until-done without --from starts with the jobs' current state, so a job that is
    # already finished ends the watch at once
    initial = args.initial or (args.until_done and args.resume_from is None)
    w = JobWatcher(client.addresses, job_ids=args.job or [], workflow_id=args.workflow or "",
                   states=states, node_id=args.on_node or "", resume_from=args.resume_from,
                   send_initial=initial, token=client.token, tls=client.tls)
    color = _use_color() and not args.json
    seen = 0
    last = args.resume_from  # position after the last change printed: resuming there skips none
    try:
        for n, resp in enumerate(w.responses()):
            for ev in resp.events:
                _print_event(ev, args.json, color)
                last = (ev.position.index, ev.position.ordinal)
                seen += 1
                if ev.job.state in TERMINAL:
                    waiting.discard(ev.job.id)
                if (args.until_done and not waiting) or (args.count and seen >= args.count):
                    return EXIT_OK
            last = (resp.position.index, resp.position.ordinal)
            if finished_at_start and (n > 0 or last[0] >= caught_up):
                waiting -= finished_at_start
                if not waiting:
                    return EXIT_OK
    except KeyboardInterrupt:
        pass
    finally:
        w.cancel()
        if last is not None and not args.json:
            print(f"# resume with: raftsched watch --from {last[0]}.{last[1]}", file=sys.stderr)
    return EXIT_OK


# ---- logs ----------------------------------------------------------------------------


SOURCE = {events_pb2.NODE_FILE: "node-file", events_pb2.REPLICATED_TAIL: "replicated-tail"}


def cmd_logs(args: argparse.Namespace, client: Client) -> int:
    addrs = client.addresses[client._current % len(client.addresses):] + \
        client.addresses[:client._current % len(client.addresses)]
    want_out = args.stream in ("both", "stdout")
    want_err = args.stream in ("both", "stderr")
    if args.follow:
        note = ""
        for chunk in follow_output(addrs, args.job_id, args.attempt, token=client.token,
                                   tls=client.tls):
            if args.json:
                print(json.dumps({"stdout": chunk.stdout.decode("utf-8", "replace"),
                                  "stderr": chunk.stderr.decode("utf-8", "replace"),
                                  "source": SOURCE.get(chunk.source, ""), "node_id": chunk.node_id,
                                  "attempt": chunk.attempt, "done": chunk.done, "note": chunk.note}),
                      flush=True)
                continue
            if want_out and chunk.stdout:
                sys.stdout.buffer.write(chunk.stdout)
                sys.stdout.flush()
            if want_err and chunk.stderr:
                sys.stderr.buffer.write(chunk.stderr)
                sys.stderr.flush()
            note = chunk.note or note
        if note and not args.json:
            print(f"# {note} (only the cluster's tail was available)", file=sys.stderr)
        return EXIT_OK
    resp = get_output(addrs, args.job_id, args.attempt, token=client.token, tls=client.tls)
    if args.json:
        d = message_dict(resp)
        d["stdout"] = resp.stdout.decode("utf-8", "replace")
        d["stderr"] = resp.stderr.decode("utf-8", "replace")
        dump_json(d)
        return EXIT_OK
    if want_out:
        sys.stdout.buffer.write(resp.stdout)
        sys.stdout.flush()
    if want_err:
        sys.stderr.buffer.write(resp.stderr)
        sys.stderr.flush()
    if resp.source == events_pb2.REPLICATED_TAIL:
        print(f"# attempt {resp.attempt} on {resp.node_id or '?'}: only the cluster's tail "
              f"({resp.note})", file=sys.stderr)
    return EXIT_OK


# ---- top -----------------------------------------------------------------------------


def bar(used: float, total: float, width: int, color: bool) -> str:
    frac = 0.0 if total <= 0 else max(0.0, min(1.0, used / total))
    filled = round(frac * width)
    code = "32" if frac < 0.6 else "33" if frac < 0.85 else "31"
    inner = _colorize("#" * filled, code, color) + "." * (width - filled)
    return f"[{inner}] {frac * 100:3.0f}%"


def top_data(client: Client) -> dict[str, Any]:
    st = client.status(include_replicas=True)
    nodes = client.nodes()
    reps = {r.node_id: r for r in st.replicas}
    running = client.list_page([jobs_pb2.RUNNING], "", TOP_RUNNING, "")
    failed = list(client.list_all([jobs_pb2.FAILED]))[-TOP_RECENT_FAILURES:]
    now = time.time()
    return {
        "answered_by": st.node_id,
        "leader": st.leader_id,
        "term": st.term,
        "commit_index": st.commit_index,
        "jobs_by_state": dict(st.jobs_by_state),
        "nodes": [{
            "id": n.id, "alive": n.alive, "scheduling": n.scheduling,
            "raft": (reps[n.id].raft_state if n.id in reps and reps[n.id].reachable else "unreachable"),
            "cpu_used": n.allocated.cpu_millis, "cpu_capacity": n.capacity.cpu_millis,
            "mem_used": n.allocated.memory_mib, "mem_capacity": n.capacity.memory_mib,
            "active_jobs": n.running_jobs,
        } for n in nodes],
        "running": [{"id": j.id, "node_id": j.node_id, "attempt": j.attempt,
                     "seconds": round(now - j.started_at, 1) if j.started_at else 0.0,
                     "command": command_line(j.spec)} for j in running.jobs],
        "running_total": running.total,
        "recent_failures": [{"id": j.id, "node_id": j.node_id, "attempt": j.attempt,
                             "exit_code": j.exit_code if j.has_exit_code else None,
                             "reason": j.reason, "finished_at": j.finished_at} for j in failed],
    }


def render_top(d: dict[str, Any], color: bool, width: int = 100) -> str:
    def bold(s: str) -> str:
        return _colorize(s, "1", color)

    counts = d["jobs_by_state"]
    lines = [
        bold(f"raftsched top  leader {d['leader'] or '-'}  term {d['term']}  commit {d['commit_index']}"
             f"  via {d['answered_by']}  {time.strftime('%H:%M:%S')}"),
        "jobs  " + "  ".join(
            f"{s.lower()} {_colorize(str(counts.get(s, 0)), STATE_COLORS.get(s, '0'), color)}"
            for s in STATES),
        "",
    ]
    bw = max(10, min(30, (width - 50) // 2))
    rows = [["NODE", "STATE", "RAFT", "CPU", "MEMORY", "JOBS"]]
    for n in d["nodes"]:
        health = _colorize("up", "32", color) if n["alive"] else _colorize("down", "31", color)
        if n.get("scheduling") not in (None, "", "eligible"):  # draining, drained, ineligible
            health += " " + _colorize(n["scheduling"], "33", color)
        rows.append([n["id"], health, n["raft"], bar(n["cpu_used"], n["cpu_capacity"], bw, color),
                     bar(n["mem_used"], n["mem_capacity"], bw, color), str(n["active_jobs"])])
    lines += _columns(rows)
    lines += ["", bold(f"RUNNING ({d['running_total']})")]
    rr = [["ID", "NODE", "ATTEMPT", "FOR", "COMMAND"]]
    rr += [[r["id"], r["node_id"], str(r["attempt"]), f"{r['seconds']:.1f}s", r["command"]] for r in d["running"]]
    lines += _columns(rr) if d["running"] else ["  (none)"]
    lines += ["", bold("RECENT FAILURES")]
    fr = [["ID", "NODE", "ATTEMPT", "EXIT", "REASON"]]
    fr += [[f["id"], f["node_id"] or "-", str(f["attempt"]),
            "-" if f["exit_code"] is None else str(f["exit_code"]), f["reason"]] for f in d["recent_failures"]]
    lines += _columns(fr) if d["recent_failures"] else ["  (none)"]
    return "\n".join(lines)


def _visible_len(s: str) -> int:
    import re

    return len(re.sub(r"\x1b\[[0-9;]*m", "", s))


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(_visible_len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        out.append("  ".join(c + " " * (w - _visible_len(c)) for c, w in zip(r, widths, strict=True)).rstrip())
    return out


def cmd_top(args: argparse.Namespace, client: Client) -> int:
    if args.json:
        dump_json(top_data(client))
        return EXIT_OK
    color = _use_color()
    if args.once or not sys.stdout.isatty():
        print(render_top(top_data(client), color, shutil.get_terminal_size().columns))
        return EXIT_OK
    stop_on_signals()
    sys.stdout.write("\x1b[?25l")  # hide the cursor
    try:
        while True:
            try:
                frame = render_top(top_data(client), color, shutil.get_terminal_size().columns)
            except grpc.RpcError as e:
                frame = _colorize(f"cluster unreachable: {e.code().name}: {e.details()}", "31", color)
            sys.stdout.write("\x1b[H\x1b[2J" + frame + "\n")
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        sys.stdout.write("\x1b[?25h")
        sys.stdout.flush()


# ---- registration --------------------------------------------------------------------


def register(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    sp = sub.add_parser(
        "watch", help="stream job changes live (from any node, resumable)", formatter_class=fmt,
        epilog=EXIT_CODES_HELP,
        description="Stream job state changes as the cluster applies them. Each line starts with\n"
        "its position (RAFT_INDEX.ORDINAL), the same on every node: pass the last one to\n"
        "--from to continue after a disconnect, from any node, without missing a change.\n"
        "Exit code 6: the position is older than the node's buffer; re-list with --initial.\n"
        "--until-done needs --job: it ends when every listed job is finished (an unknown\n"
        "job id exits 3). --count N stops after N changes; the resume hint it prints\n"
        "continues with the change after the last one printed.")
    sp.add_argument("--job", action="append", metavar="JOB_ID", help="only this job (repeatable)")
    sp.add_argument("--state", action="append", type=str.upper, choices=STATES,
                    help="only changes into this state (repeatable)")
    sp.add_argument("--on-node", metavar="NODE_ID", help="only jobs on this node")
    sp.add_argument("--workflow", metavar="WORKFLOW_ID", help="only jobs of this workflow")
    sp.add_argument("--from", dest="resume_from", type=_parse_position, metavar="INDEX.ORDINAL",
                    help="continue after this position")
    sp.add_argument("--initial", action="store_true", help="first print the current matching jobs")
    sp.add_argument("--count", type=int, default=0, help="stop after N events")
    sp.add_argument("--until-done", action="store_true",
                    help="with --job: stop when every listed job is finished (SUCCEEDED, FAILED, "
                    "TIMED_OUT, CANCELLED, DEAD, UPSTREAM_FAILED)")
    sp.set_defaults(func=cmd_watch, needs_client=True)

    sp = sub.add_parser(
        "logs", help="stdout/stderr of a job attempt", formatter_class=fmt, epilog=EXIT_CODES_HELP,
        description="Print a job attempt's output: the full file from the node that ran it, or the\n"
        "bounded tail kept by the cluster if that node is unreachable or dropped the file.\n"
        "stdout goes to stdout, stderr to stderr.")
    sp.add_argument("job_id")
    sp.add_argument("--attempt", type=int, default=0, help="attempt number (default: the latest)")
    sp.add_argument("--follow", "-f", action="store_true", help="stream output until the attempt ends")
    sp.add_argument("--stream", choices=["both", "stdout", "stderr"], default="both")
    sp.set_defaults(func=cmd_logs, needs_client=True)

    sp = sub.add_parser(
        "top", help="live view of nodes, capacity, running jobs and failures", formatter_class=fmt,
        epilog=EXIT_CODES_HELP,
        description="A live terminal view, redrawn every --interval seconds (Ctrl-C quits).\n"
        "--once (or output that is not a terminal) prints one frame; --json prints the\n"
        "frame's data as JSON.")
    sp.add_argument("--once", action="store_true", help="print one frame and exit")
    sp.add_argument("--interval", type=float, default=1.0, help="seconds between frames (default 1)")
    sp.set_defaults(func=cmd_top, needs_client=True)
