from __future__ import annotations

from raftsched.core.model import Job, Resources
from raftsched.core.placement import Candidate, Strategy, place
from tests.unit.fsm_helpers import node, spec


def job(i: int, cpu: int = 100, prio: int = 0) -> Job:
    return Job(id=f"j{i}", spec=spec(cpu=cpu, prio=prio), seq=i, submitted_at=0.0)


def test_spread_balances_and_binpack_fills() -> None:
    nodes = [Candidate(node("n1"), Resources()), Candidate(node("n2"), Resources())]
    spread = place([job(i) for i in range(4)], nodes, Strategy.SPREAD)
    assert [a.node_id for a in spread] == ["n1", "n2", "n1", "n2"]
    packed = place([job(i) for i in range(4)], nodes, Strategy.BINPACK)
    assert {a.node_id for a in packed} == {"n1"}


def test_skips_what_does_not_fit_and_backfills() -> None:
    nodes = [Candidate(node("n1", cpu=500), Resources(300, 0))]
    out = place([job(1, cpu=400), job(2, cpu=200)], nodes)
    assert [a.job_id for a in out] == ["j2"]


def test_down_nodes_get_nothing() -> None:
    from dataclasses import replace

    dead = replace(node("n1"), alive=False)
    assert place([job(1)], [Candidate(dead, Resources())]) == []
