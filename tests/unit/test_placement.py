from __future__ import annotations

import collections
from dataclasses import replace

import pytest

from raftsched.core import apply as fsm
from raftsched.core.commands import Assign, AssignItem, NodeUp, SubmitWorkflow, WorkflowJob
from raftsched.core.explain import explain_job, plan_spec
from raftsched.core.model import Constraint, Job, JobSpec, JobState, Resources, RetryPolicy
from raftsched.core.placement import Candidate, Check, Strategy, candidates, place, plan
from tests.unit.fsm_helpers import cluster, finished, node, rid, spec, started, submit


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
    dead = replace(node("n1"), alive=False)
    assert place([job(1)], [Candidate(dead, Resources())]) == []


# ---- spreading that spreads ----------------------------------------------------------------


def _run_one(st: fsm.ClusterState, sp: JobSpec, strategy: Strategy = Strategy.SPREAD) -> str:
    """Submit one job, place it as the leader would, apply the Assign, finish it."""
    (jid,) = submit(st, sp)
    items = place([st.jobs[jid]], candidates(st), strategy)
    assert len(items) == 1
    assert isinstance(fsm.apply(st, Assign(rid(), 3.0, tuple(items))).value[0], int)
    started(st, jid)
    finished(st, jid, 0)
    return items[0].node_id


@pytest.mark.parametrize("strategy", [Strategy.SPREAD, Strategy.ROUND_ROBIN])
def test_sequential_jobs_on_an_idle_cluster_take_turns(strategy: Strategy) -> None:
    st = cluster("n1", "n2", "n3")
    counts = collections.Counter(_run_one(st, spec(), strategy) for _ in range(60))
    assert counts == {"n1": 20, "n2": 20, "n3": 20}


def test_recency_is_replicated_state() -> None:
    st = cluster("n1", "n2")
    _run_one(st, spec())
    again = fsm.ClusterState.from_dict(st.to_dict())
    assert again.digest() == st.digest()
    assert [c.last for c in candidates(again)] == [c.last for c in candidates(st)] == [1, 0]


def test_retry_prefers_another_node_when_one_fits() -> None:
    st = cluster("n1", "n2", cpu=1000)
    retrying = JobSpec(command=("x",), resources=Resources(600, 64),
                       retry=RetryPolicy(max_attempts=3, initial_delay_s=0.0))
    (jid,) = submit(st, retrying)
    first = place([st.jobs[jid]], candidates(st))[0].node_id
    fsm.apply(st, Assign(rid(), 3.0, (AssignItem(jid, first, 0),)))
    finished(st, jid, 1, retry_at=3.0)
    assert st.jobs[jid].state is JobState.PENDING
    # the other node is busier (another job holds 300m), yet the retry goes there
    other = "n2" if first == "n1" else "n1"
    (busy,) = submit(st, spec(cpu=300))
    fsm.apply(st, Assign(rid(), 3.0, (AssignItem(busy, other, 0),)))
    decision = plan([st.jobs[jid]], candidates(st), explain=True).decisions[0]
    assert decision.node_id == other and decision.avoided == first
    # when only the failed node fits, it is used after all
    (hog,) = submit(st, spec(cpu=400))
    fsm.apply(st, Assign(rid(), 3.0, (AssignItem(hog, other, 0),)))
    assert place([st.jobs[jid]], candidates(st))[0].node_id == first


# ---- dedicated pools -------------------------------------------------------------------------


def pooled() -> fsm.ClusterState:
    st = cluster("n1", "n2")
    heavy = replace(node("n3", cpu=4000), labels=(("pool", "heavy"),), dedicated="heavy")
    assert fsm.apply(st, NodeUp(rid(), 1.0, heavy)).ok
    return st


def test_dedicated_node_takes_only_jobs_asking_for_its_pool() -> None:
    st = pooled()
    plain = submit(st, *[spec()] * 16)
    by_field = submit(st, *[replace(spec(), pool="heavy")] * 3)
    by_constraint = submit(st, *[replace(spec(), constraints=(Constraint("pool", "in", "heavy,gpu"),))] * 3)
    items = place([st.jobs[j] for j in plain + by_field + by_constraint], candidates(st))
    where = {i.job_id: i.node_id for i in items}
    assert len(where) == 22
    assert {where[j] for j in plain} == {"n1", "n2"}
    assert {where[j] for j in by_field + by_constraint} == {"n3"}
    # the compare-and-swap at apply refuses what placement would never propose
    (extra,) = submit(st, spec())
    res = fsm.apply(st, Assign(rid(), 3.0, (AssignItem(extra, "n3", 0),)))
    assert res.value == ("node n3 is dedicated to pool heavy, which the job does not ask for",)
    (lost,) = submit(st, replace(spec(), pool="heavy"))
    res = fsm.apply(st, Assign(rid(), 3.0, (AssignItem(lost, "n1", 0),)))
    assert "does not satisfy constraint pool=heavy (has no label pool)" in res.value[0]


