"""Chaos harness: a stream of ledger-writing jobs while nodes are killed and frozen.

Every job runs, under `flock -n` on a per-job lock file, a shell snippet that
appends `S <job> <attempt> <token> <node> <time>` to a ledger, sleeps, and
appends `E ...`. If another attempt of the same job still holds the lock, the
job writes `OVERLAP ...` instead: the kernel releases the lock only when the
holder is dead, so this catches two attempts alive at once even when one was
killed without a trace. The checker then reads the ledger and the cluster.
A share of the jobs (PYTHON_SHARE) are Python tasks run by the nodes' worker
pools that write the same ledger under the same locks (dev/chaostask.py).

Used by tests/chaos (bounded, in CI) and scripts/chaos (longer, seeded).
"""

from __future__ import annotations

import collections
import itertools
import json
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from raftsched import config as configmod
from raftsched.client.client import Client
from raftsched.dev.launcher import LocalCluster, write_config
from raftsched.v1 import jobs_pb2

TERMINAL = {jobs_pb2.SUCCEEDED, jobs_pb2.FAILED, jobs_pb2.CANCELLED}


@dataclass
class ChaosReport:
    seed: int
    acknowledged: int = 0
    terminal: int = 0
    lost: list[str] = field(default_factory=list)  # acknowledged, in no replica's state
    unfinished: list[str] = field(default_factory=list)  # acknowledged, not terminal in time
    succeeded: int = 0
    failed: int = 0
    succeeded_twice: list[str] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)
    token_regressions: list[str] = field(default_factory=list)
    success_without_run: list[str] = field(default_factory=list)
    fenced_completions: int = 0  # runs that completed but whose token was already stale
    attempts_started: int = 0
    python_succeeded: int = 0  # of `succeeded`: Python tasks (worker pools)
    leader_kills: int = 0
    follower_kills: int = 0
    follower_stops: int = 0
    leader_stops: int = 0
    replicas: list[tuple[str, int, str]] = field(default_factory=list)
    replicas_identical: bool = False
    audits: list[str] = field(default_factory=list)  # `raftsched audit` of each node's files
    audit_ok: bool = False
    events: list[str] = field(default_factory=list)
    # The ledger lines and attempt records of (up to 5) jobs with a finding: e.g. which
    # attempt (node, token) held the lock, and when (the test dir is usually gone when
    # a CI log is read).
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (not self.lost and not self.unfinished and not self.succeeded_twice and not self.overlaps
                and not self.token_regressions and not self.success_without_run
                and self.replicas_identical and self.terminal == self.acknowledged
                and self.audit_ok)

    def summary(self) -> str:
        lines = [
            f"seed={self.seed}",
            f"jobs acknowledged={self.acknowledged} terminal={self.terminal} succeeded={self.succeeded} "
            f"failed={self.failed} (python tasks succeeded={self.python_succeeded}) "
            f"attempts started={self.attempts_started}",
            f"faults: leader SIGKILL={self.leader_kills} leader SIGSTOP={self.leader_stops} "
            f"follower SIGKILL={self.follower_kills} follower SIGSTOP={self.follower_stops}",
            f"lost={len(self.lost)} unfinished={len(self.unfinished)} succeeded_twice={len(self.succeeded_twice)} "
            f"overlapping_attempts={len(self.overlaps)} token_regressions={len(self.token_regressions)} "
            f"success_without_run={len(self.success_without_run)} "
            f"fenced_completions={self.fenced_completions}",
            "replicas: " + ", ".join(f"{n} applied={i} digest={d[:12]}" for n, i, d in self.replicas)
            + f" -> identical={self.replicas_identical}",
            *(f"audit: {a}" for a in self.audits),
        ]
        for name in ("lost", "unfinished", "succeeded_twice", "overlaps", "token_regressions", "success_without_run"):
            items = getattr(self, name)
            if items:
                lines.append(f"{name}: {items[:10]}")
        lines += (f"ledger: {d}" for d in self.details[:40])
        return "\n".join(lines)


PYTHON_SHARE = 0.3  # of the chaos jobs, Python tasks in the nodes' worker pools (issue 14)


def job_spec(root: Path, rng: random.Random) -> jobs_pb2.JobSpec:
    ledger, locks = root / "ledger.txt", root / "locks"
    rec = "$RAFTSCHED_JOB_ID $RAFTSCHED_ATTEMPT $RAFTSCHED_FENCING_TOKEN $RAFTSCHED_NODE_ID"
    dur = round(rng.uniform(0.1, 1.2), 2)
    inner = f'echo "S {rec} $(date +%s.%N)" >> {ledger}; sleep {dur}; echo "E {rec} $(date +%s.%N)" >> {ledger}'
    script = (f"flock -n {locks}/$RAFTSCHED_JOB_ID -c '{inner}' "
              f'|| {{ echo "OVERLAP {rec} $(date +%s.%N)" >> {ledger}; exit 99; }}')
    res = jobs_pb2.Resources(cpu_millis=250, memory_mib=16)
    if rng.random() < PYTHON_SHARE:  # a Python task writing the same ledger (dev/chaostask.py)
        args = json.dumps([str(ledger), str(locks), dur])
        return jobs_pb2.JobSpec(name="chaos-py", resources=res, python=jobs_pb2.PythonCall(
            target="raftsched.dev.chaostask:ledger_task", args_json=args))
    return jobs_pb2.JobSpec(use_shell=True, shell=script, name="chaos", resources=res)


