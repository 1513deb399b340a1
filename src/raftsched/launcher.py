"""Start every node of a config as local processes (`raftsched cluster up`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from raftsched.config import ClusterConfig


class LocalCluster:
    """Node processes of one config on this machine. Stops them on exit."""

    def __init__(self, cfg: ClusterConfig, log_dir: Path | None = None,
                 echo: bool = True, extra_args: Sequence[str] = ()) -> None:
        self.cfg = cfg
        self.log_dir = log_dir
        self.echo = echo
        self.extra_args = list(extra_args)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._threads: list[threading.Thread] = []

    def start_node(self, node_id: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "raftsched", "--config", str(self.cfg.path), "node",
               "--id", node_id, *self.extra_args]
        out: int | IO[bytes] = subprocess.PIPE
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{node_id}.log", "ab")  # noqa: SIM115
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.procs[node_id] = p
        if out is subprocess.PIPE:
            t = threading.Thread(target=self._pump, args=(node_id, p), daemon=True)
            t.start()
            self._threads.append(t)
        return p

    def _pump(self, node_id: str, p: subprocess.Popen[bytes]) -> None:
        assert p.stdout is not None
        for line in p.stdout:
            if self.echo:
                sys.stderr.write(f"[{node_id}] {line.decode(errors='replace')}")

    def start(self) -> None:
        for n in self.cfg.nodes:
            self.start_node(n.id)

    def stop(self, timeout: float = 10.0) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def wait(self) -> int:
        """Block until a node exits on its own; returns its exit code."""
        while True:
            for nid, p in self.procs.items():
                rc = p.poll()
                if rc is not None:
                    sys.stderr.write(f"node {nid} exited with {rc}\n")
                    return rc
            time.sleep(0.2)
