"""dag.py: validation messages, cycles, topological order, descendants."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftsched.core import dag

pytestmark = pytest.mark.timeout(60)


def test_cycle_is_named() -> None:
    deps = {"a": [], "b": ["a", "d"], "c": ["b"], "d": ["c"]}
    msg = dag.validate(deps)
    assert msg == "dependency cycle: b -> d -> c -> b (each job depends on the next)"


def test_self_and_unknown_dependency() -> None:
    assert dag.validate({"a": ["a"]}) == "job 'a' depends on itself: remove 'a' from its depends_on"
    msg = dag.validate({"a": [], "b": ["zz"]})
    assert msg is not None and "'b' depends on 'zz', which is not a job of this workflow" in msg


def test_size_and_names() -> None:
    big = {f"j{i}": [] for i in range(dag.MAX_WORKFLOW_JOBS + 1)}
    assert dag.validate(big) == f"workflow has {len(big)} jobs; at most {dag.MAX_WORKFLOW_JOBS} in one workflow"
    assert dag.validate({}) == "workflow has no jobs"
    msg = dag.validate({"bad name": []})
    assert msg is not None and "job name 'bad name' is invalid" in msg
    assert dag.validate({"a": [], "b": ["a", "a"]}) == "job 'b' lists a dependency twice"


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    n = draw(st.integers(1, 40))
    names = [f"j{i}" for i in range(n)]
    deps: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        parents = draw(st.sets(st.integers(0, i - 1), max_size=4)) if i else set()
        deps[name] = [names[p] for p in sorted(parents)]
    return deps


@settings(max_examples=100, deadline=None)
@given(dags())
def test_topo_order_respects_every_edge(deps: dict[str, list[str]]) -> None:
    assert dag.validate(deps) is None
    order = dag.topo_order(deps)
    assert sorted(order) == sorted(deps)
    pos = {n: i for i, n in enumerate(order)}
    for n, ps in deps.items():
        for p in ps:
            assert pos[p] < pos[n]


@settings(max_examples=100, deadline=None)
@given(dags(), st.data())
def test_adding_a_back_edge_makes_a_named_cycle(deps: dict[str, list[str]], data: st.DataObject) -> None:
    kids = dag.children(deps)
    roots_with_desc = [n for n in deps if dag.descendants(n, kids)]
    if not roots_with_desc:
        return
    a = data.draw(st.sampled_from(sorted(roots_with_desc)))
    d = data.draw(st.sampled_from(dag.descendants(a, kids)))
    deps = {k: list(v) for k, v in deps.items()}
    deps[a].append(d)  # a now depends on its own descendant
    cycle = dag.find_cycle(deps)
    assert cycle is not None and cycle[0] == cycle[-1]
    for x, y in itertools.pairwise(cycle):
        assert y in deps[x]  # each job depends on the next
    msg = dag.validate(deps)
    assert msg is not None and msg.startswith("dependency cycle: ")


@settings(max_examples=100, deadline=None)
@given(dags())
def test_descendants_are_exactly_the_reachable_jobs(deps: dict[str, list[str]]) -> None:
    kids = dag.children(deps)
    for start in deps:
        want = set()
        frontier = [start]
        while frontier:
            x = frontier.pop()
            for n, ps in deps.items():
                if x in ps and n not in want:
                    want.add(n)
                    frontier.append(n)
        got = dag.descendants(start, kids)
        assert len(got) == len(set(got)) and set(got) == want