class Chaos:
    def __init__(self, root: Path, seed: int, duration: float, jobs: int,
                 min_leader_kills: int = 3, min_follower_events: int = 3,
                 log: Any = print, hosts: list[str] | None = None,
                 wrap: Callable[[str], list[str]] | None = None, cluster_extra: str = "") -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.seed = seed
        self.duration = duration
        self.jobs = jobs
        self.min_leader_kills = min_leader_kills
        self.min_follower_events = min_follower_events
        self.log = log
        (root / "locks").mkdir(parents=True, exist_ok=True)
        (root / "ledger.txt").touch()
        path = write_config(root, 3, cpu=2000, mem=2048, cluster_extra='log_level = "info"\n' + cluster_extra,
                            secret="chaos-secret-" + uuid.uuid4().hex, hosts=hosts)
        self.cfg = configmod.load(path)
        self.cluster = LocalCluster(self.cfg, log_dir=root / "logs", wrap=wrap)
        self.report = ChaosReport(seed)
        self.acked: list[str] = []
        self._stop = threading.Event()

    def client(self) -> Client:
        return Client([n.grpc for n in self.cfg.nodes], timeout=30, tls=self.cluster.tls(), token=self.cluster.token)

    def leader(self, c: Client) -> str | None:
        try:
            return c.status().leader_id or None
        except grpc.RpcError:
            return None

    # ---- workload -----------------------------------------------------------------

    def _submitter(self) -> None:
        rng = random.Random(self.seed + 1)
        interval = self.duration * 0.85 / self.jobs
        with self.client() as c:
            i = 0
            while i < self.jobs and not self._stop.is_set():
                n = 1 if rng.random() < 0.7 else min(rng.randint(2, 5), self.jobs - i)
                specs = [job_spec(self.root, rng) for _ in range(n)]
                try:
                    ids = c.submit_batch(specs) if n > 1 else [c.submit(specs[0])]
                    self.acked.extend(ids)
                except grpc.RpcError as e:  # not acknowledged: not counted
                    self.log(f"submission not acknowledged: {e.code().name} {e.details()}")
                i += n
                time.sleep(interval * n)

    def _faults(self) -> None:
        rng = self.rng
        end = time.monotonic() + self.duration
        r = self.report
        with self.client() as c:
            time.sleep(2.0)
            while time.monotonic() < end and not self._stop.is_set():
                lead = self.leader(c)
                if lead is None:
                    time.sleep(0.5)
                    continue
                followers = [n.id for n in self.cfg.nodes if n.id != lead]
                need_leader = r.leader_kills < self.min_leader_kills
                need_follower = r.follower_kills + r.follower_stops < self.min_follower_events
                choice = rng.choice(["leader_kill", "follower_kill", "follower_stop", "leader_stop"])
                if need_leader and (not need_follower or rng.random() < 0.5):
                    choice = "leader_kill"
                elif need_follower and not need_leader:
                    choice = rng.choice(["follower_kill", "follower_stop"])
                target = lead if choice.startswith("leader") else rng.choice(followers)
                if choice.endswith("kill"):
                    self._event(f"SIGKILL {target} ({'leader' if target == lead else 'follower'})")
                    self.cluster.signal(target, signal.SIGKILL)
                    time.sleep(rng.uniform(0.5, 2.5))
                    self._event(f"restart {target}")
                    self.cluster.start_node(target)
                    if target == lead:
                        r.leader_kills += 1
                    else:
                        r.follower_kills += 1
                else:
                    self._event(f"SIGSTOP {target} ({'leader' if target == lead else 'follower'})")
                    self.cluster.signal(target, signal.SIGSTOP)
                    time.sleep(rng.uniform(2.0, 3.5))  # longer than the heartbeat TTL
                    self._event(f"SIGCONT {target}")
                    self.cluster.signal(target, signal.SIGCONT)
                    if target == lead:
                        r.leader_stops += 1
                    else:
                        r.follower_stops += 1
                time.sleep(rng.uniform(2.0, 4.0))

    def _event(self, what: str) -> None:
        stamp = f"{time.time():.3f} {what}"
        self.report.events.append(stamp)
        self.log(stamp)

    # ---- run and check --------------------------------------------------------------

    def run(self, settle: float = 120.0) -> ChaosReport:
        self.cluster.start()
        try:
            with self.client() as c:
                c.wait_for_leader(120)  # node start is slow on a loaded machine
                deadline = time.monotonic() + 30
                while sum(n.alive for n in c.nodes()) < 3 and time.monotonic() < deadline:
                    time.sleep(0.1)
            sub = threading.Thread(target=self._submitter, name="submitter")
            flt = threading.Thread(target=self._faults, name="faults")
            sub.start()
            flt.start()
            sub.join()
            flt.join()
            self._event("faults stopped; settling")
            self._settle(settle)
            self._check()
        finally:
            self._stop.set()
            self.cluster.stop()
        self._audit()
        return self.report

    def _audit(self) -> None:
        """Replay every node's snapshot + journal offline and check the invariants."""
        from raftsched.replica.audit import audit_data_dir

        reps = [audit_data_dir(self.cfg.node_data_dir(n.id)) for n in self.cfg.nodes]
        self.report.audits = [r.summary().replace("\n", " | ") for r in reps]
        self.report.audit_ok = all(r.ok for r in reps)

    def _settle(self, settle: float) -> None:
        with self.client() as c:
            deadline = time.monotonic() + settle
            want = set(self.acked)
            while time.monotonic() < deadline:
                try:
                    done = {j.id for j in c.list_all() if j.state in TERMINAL}
                    if want <= done:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.5)

    def _check(self) -> None:
        r = self.report
        with self.client() as c:
            jobs = {j.id: j for j in c.list_all()}
            try:
                reps = wait_identical(c, 30)
            except TimeoutError as e:
                reps = e.args[1]
        r.replicas = [(x.node_id, x.applied_index, x.state_digest) for x in reps]
        r.replicas_identical = bool(reps) and all(x.reachable for x in reps) and len(
            {(x.applied_index, x.state_digest) for x in reps}) == 1
        r.acknowledged = len(self.acked)
        (self.root / "acked.txt").write_text("".join(f"{j}\n" for j in self.acked))
        for jid in self.acked:
            j = jobs.get(jid)
            if j is None or j.state not in TERMINAL:
                (r.lost if j is None else r.unfinished).append(jid)
                continue
            r.terminal += 1
            r.succeeded += j.state == jobs_pb2.SUCCEEDED
            r.python_succeeded += j.state == jobs_pb2.SUCCEEDED and bool(j.spec.python.target)
            r.failed += j.state == jobs_pb2.FAILED
            if sum(h.state == jobs_pb2.SUCCEEDED for h in j.history) > 1:
                r.succeeded_twice.append(jid)
        starts: dict[str, list[tuple[float, int, int]]] = collections.defaultdict(list)
        ends: dict[str, list[int]] = collections.defaultdict(list)
        by_job: dict[str, list[str]] = collections.defaultdict(list)
        for line in (self.root / "ledger.txt").read_text().splitlines():
            parts = line.split()
            if len(parts) != 6:
                continue
            by_job[parts[1]].append(line)
            kind, jid, attempt, token, _node, ts = parts
            if kind == "OVERLAP":
                r.overlaps.append(f"{jid} attempt {attempt} token {token} found another attempt alive")
            elif kind == "S":
                starts[jid].append((float(ts), int(attempt), int(token)))
            elif kind == "E":
                ends[jid].append(int(token))
        r.attempts_started = sum(len(v) for v in starts.values())
        for jid, ss in starts.items():
            ss.sort()
            toks = [t for _, _, t in ss]
            if any(b <= a for a, b in itertools.pairwise(toks)):
                r.token_regressions.append(f"{jid}: tokens in start order {toks}")
        for jid in self.acked:
            j = jobs.get(jid)
            if j is None or j.state != jobs_pb2.SUCCEEDED:
                continue
            done_tokens = ends.get(jid, [])
            if j.fencing_token not in done_tokens:
                r.success_without_run.append(jid)
            r.fenced_completions += sum(1 for t in done_tokens if t != j.fencing_token)
        flagged = [x.split()[0].rstrip(":") for x in (*r.overlaps, *r.token_regressions, *r.succeeded_twice,
                                                      *r.success_without_run, *r.lost, *r.unfinished)]
        r.details = finding_details(flagged, by_job, jobs)


def finding_details(flagged: list[str], ledger: dict[str, list[str]], jobs: dict[str, Any],
                    most: int = 5) -> list[str]:
    """For the first `most` flagged job ids: their ledger lines, final state and attempts."""
    out: list[str] = []
    for jid in list(dict.fromkeys(flagged))[:most]:
        out += ledger.get(jid, [])
        j = jobs.get(jid)
        if j is not None:
            out.append(f"{jid} final: {jobs_pb2.JobState.Name(j.state)} attempt {j.attempt} "
                       f"token {j.fencing_token} node {j.node_id}")
            out += (f"{jid} attempt {a.attempt} node {a.node_id} token {a.fencing_token} "
                    f"{a.outcome}: {a.reason}" for a in j.attempts)
    return out


def wait_identical(c: Client, timeout: float) -> list[Any]:
    deadline = time.monotonic() + timeout
    reps: list[Any] = []
    while time.monotonic() < deadline:
        try:
            reps = list(c.status(include_replicas=True).replicas)
            if all(x.reachable for x in reps) and len({(x.applied_index, x.state_digest) for x in reps}) == 1:
                return reps
        except grpc.RpcError:
            pass
        time.sleep(0.5)
    raise TimeoutError("replicas not identical", reps)
