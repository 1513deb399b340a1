"""One Python worker process of a node's pool, driven from the node's event loop.

The process runs `child.py` in its own sandbox (node/isolation: a cgroup where the
machine allows, else a process group and environment marker), with a minimal
environment and the pool directory as working directory. Replies are read through
a reader on the event loop; the exit is noticed through a pidfd.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import structlog

from raftsched.node.isolation import Sandbox

log = structlog.get_logger("raftsched.node.pytasks")

PAGE = os.sysconf("SC_PAGE_SIZE")


class PyWorker:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: str, sandbox: Sandbox,
                 loop: asyncio.AbstractEventLoop,
                 on_reply: Callable[[PyWorker, dict[str, Any]], None],
                 on_exit: Callable[[PyWorker, int], None]) -> None:
        self.name = name
        self.sandbox = sandbox
        self.loop = loop
        self.on_reply = on_reply
        self.on_exit = on_exit
        self.task: Any = None  # the pool's task running here, if any
        self.tasks_done = 0
        self.retiring = False
        self._buf = b""
        self.proc = subprocess.Popen(
            sandbox.wrap(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env, cwd=cwd, process_group=0, close_fds=True)
        sandbox.started(self.proc.pid)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()
        os.set_blocking(self._out, False)
        self.pidfd = os.pidfd_open(self.proc.pid)
        loop.add_reader(self._out, self._readable)
        loop.add_reader(self.pidfd, self._exited)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, msg: dict[str, Any]) -> bool:
        """Hand the process one request (it is idle and reading). False if it is gone."""
        data = json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        try:
            while data:  # a request is bounded (~130 KiB): a pipe buffer or two
                n = os.write(self._in, data)
                data = data[n:]
            return True
        except OSError:
            return False

    def retire(self) -> None:
        """Let it finish: closing stdin makes the process exit; `on_exit` follows."""
        self.retiring = True
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()

    def kill(self) -> None:
        """SIGKILL every process of the worker (a Python call cannot be stopped cleanly)."""
        self.sandbox.signal(signal.SIGKILL)

    def rss_mib(self) -> int:
        try:
            with open(f"/proc/{self.proc.pid}/statm") as f:
                return int(f.read().split()[1]) * PAGE >> 20
        except (OSError, ValueError, IndexError):
            return 0

    def _readable(self) -> None:
        try:
            data = os.read(self._out, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.loop.remove_reader(self._out)
            return
        self._buf += data
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            try:
                msg = json.loads(line)
            except ValueError:
                log.warning("python worker sent an unreadable reply", worker=self.name)
                self.kill()
                return
            self.on_reply(self, msg)

    def _exited(self) -> None:
        self.loop.remove_reader(self.pidfd)
        self.loop.remove_reader(self._out)
        self._readable_rest()
        os.close(self.pidfd)
        code = self.proc.wait()
        self.sandbox.exited()
        self.sandbox.signal(signal.SIGKILL)  # whatever the task left behind goes too
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if f is not None:
                    f.close()
        self.on_exit(self, code)

    def _readable_rest(self) -> None:
        """A reply written just before the process exited is still delivered."""
        with contextlib.suppress(OSError):
            while True:
                data = os.read(self._out, 1 << 16)
                if not data:
                    break
                self._buf += data
        while b"\n" in self._buf and self.task is not None:
            line, self._buf = self._buf.split(b"\n", 1)
            with contextlib.suppress(ValueError):
                self.on_reply(self, json.loads(line))
