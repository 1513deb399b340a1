"""Partition nemesis: the chaos checker's ledger jobs while the network between the
nodes is cut in the ways a Jepsen-style tester would cut it, one fault at a time.

Each node runs in its own network namespace (raftsched.dev.netns). Faults, 3-8 s each:
the leader isolated both ways; a follower isolated; a bridge split (the two ends cannot
see each other, the middle node sees both); packets from the leader to one follower
dropped; and a cut node SIGKILLed and restarted while still cut. Submissions go to
random single nodes through three doors - the CLI (single jobs with an idempotency
key, and batches), and gRPC batches retried with the same request id on other nodes -
and only acknowledged ones are counted. The checks are the chaos checker's (nothing
acknowledged lost, nothing succeeded twice, no overlapping attempts, tokens never go
backwards, replicas identical, offline audit); on top, per fault: the term growth and
the time from the heal until a write through every node commits.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from raftsched.client.client import Client
from raftsched.dev.chaos import Chaos, job_spec
from raftsched.dev.netns import Netns
from raftsched.node import certs
from raftsched.v1 import jobs_pb2

COMPACT_EVERY = 150
FAULTS = ("isolate_leader", "isolate_follower", "bridge", "leader_to_follower", "kill_cut")


@dataclass
class FaultStat:
    kind: str
    seconds: float
    term_growth: int = 0
    heal_to_commit: float | None = None  # None: no write committed within the bound


@dataclass
class NemesisStats:
    faults: list[FaultStat] = field(default_factory=list)
    cli_submissions: int = 0
    grpc_batches: int = 0
    retries: int = 0
    refused: int = 0
    safety: dict[str, int] = field(default_factory=dict)  # raftsafe counters, all nodes

    def summary(self) -> str:
        by: dict[str, list[FaultStat]] = {}
        for f in self.faults:
            by.setdefault(f.kind, []).append(f)
        lines = [f"submissions: cli={self.cli_submissions} grpc batches={self.grpc_batches} "
                 f"same-id retries={self.retries} not acknowledged={self.refused}"]
        for kind, fs in sorted(by.items()):
            growth = [f.term_growth for f in fs]
            heal = [f.heal_to_commit for f in fs if f.heal_to_commit is not None]
            lines.append(
                f"fault {kind}: n={len(fs)} term growth per fault={sum(growth) / len(fs):.1f} "
                f"(max {max(growth)}) heal->commit "
                + (f"mean {sum(heal) / len(heal):.2f}s max {max(heal):.2f}s" if heal else "n/a")
                + (f" ({len(fs) - len(heal)} never)" if len(heal) < len(fs) else ""))
        total = sum(f.term_growth for f in self.faults)
        lines.append(f"term growth total={total} over {len(self.faults)} faults")
        lines.append("raft safety events (all nodes, this incarnation): " + " ".join(
            f"{k}={v}" for k, v in sorted(self.safety.items())))
        return "\n".join(lines)


class PartitionNemesis(Chaos):
    def __init__(self, root: Path, seed: int, duration: float, jobs: int,
                 log: Any = print, cluster_extra: str = "") -> None:
        self.net = Netns(3)
        try:
            super().__init__(root, seed, duration, jobs, min_leader_kills=0,
                             min_follower_events=0, log=log, hosts=self.net.hosts,
                             wrap=lambda nid: self.net.wrap(int(nid[1:])),
                             # compact often, so that cut nodes catch up by snapshot install
                             cluster_extra=f"log_compaction_entries = {COMPACT_EVERY}\n"
                             + cluster_extra)
        except Exception:
            self.net.close()
            raise
        certs.init(self.cfg)  # hosts are not loopback: `cluster up` would not make them
        self.stats = NemesisStats()
        self._acked_lock = threading.Lock()

    def run(self, settle: float = 120.0) -> Any:
        try:
            return super().run(settle)
        finally:
            self.net.close()

    def _check(self) -> None:
        super()._check()
        self.stats.safety = safety_events([n.metrics for n in self.cfg.nodes])

    def node_client(self, nid: str, timeout: float = 4.0) -> Client:
        return Client([self.cfg.node(nid).grpc], timeout=timeout, tls=self.cluster.tls(),
                      token=self.cluster.token)

    # ---- workload: three doors, random nodes, same-id retries ------------------------

    def _ack(self, ids: list[str]) -> None:
        with self._acked_lock:
            self.acked.extend(ids)

    def _submitter(self) -> None:
        rng = random.Random(self.seed + 1)
        interval = self.duration * 0.85 / self.jobs
        nodes = [n.id for n in self.cfg.nodes]
        i = 0
        threads: list[threading.Thread] = []
        while i < self.jobs and not self._stop.is_set():
            r = rng.random()
            n = 1 if r < 0.45 else min(rng.randint(2, 12), self.jobs - i)
            specs = [job_spec(self.root, rng) for _ in range(n)]
            if r < 0.45:
                t = threading.Thread(target=self._cli_single, args=(specs[0], rng.choice(nodes)))
            elif r < 0.6:
                t = threading.Thread(target=self._cli_batch, args=(specs[0], n, rng.choice(nodes)))
            else:
                t = threading.Thread(target=self._grpc_batch,
                                     args=(specs, rng.sample(nodes, 3), rng.random()))
            t.start()
            threads.append(t)
            i += n
            time.sleep(interval * n)
        for t in threads:
            t.join()

    def _cli(self, nid: str, *args: str) -> subprocess.CompletedProcess[str]:
        tls = self.cluster.tls()
        assert tls is not None
        cmd = [sys.executable, "-m", "raftsched", "--config", str(self.cfg.path),
               "--node", self.cfg.node(nid).grpc, "--timeout", "6", "--json", *args]
        env = {**os.environ, "RAFTSCHED_TOKEN": self.cluster.token or ""}
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)

    def _cli_single(self, spec: jobs_pb2.JobSpec, nid: str) -> None:
        """`raftsched submit --idempotency-key K`, retried through other nodes with K."""
        key = uuid.uuid4().hex
        nodes = [nid, *[n.id for n in self.cfg.nodes if n.id != nid]]
        for attempt, target in enumerate(nodes * 2):
            self.stats.cli_submissions += 1
            self.stats.retries += attempt > 0
            r = self._cli(target, "submit", "--idempotency-key", key, "--shell", "--", spec.shell)
            if r.returncode == 0:
                self._ack(_ids(r.stdout))
                return
        self.stats.refused += 1

    def _cli_batch(self, spec: jobs_pb2.JobSpec, n: int, nid: str) -> None:
        """`raftsched submit --count N`: one try (the CLI keeps no request id across runs)."""
        self.stats.cli_submissions += 1
        r = self._cli(nid, "submit", "--count", str(n), "--shell", "--", spec.shell)
        if r.returncode == 0:
            self._ack(_ids(r.stdout))
        else:
            self.stats.refused += 1

    def _grpc_batch(self, specs: list[jobs_pb2.JobSpec], order: list[str], pause: float) -> None:
        """SubmitJobs through one node; on failure the same request id through the next."""
        rid = uuid.uuid4().hex
        self.stats.grpc_batches += 1
        for attempt, nid in enumerate(order * 2):
            self.stats.retries += attempt > 0
            with self.node_client(nid) as c:
                try:
                    self._ack(c.submit_batch(specs, request_id=rid))
                    return
                except grpc.RpcError:
                    time.sleep(pause)
        self.stats.refused += 1

    # ---- faults -------------------------------------------------------------------

    def _terms(self) -> int:
        """The highest term any reachable node reports."""
        best = 0
        for n in self.cfg.nodes:
            with self.node_client(n.id, timeout=1.0) as c, contextlib.suppress(grpc.RpcError):
                best = max(best, int(c.status().term))
        return best

    def _faults(self) -> None:
        rng = self.rng
        end = time.monotonic() + self.duration
        ids = [n.id for n in self.cfg.nodes]
        with self.client() as c:
            time.sleep(2.0)
            while time.monotonic() < end and not self._stop.is_set():
                lead = self.leader(c)
                if lead is None:
                    time.sleep(0.5)
                    continue
                kind = FAULTS[len(self.stats.faults) % len(FAULTS)] if len(
                    self.stats.faults) < len(FAULTS) else rng.choice(FAULTS)
                term0 = self._terms()
                secs = rng.uniform(3.0, 8.0)
                heal = self._inject(kind, lead, [x for x in ids if x != lead], secs, rng)
                stat = FaultStat(kind, round(secs, 1))
                stat.heal_to_commit = self._heal_to_commit(heal)
                stat.term_growth = self._terms() - term0
                self.stats.faults.append(stat)
                self._event(f"healed {kind}: term +{stat.term_growth}, heal->commit "
                            f"{stat.heal_to_commit}")
                time.sleep(rng.uniform(2.0, 4.0))

    def _inject(self, kind: str, lead: str, followers: list[str], secs: float,
                rng: random.Random) -> float:
        """Apply one fault for `secs`, heal it; returns the heal's monotonic time."""
        net, num = self.net, lambda nid: int(nid[1:])
        if kind in ("isolate_leader", "isolate_follower", "kill_cut"):
            victim = lead if kind == "isolate_leader" else rng.choice([lead, *followers]) \
                if kind == "kill_cut" else rng.choice(followers)
            self._event(f"{kind}: cut {victim} ({'leader' if victim == lead else 'follower'})")
            net.cut(num(victim))
            if kind == "kill_cut":
                time.sleep(secs / 2)
                self._event(f"SIGKILL {victim} while cut; restart it, still cut")
                self.cluster.signal(victim, signal.SIGKILL)
                self.cluster.start_node(victim)
                time.sleep(secs / 2)
            else:
                time.sleep(secs)
            net.heal(num(victim))
        elif kind == "bridge":
            a, b = rng.sample([lead, *followers], 2)  # the ends; the third node is the middle
            self._event(f"bridge: {a} and {b} cannot see each other (leader {lead})")
            net.block(num(a), num(b))
            net.block(num(b), num(a))
            time.sleep(secs)
            net.heal_all()
        else:  # leader_to_follower: one-way loss
            f = rng.choice(followers)
            self._event(f"one-way: packets from leader {lead} to {f} dropped")
            net.block(num(lead), num(f))
            time.sleep(secs)
            net.heal_all()
        return time.monotonic()

    def _heal_to_commit(self, healed: float, bound: float = 30.0) -> float | None:
        """Seconds from the heal until a write through every node has committed."""
        pending = [n.id for n in self.cfg.nodes]
        spec = job_spec(self.root, random.Random(healed))  # a ledger job like the others
        while pending and time.monotonic() - healed < bound:
            nid = pending[0]
            with self.node_client(nid, timeout=2.0) as c:
                try:
                    self._ack([c.submit(spec)])
                    pending.pop(0)
                except grpc.RpcError:
                    time.sleep(0.1)
        return round(time.monotonic() - healed, 2) if not pending else None



def _ids(stdout: str) -> list[str]:
    data = json.loads(stdout)
    if "job_ids" in data:
        return list(data["job_ids"])
    return [data["job_id"]] if "job_id" in data else []


def safety_events(metrics_addrs: list[str]) -> dict[str, int]:
    """Sum of raftsched_raft_safety_events over the nodes' /metrics (unreachable: skipped)."""
    total: dict[str, int] = {}
    for addr in metrics_addrs:
        try:
            with urllib.request.urlopen(f"http://{addr}/metrics", timeout=3) as r:
                text = r.read().decode()
        except OSError:
            continue
        for m in re.finditer(r'^raftsched_raft_safety_events_total\{event="(\w+)"\} (\S+)$',
                             text, re.M):
            total[m.group(1)] = total.get(m.group(1), 0) + int(float(m.group(2)))
    return total
