"""Hypothesis: placement's decision, its explanation and the Assign compare-and-swap agree
for random clusters (labels, pools, dedicated nodes, down nodes, load) and random jobs."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from raftsched.core import apply as fsm
from raftsched.core import constraints as cons
from raftsched.core.commands import Assign, AssignItem, NodeDown, NodeUp, SubmitJobs
from raftsched.core.explain import explain_job
from raftsched.core.fit import fits
from raftsched.core.model import Constraint, JobSpec, Node, Resources
from raftsched.core.placement import Strategy, candidates, plan, refusal
from tests.unit.fsm_helpers import rid

POOLS = ["a", "b", "c"]


@st.composite
def nodes(draw: st.DrawFn) -> list[tuple[Node, Resources]]:
    out = []
    count = draw(st.integers(1, 5))
    for i in draw(st.permutations(range(count))):  # registration order is not id order
        cap = Resources(draw(st.integers(1, 8)) * 500, draw(st.integers(1, 8)) * 256)
        labels = {}
        pool = draw(st.sampled_from(["", *POOLS]))
        if pool:
            labels["pool"] = pool
        if draw(st.booleans()):
            labels["size"] = draw(st.sampled_from(["s", "l"]))
        dedicated = pool if pool and draw(st.booleans()) else ""
        n = Node(f"n{i + 1}", f"h:{i}", f"r:{i}", cap, tuple(sorted(labels.items())),
                 alive=draw(st.booleans()), dedicated=dedicated)
        used = Resources(draw(st.integers(0, cap.cpu_millis // 100)) * 100,
                         draw(st.integers(0, cap.memory_mib // 64)) * 64)
        out.append((n, used))
    return out


constraint = st.builds(
    Constraint,
    st.sampled_from(["pool", "size"]),
    st.sampled_from(["eq", "ne", "in", "not_in", "exists", "not_exists"]),
    st.sampled_from(["a", "b", "s", "l", "a,b", "s,l"]),
).map(lambda c: replace(c, value="") if c.op in ("exists", "not_exists") else c)

specs = st.builds(
    lambda cpu, mem, cs, pool: JobSpec(command=("true",), resources=Resources(cpu, mem),
                                       constraints=tuple(cs), pool=pool),
    st.integers(1, 40).map(lambda k: k * 100),
    st.integers(1, 16).map(lambda k: k * 64),
    st.lists(constraint, max_size=2),
    st.sampled_from(["", *POOLS]),
)


def build(cluster: list[tuple[Node, Resources]], spec: JobSpec) -> fsm.ClusterState:
    """A replica with these nodes, each holding `used` through a filler job, plus job 'x'."""
    s = fsm.ClusterState()
    for n, used in cluster:
        assert fsm.apply(s, NodeUp(rid(), 1.0, replace(n, alive=True))).ok
        if n.alive and (used.cpu_millis or used.memory_mib):
            fill = JobSpec(command=("sleep",), resources=used, pool=n.dedicated)
            fsm.apply(s, SubmitJobs(rid(), 2.0, ((f"fill-{n.id}", fill),)))
            res = fsm.apply(s, Assign(rid(), 2.0, (AssignItem(f"fill-{n.id}", n.id, 0),)))
            assert isinstance(res.value[0], int), res
        if not n.alive:
            assert fsm.apply(s, NodeDown(rid(), 2.0, n.id, "test")).ok
    assert fsm.apply(s, SubmitJobs(rid(), 3.0, (("x", spec),))).ok
    return s


def independent_ok(spec: JobSpec, node: Node, used: Resources) -> bool:
    """The placement rules restated from their definitions, not through check_node."""
    labels = dict(node.labels)
    asks = {spec.pool} if spec.pool else set()
    for c in spec.constraints:
        if c.key == "pool" and c.op in ("eq", "in"):
            asks |= {v for v in c.value.split(",") if v}
    wanted = [*spec.constraints, *([Constraint("pool", "eq", spec.pool)] if spec.pool else [])]
    return (node.alive
            and (not node.dedicated or node.dedicated in asks)
            and all(cons.holds(c, labels) for c in wanted)
            and fits(node.capacity, used, spec.resources))


@settings(max_examples=300, deadline=None)
@given(nodes(), specs, st.sampled_from(list(Strategy)))
def test_decision_explanation_and_cas_agree(cluster: list[tuple[Node, Resources]], spec: JobSpec,
                                            strategy: Strategy) -> None:
    s = build(cluster, spec)
    job = s.jobs["x"]
    planned = plan([job], candidates(s), strategy, explain=True)
    decision = planned.decisions[0]
    assert [i.node_id for i in planned.items] == ([decision.node_id] if decision.node_id else [])
    e = explain_job(s, job, 10.0, strategy)
    assert (e.node_id, e.verdicts, e.ranked) == (decision.node_id, decision.verdicts, decision.ranked)
    used = {n.id: u if n.alive else Resources() for n, u in cluster}
    by_id = {n.id: n for n, _ in cluster}
    for v in e.verdicts:
        assert v.ok == independent_ok(spec, by_id[v.node_id], used[v.node_id]), v
        # the compare-and-swap at apply accepts exactly the nodes the explanation calls ok
        replica = fsm.ClusterState.from_dict(s.to_dict())
        out = fsm.apply(replica, Assign(rid(), 10.0, (AssignItem("x", v.node_id, 0),))).value[0]
        assert isinstance(out, int) if v.ok else out == refusal("x", v)
    feasible = [v.node_id for v in e.verdicts if v.ok]
    assert sorted(e.ranked) == sorted(feasible)
    assert e.node_id == (e.ranked[0] if e.ranked else "")
    if e.node_id:
        assert e.summary.startswith(f"placeable on {e.node_id}")
    else:
        assert e.summary == "no node can take it now: " + "; ".join(v.describe() for v in e.verdicts)
