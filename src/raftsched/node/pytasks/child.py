"""A Python task worker process: `python -m raftsched.node.pytasks.child`, started by
the node's pool (pool.py), never by hand.

It reads one JSON request per line on stdin and answers one JSON line on stdout.
Before the first request it moves the protocol pipes to private descriptors and
points fds 0 and 1 at /dev/null, so a task's stray output cannot corrupt the
protocol. For each task it sets the environment the node computed (the same
minimal environment as a subprocess job: node/jobenv.py), changes to the attempt's
scratch directory, captures `print` output (bounded), calls the function, and then
restores environment and directory. Imported modules stay loaded between tasks:
that is what makes the pool warm. The process exits when stdin closes.

Stdlib and raftsched's stdlib-only modules (context, core.pytask) only: a pool
may run another virtualenv's interpreter with raftsched's source on its path.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import resource
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

from raftsched.client.context import TaskContext, _enter, _leave
from raftsched.core.pytask import MAX_RESULT_BYTES
from raftsched.node.pytasks.scratchdir import ScratchDirs
from raftsched.node.subreaper import set_subreaper

OUTPUT_TAIL = 4000
TRACEBACK_TAIL = 4000


class CappedText(io.TextIOBase):
    """A text stream keeping the last `cap` characters written to it."""

    def __init__(self, cap: int = OUTPUT_TAIL) -> None:
        self.cap = cap
        self.parts: list[str] = []
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.parts.append(s)
        self.size += len(s)
        if self.size > 4 * self.cap:
            self.parts = ["".join(self.parts)[-self.cap:]]
            self.size = len(self.parts[0])
        return len(s)

    def tail(self) -> str:
        return "".join(self.parts)[-self.cap:]


_resolved: dict[str, Callable[..., Any]] = {}


def resolve(target: str) -> Callable[..., Any]:
    fn = _resolved.get(target)
    if fn is None:
        mod_name, _, attr = target.partition(":")
        obj: Any = importlib.import_module(mod_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        obj = getattr(obj, "__wrapped_task__", obj)  # a @raftsched.task: call the plain function
        if not callable(obj):
            raise TypeError(f"{target} is not callable")
        fn = _resolved[target] = obj
    return fn


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def kill_leftovers() -> int:
    """Like a subprocess job's leftovers when its main process ends: every process the
    task started and left running is killed, and reaped. The worker is a child subreaper
    (main): a task's orphans (double fork, setsid) are its children, and go too. Where
    it cannot be one, an orphan outside its tree goes when the worker's sandbox is
    killed."""
    direct = _children(os.getpid())
    todo, seen = list(direct), []
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo += _children(pid)
    for pid in seen:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    killed = set(seen)
    # our children: the direct ones, then the orphans of those (re-parented here as
    # each exits), until none of those SIGKILLed is left; nothing else is waited for
    while kids := [pid for pid in _children(os.getpid()) if pid in killed]:
        for pid in kids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            killed.discard(pid)
    return len(seen)


def set_environ(env: dict[str, str]) -> None:
    """Make os.environ exactly `env`, touching only what differs (os.environ.clear()
    pops one variable at a time through the mapping ABC: a third of a no-op task)."""
    for k in [k for k in os.environ if k not in env]:
        del os.environ[k]
    for k, v in env.items():
        if os.environ.get(k) != v:
            os.environ[k] = v


def run(req: dict[str, Any], home: str, base_env: dict[str, str], reap: bool = True,
        scratch: ScratchDirs | None = None) -> dict[str, Any]:
    """One task. `reap`: kill what it left running (every child of this process).
    `scratch`: makes the task's scratch directory (when asked: `mkcwd`), possibly
    reusing the one an earlier task left empty."""
    scratch = scratch or ScratchDirs(reuse=False)
    reply: dict[str, Any] = {"job": req["job"], "attempt": req["attempt"], "ok": False}
    out, err = CappedText(), CappedText()
    ctx = TaskContext(req["job"], req["attempt"], req["token"], req["node"], req["cwd"])
    saved = sys.stdout, sys.stderr
    set_environ(req["env"])
    token = _enter(ctx)
    try:
        if req.get("mkcwd"):  # the attempt's scratch directory (node/jobenv.py Scratch)
            scratch.make(req["cwd"])
        os.chdir(req["cwd"])
        sys.stdout, sys.stderr = out, err
        fn = resolve(req["target"])
        value = fn(*json.loads(req["args"] or "[]"), **json.loads(req["kwargs"] or "{}"))
        try:
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as e:
            reply["error"] = f"return value is not JSON-serialisable: {e}"
        else:
            if len(text) > MAX_RESULT_BYTES:
                reply["error"] = (f"return value is {len(text)} bytes as JSON; at most "
                                  f"{MAX_RESULT_BYTES}: store large results elsewhere and return a reference")
            else:
                reply["ok"], reply["result"] = True, text
    except BaseException as e:  # a task raising SystemExit or KeyboardInterrupt fails too
        reply["error"] = f"raised {type(e).__name__}: {str(e)[:500]}"
        reply["traceback"] = traceback.format_exc()[-TRACEBACK_TAIL:]
    finally:
        sys.stdout, sys.stderr = saved
        _leave(token)
        set_environ(base_env)
        os.chdir(home)
        if reap:
            reply["leftovers_killed"] = kill_leftovers()
            if req.get("mkcwd"):
                scratch.done(req["cwd"])
    reply["stdout"], reply["stderr"] = out.tail(), err.tail()
    reply["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return reply


def main() -> int:
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    home = os.getcwd()
    base_env = dict(os.environ)
    # orphans of a task (double fork, setsid) come back to this process and are killed
    # with the rest; then an empty scratch directory may serve the next task
    scratch = ScratchDirs(reuse=set_subreaper())
    for line in proto_in:
        reply = run(json.loads(line), home, base_env, scratch=scratch)
        proto_out.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
        proto_out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
