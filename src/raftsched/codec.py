"""Commands and state to bytes and back.

Wire format of a log entry: JSON list of commands, each `[tag, rid, ts, *payload]`.
Tags are append-only: never renumber or reuse one. The state snapshot is a
versioned plain dict (see `state_to_dict`).
"""

from __future__ import annotations

import json
from typing import Any

from raftsched.commands import (
    Assign,
    AssignItem,
    CancelJob,
    Command,
    FinishedItem,
    JobsFinished,
    JobsStarted,
    NodeDown,
    NodeUp,
    StartedItem,
    SubmitJobs,
)
from raftsched.model import Job, JobSpec, JobState, Node, Resources

TAG_SUBMIT = 1
TAG_ASSIGN = 2
TAG_STARTED = 3
TAG_FINISHED = 4
TAG_CANCEL = 5
TAG_NODE_UP = 6
TAG_NODE_DOWN = 7


class CodecError(ValueError):
    pass


def spec_to_wire(s: JobSpec) -> list[Any]:
    return [
        list(s.command),
        s.shell,
        s.use_shell,
        [list(kv) for kv in s.env],
        s.working_dir,
        s.resources.cpu_millis,
        s.resources.memory_mib,
        s.priority,
        s.timeout_s,
        s.name,
    ]


def spec_from_wire(w: list[Any]) -> JobSpec:
    return JobSpec(
        command=tuple(w[0]),
        shell=w[1],
        use_shell=w[2],
        env=tuple((k, v) for k, v in w[3]),
        working_dir=w[4],
        resources=Resources(w[5], w[6]),
        priority=w[7],
        timeout_s=w[8],
        name=w[9],
    )


def node_to_wire(n: Node) -> list[Any]:
    return [
        n.id,
        n.grpc_address,
        n.raft_address,
        n.capacity.cpu_millis,
        n.capacity.memory_mib,
        [list(kv) for kv in n.labels],
        n.alive,
        n.since,
    ]


def node_from_wire(w: list[Any]) -> Node:
    return Node(
        id=w[0],
        grpc_address=w[1],
        raft_address=w[2],
        capacity=Resources(w[3], w[4]),
        labels=tuple((k, v) for k, v in w[5]),
        alive=w[6],
        since=w[7],
    )


def command_to_wire(c: Command) -> list[Any]:
    match c:
        case SubmitJobs():
            return [TAG_SUBMIT, c.rid, c.ts, [[jid, spec_to_wire(s)] for jid, s in c.jobs]]
        case Assign():
            return [TAG_ASSIGN, c.rid, c.ts, [[i.job_id, i.node_id, i.attempt] for i in c.items]]
        case JobsStarted():
            return [TAG_STARTED, c.rid, c.ts, [[i.job_id, i.attempt, i.token] for i in c.items]]
        case JobsFinished():
            items = [
                [
                    i.job_id,
                    i.attempt,
                    i.token,
                    i.exit_code,
                    i.timed_out,
                    i.error,
                    i.stdout_tail,
                    i.stderr_tail,
                ]
                for i in c.items
            ]
            return [TAG_FINISHED, c.rid, c.ts, items]
        case CancelJob():
            return [TAG_CANCEL, c.rid, c.ts, c.job_id]
        case NodeUp():
            return [TAG_NODE_UP, c.rid, c.ts, node_to_wire(c.node)]
        case NodeDown():
            return [TAG_NODE_DOWN, c.rid, c.ts, c.node_id, c.reason]
    raise CodecError(f"unknown command type {type(c).__name__}")


def command_from_wire(w: list[Any]) -> Command:
    tag, rid, ts = w[0], w[1], w[2]
    if tag == TAG_SUBMIT:
        return SubmitJobs(rid, ts, tuple((jid, spec_from_wire(s)) for jid, s in w[3]))
    if tag == TAG_ASSIGN:
        return Assign(rid, ts, tuple(AssignItem(j, n, a) for j, n, a in w[3]))
    if tag == TAG_STARTED:
        return JobsStarted(rid, ts, tuple(StartedItem(j, a, t) for j, a, t in w[3]))
    if tag == TAG_FINISHED:
        return JobsFinished(rid, ts, tuple(FinishedItem(*i) for i in w[3]))
    if tag == TAG_CANCEL:
        return CancelJob(rid, ts, w[3])
    if tag == TAG_NODE_UP:
        return NodeUp(rid, ts, node_from_wire(w[3]))
    if tag == TAG_NODE_DOWN:
        return NodeDown(rid, ts, w[3], w[4])
    raise CodecError(f"unknown command tag {tag!r}")


def encode_entry(cmds: list[Command]) -> bytes:
    """One Raft log entry: a group of commands applied in order."""
    return json.dumps([command_to_wire(c) for c in cmds], separators=(",", ":")).encode()


def decode_entry(blob: bytes) -> list[Command]:
    return [command_from_wire(w) for w in json.loads(blob)]


# ---- jobs and state -------------------------------------------------------------

STATE_VERSION = 1


def job_to_wire(j: Job) -> list[Any]:
    return [
        j.id,
        spec_to_wire(j.spec),
        j.seq,
        j.submitted_at,
        j.state.value,
        j.attempt,
        j.node_id,
        j.fencing_token,
        j.assigned_at,
        j.started_at,
        j.finished_at,
        j.exit_code,
        j.reason,
        j.stdout_tail,
        j.stderr_tail,
    ]


def job_from_wire(w: list[Any]) -> Job:
    return Job(
        id=w[0],
        spec=spec_from_wire(w[1]),
        seq=w[2],
        submitted_at=w[3],
        state=JobState(w[4]),
        attempt=w[5],
        node_id=w[6],
        fencing_token=w[7],
        assigned_at=w[8],
        started_at=w[9],
        finished_at=w[10],
        exit_code=w[11],
        reason=w[12],
        stdout_tail=w[13],
        stderr_tail=w[14],
    )
