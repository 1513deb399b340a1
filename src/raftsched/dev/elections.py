"""Watching elections from outside: each node's Raft gauges and counters from its
Prometheus endpoint (term, role, pre-vote counters), and a sampler that records every
leader the reachable nodes report while a fault is applied. Used by the pre-vote
partition test and scripts/bench_elections."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field

from raftsched.config import ClusterConfig

PREFIX = "raftsched_raft_"


def scrape_raft(metrics_addr: str, timeout: float = 1.0) -> dict[str, float] | None:
    """The node's raftsched_raft_* samples (role as role_<name>, safety and pre-vote
    events by their event name, counters without the _total suffix), or None if it
    does not answer."""
    try:
        with urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=timeout) as r:
            text = r.read().decode()
    except OSError:
        return None
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(PREFIX):
            continue
        name, _, value = line.rpartition(" ")
        key = name[len(PREFIX):]
        if key.startswith("role{"):
            key = "role_" + key.split('"')[1]
        elif key.startswith("safety_events_total{"):
            key = key.split('"')[1]  # the Raft-safety and pre-vote counters by event name
        elif "{" in key or key.endswith(("_bucket", "_created", "_count", "_sum")):
            continue
        out[key.removesuffix("_total")] = float(value)
    return out


def role(sample: dict[str, float]) -> str:
    for r in ("leader", "candidate", "follower"):
        if sample.get(f"role_{r}") == 1.0:
            return r
    return "unknown"


def raft_views(cfg: ClusterConfig, nodes: Iterable[str] | None = None) -> dict[str, dict[str, float]]:
    """Samples of every answering node (of `nodes`, default all)."""
    want = set(nodes) if nodes is not None else {n.id for n in cfg.nodes}
    views = {}
    for n in cfg.nodes:
        if n.id in want and n.metrics:
            s = scrape_raft(n.metrics)
            if s is not None:
                views[n.id] = s
    return views


def max_term(views: dict[str, dict[str, float]]) -> int:
    return int(max((v.get("term", 0) for v in views.values()), default=0))


def leaders(views: dict[str, dict[str, float]]) -> list[str]:
    return sorted(nid for nid, v in views.items() if role(v) == "leader")


def wait_settled(cfg: ClusterConfig, timeout: float = 30.0, leader: str | None = None,
                 period: float = 0.1) -> tuple[str, dict[str, dict[str, float]]]:
    """Wait until every node answers, exactly one (or `leader`) says it leads, and every
    node has its commit index; return that leader and the views."""
    deadline = time.monotonic() + timeout
    views: dict[str, dict[str, float]] = {}
    while time.monotonic() < deadline:
        views = raft_views(cfg)
        found = leaders(views)
        if len(views) == len(cfg.nodes) and len(found) == 1 and leader in (None, found[0]):
            commit = views[found[0]]["commit_index"]
            if all(v["commit_index"] >= commit for v in views.values()):
                return found[0], views
        time.sleep(period)
    raise TimeoutError(f"no settled leader{' ' + leader if leader else ''} within {timeout:g}s: "
                       f"{ {n: (role(v), v.get('term')) for n, v in views.items()} }")


@dataclass
class LeaderLog:
    """Leaders (by the nodes' own role gauges) seen by a background sampler."""

    cfg: ClusterConfig
    period: float = 0.1
    seen: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> LeaderLog:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            found = tuple(leaders(raft_views(self.cfg)))
            if not self.seen or self.seen[-1][1] != found:
                self.seen.append((time.monotonic(), found))
            self._stop.wait(self.period)

    def leader_set(self) -> set[str]:
        """Every node that reported itself leader at some sample."""
        return {nid for _, found in self.seen for nid in found}
