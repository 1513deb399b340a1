"""Rolling restart under load: the documented procedure (docs/operations.md, "Rolling
restart / upgrade") run by the chaos harness's workload and checker instead of its faults.

For each node in turn, as an operator's script would, through the CLI: `node drain ID
--deadline`, wait until it is drained (or the deadline passed), SIGTERM the process and
wait for it to exit, start it again (the "upgrade"), `node eligibility ID --enable`, and
`node wait-ready ID`, which must exit 0 before the next node is touched. The checker is
the chaos one: nothing lost, nothing succeeded twice, no overlapping attempts, replicas
identical, the offline audit of every node's journal clean.

Used by tests/integration/test_rolling_restart.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from raftsched.dev.chaos import Chaos


class RollingRestart(Chaos):
    def __init__(self, root: Path, seed: int, duration: float, jobs: int,
                 drain_deadline: str = "15s", log: Any = print) -> None:
        super().__init__(root, seed, duration, jobs, min_leader_kills=0, min_follower_events=0, log=log)
        self.drain_deadline = drain_deadline
        self.restarted: list[str] = []  # node ids, in order
        self.failures: list[str] = []  # steps of the procedure that did not succeed
        self.leader_restarted = False

    def cli(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "raftsched", "--config", str(self.cfg.path), *args],
                           capture_output=True, text=True, timeout=timeout)
        self._event(f"raftsched {' '.join(args)} -> {r.returncode} {(r.stdout + r.stderr).strip()[:200]}")
        if r.returncode != 0:
            self.failures.append(f"raftsched {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        return r

    def _drained(self, nid: str, until: float) -> None:
        with self.client() as c:
            while time.monotonic() < until:
                try:
                    if next(n.scheduling for n in c.nodes() if n.id == nid) == "drained":
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.2)

    def _faults(self) -> None:
        time.sleep(3.0)  # some jobs in flight first
        for n in self.cfg.nodes:
            with self.client() as c:
                lead = self.leader(c)
            self.leader_restarted |= n.id == lead
            if self.cli("node", "drain", n.id, "--deadline", self.drain_deadline).returncode != 0:
                return
            self._drained(n.id, time.monotonic() + 30)
            self._event(f"SIGTERM {n.id} ({'leader' if n.id == lead else 'follower'})")
            self.cluster.signal(n.id, signal.SIGTERM)
            try:
                self.cluster.procs[n.id].wait(30)
            except subprocess.TimeoutExpired:
                self.failures.append(f"{n.id} did not exit within 30 s of SIGTERM")
                self.cluster.signal(n.id, signal.SIGKILL)
            self._event(f"restart {n.id}")
            self.cluster.start_node(n.id)
            self.cli("node", "eligibility", n.id, "--enable")
            if self.cli("node", "wait-ready", n.id, "--timeout", "120").returncode != 0:
                return
            self.restarted.append(n.id)