def test_submit_validation_knows_dedicated_pools() -> None:
    from raftsched.core import validate

    nodes = [("n1", {"pool": "heavy"}, Resources(1000, 1000), "heavy")]
    msg = validate.check_placeable(spec(), nodes)
    assert msg and msg.startswith("pool:") and "n1: heavy" in msg
    assert validate.check_placeable(replace(spec(), pool="heavy"), nodes) is None
    msg = validate.check_placeable(replace(spec(), pool="gpu"), nodes)
    assert msg and "pool=gpu" in msg
    assert "pool 'bad name'" in (validate.validate_spec(replace(spec(), pool="bad name")) or "")


# ---- explanations -----------------------------------------------------------------------------


def test_explain_names_the_failing_check_per_node() -> None:
    st = pooled()
    n3 = replace(st.nodes["n3"], alive=False)
    fsm.apply(st, NodeUp(rid(), 1.0, replace(node("n4", cpu=3000), labels=(("pool", "heavy"),))))
    st.nodes["n3"] = n3  # as a NodeDown leaves it (no jobs there)
    for n, cpu in (("n1", 900), ("n2", 600)):
        (hog,) = submit(st, spec(cpu=cpu))
        fsm.apply(st, Assign(rid(), 3.0, (AssignItem(hog, n, 0),)))
    (big,) = submit(st, replace(spec(cpu=500), constraints=(Constraint("pool", "ne", "heavy"),)))
    e = explain_job(st, st.jobs[big], 10.0)
    checks = {v.node_id: (v.check, v.detail) for v in e.verdicts}
    assert checks == {
        "n1": (Check.CPU, "cpu 900+500m > 1000m"),
        "n2": (Check.CPU, "cpu 600+500m > 1000m"),
        "n3": (Check.DOWN, "down"),
        "n4": (Check.LABELS, "does not satisfy constraint pool!=heavy (has pool=heavy)"),
    }
    assert e.node_id == "" and e.holds == ()
    assert e.summary.startswith("no node can take it now: n1: cpu 900+500m > 1000m; ")
    fits = plan_spec(st, spec(cpu=300), 10.0)
    assert fits.node_id == "n4" and fits.summary == "would be placed on n4"  # emptiest
    assert [v.check for v in fits.verdicts] == [Check.CPU, Check.OK, Check.DOWN, Check.OK]
    assert fits.ranked == ("n4", "n2")


def test_explain_names_sequence_dependency_and_retry_holds() -> None:
    st = cluster("n1")
    first, second = submit(st, replace(spec(), sequence_key="q"), replace(spec(), sequence_key="q"))
    e = explain_job(st, st.jobs[second], 10.0)
    assert e.holds == (f"sequence: job {second} waits for job {first} (sequence_key 'q')",)
    assert e.summary.startswith("waiting: sequence:") and e.node_id == "n1"
    assert plan_spec(st, replace(spec(), sequence_key="q"), 10.0).holds[0].startswith(
        f"sequence: would wait for job {first} and 1 more")

    wf = SubmitWorkflow(rid(), 2.0, "w", "w", (WorkflowJob("w-a", spec()),
                                               WorkflowJob("w-b", spec(), ("w-a",))))
    assert fsm.apply(st, wf).ok
    e = explain_job(st, st.jobs["w-b"], 10.0)
    assert e.state is JobState.WAITING
    assert e.holds == ("dependency: waits for job w-a (PENDING) to succeed",)

    (flaky,) = submit(st, replace(spec(), retry=RetryPolicy(max_attempts=2)))
    fsm.apply(st, Assign(rid(), 3.0, (AssignItem(flaky, "n1", 0),)))
    finished(st, flaky, 1, retry_at=20.0)
    e = explain_job(st, st.jobs[flaky], 10.0)
    assert e.holds[0].startswith("retry delay: attempt 2 not before 20.000 (in 10.0s)")
    assert e.avoided == "n1" and e.node_id == "n1"  # the only node: used after all
    assert explain_job(st, st.jobs[first], 10.0).holds == ()
    fsm.apply(st, Assign(rid(), 3.0, (AssignItem(first, "n1", 0),)))
    e = explain_job(st, st.jobs[first], 10.0)
    assert (e.summary, e.verdicts) == ("not pending: ASSIGNED on node n1", ())


# ---- config: pools and dedicated nodes ---------------------------------------------------------


def _cfg(**node: object) -> dict:
    base = {"id": "n1", "raft": "127.0.0.1:1", "grpc": "127.0.0.1:2", "cpu_millis": 1000,
            "memory_mib": 1000}
    return {"cluster": {"secret": "s"}, "nodes": [{**base, **node}]}


def test_config_pools_and_dedicated_nodes(tmp_path) -> None:
    from raftsched.config import ConfigError, parse

    p = tmp_path / "c.toml"
    assert parse(_cfg(), p).nodes[0].dedicated == ""
    n = parse(_cfg(pool="heavy", dedicated=True), p).nodes[0]
    assert (n.labels, n.dedicated) == ({"pool": "heavy"}, "heavy")
    n = parse(_cfg(labels={"pool": "gpu"}, dedicated=True), p).nodes[0]
    assert n.dedicated == "gpu"
    for bad, words in ((_cfg(dedicated=True), "dedicated = true needs a pool"),
                       (_cfg(pool="a", labels={"pool": "b"}), "give one"),
                       (_cfg(pool="no spaces"), "pool"),
                       (_cfg(pool="a", dedicated="yes"), "expected true or false")):
        with pytest.raises(ConfigError, match=words):
            parse(bad, p)
