"""The bounds `scripts/bench` prints from its baselines and measured CPU."""

from __future__ import annotations

from raftsched.dev.benchbase import bounds, pct


def test_c1_floor_is_one_grpc_round_trip_plus_one_commit() -> None:
    r = {"baselines": {"grpc_echo": [{"concurrency": 1, "p50_ms": 0.75}, {"concurrency": 64, "p50_ms": 16.0}],
                       "raft_only": [{"window": 1, "p50_ms": 1.75}, {"window": 64, "p50_ms": 65.0}]}}
    (line,) = bounds(r, 2)
    assert "p50 >= 2.50 ms" in line


def test_cpu_bound_spreads_the_cores_over_the_three_nodes_cpu_per_job() -> None:
    r = {"cpu": {"single_c64": {"leader_ms": 2.0, "follower_ms": 1.0}}}
    (line,) = bounds(r, 2)
    assert "<=      500 jobs/s" in line and "4.000 ms" in line  # 2 cores / (2 + 2 x 1) ms


def test_nothing_measured_no_bound() -> None:
    assert bounds({}, 2) == []
    assert pct([], 50) != pct([], 50)  # NaN
