"""fsm_workflows: workflow release/upstream failure, cancel, schedule firing
(at most once per instant, concurrency policies), templates, snapshots."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftsched.core import codec, dag
from raftsched.core.apply import apply
from raftsched.core.commands import (
    AddSchedule,
    Assign,
    AssignItem,
    CancelWorkflow,
    DeleteTemplate,
    FinishedItem,
    FireSchedule,
    JobsFinished,
    NodeUp,
    PutTemplate,
    RunScheduleNow,
    SetSchedulePaused,
    SubmitWorkflow,
    WorkflowJob,
)
from raftsched.core.model import JobSpec, JobState, Node, Resources
from raftsched.core.state import ClusterState, Code
from raftsched.core.workflow_types import Concurrency, Schedule, Template
from raftsched.core.workflows import schedules, templates

pytestmark = pytest.mark.timeout(60)

SPEC = JobSpec(command=("true",))
_rid = iter(range(10**9))


def rid() -> str:
    return f"r{next(_rid)}"


def new_state() -> ClusterState:
    s = ClusterState()
    assert apply(s, NodeUp(rid(), 1.0, Node("n1", "g", "r", Resources(10**6, 10**6)))).ok
    return s


def run(s: ClusterState, jid: str, exit_code: int) -> None:
    j = s.jobs[jid]
    assert j.state is JobState.PENDING, (jid, j.state)
    res = apply(s, Assign(rid(), 2.0, (AssignItem(jid, "n1", j.attempt),)))
    assert isinstance(res.value[0], int)
    j = s.jobs[jid]
    assert apply(s, JobsFinished(rid(), 3.0, (FinishedItem(jid, j.attempt, j.fencing_token, exit_code),))).ok


def submit(s: ClusterState, deps: dict[str, list[str]], wf: str = "wf") -> None:
    jobs = tuple(WorkflowJob(f"{wf}-{n}", SPEC, tuple(f"{wf}-{p}" for p in ps)) for n, ps in deps.items())
    res = apply(s, SubmitWorkflow(rid(), 1.5, wf, "test", jobs))
    assert res.ok, res.message


def test_release_only_when_all_parents_succeeded() -> None:
    s = new_state()
    submit(s, {"a": [], "b": [], "c": ["a", "b"]})
    assert set(s.pending) == {"wf-a", "wf-b"}
    assert s.jobs["wf-c"].state is JobState.WAITING
    run(s, "wf-a", 0)
    assert s.jobs["wf-c"].state is JobState.WAITING and "wf-c" not in s.pending
    run(s, "wf-b", 0)
    assert s.jobs["wf-c"].state is JobState.PENDING and "wf-c" in s.pending


def test_refused_workflows_change_nothing() -> None:
    s = new_state()
    before = s.digest()
    for deps in ({"a": ["b"], "b": ["a"]}, {"a": ["a"]}, {"a": ["x"]}):
        jobs = tuple(WorkflowJob(n, SPEC, tuple(ps)) for n, ps in deps.items())
        res = apply(s, SubmitWorkflow("bad", 1.0, "w", "", jobs))
        assert res.code is Code.INVALID
        s.dedup.pop("bad")  # the refusal itself is remembered; nothing else
    # digest of the state rebuilt from scratch (the pop above bypassed apply's bookkeeping)
    assert ClusterState.from_dict(s.to_dict()).digest() == before


@st.composite
def dag_and_failure(draw: st.DrawFn) -> tuple[dict[str, list[str]], list[int], int]:
    n = draw(st.integers(2, 30))
    deps = {}
    for i in range(n):
        ps = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        deps[f"j{i}"] = [f"j{p}" for p in sorted(ps)]
    order = dag.topo_order(deps)
    fail = draw(st.integers(0, n - 1))
    return deps, [int(x[1:]) for x in order], fail


@settings(max_examples=60, deadline=None)
@given(dag_and_failure())
def test_failure_marks_exactly_the_waiting_descendants(case: tuple[dict[str, list[str]], list[int], int]) -> None:
    deps, order, fail = case
    s = new_state()
    submit(s, deps)
    failed = f"j{fail}"
    # run everything in order; the chosen job fails
    for i in order:
        jid = f"wf-j{i}"
        if s.jobs[jid].state is JobState.PENDING:
            run(s, jid, 1 if f"j{i}" == failed else 0)
    desc = set(dag.descendants(failed, dag.children(deps)))
    states = {k.removeprefix("wf-"): j.state for k, j in s.jobs.items()}
    if states[failed] is JobState.FAILED:
        assert {k for k, v in states.items() if v is JobState.UPSTREAM_FAILED} == desc
        assert all(v is JobState.SUCCEEDED for k, v in states.items() if k not in desc | {failed})
    # no job ran before all its parents succeeded (history order)
    for name, ps in deps.items():
        j = s.jobs[f"wf-{name}"]
        if j.state is JobState.SUCCEEDED:
            assert all(s.jobs[f"wf-{p}"].state is JobState.SUCCEEDED for p in ps)
    # snapshot round trip keeps everything
    assert ClusterState.from_dict(s.to_dict()).digest() == s.digest()


def test_cancel_workflow_cancels_unstarted_and_leaves_running() -> None:
    s = new_state()
    submit(s, {"a": [], "b": ["a"], "c": ["b"], "d": []})
    run(s, "wf-d", 0)
    j = s.jobs["wf-a"]
    apply(s, Assign(rid(), 2.0, (AssignItem("wf-a", "n1", j.attempt),)))
    res = apply(s, CancelWorkflow(rid(), 4.0, "wf"))
    assert res.ok and res.value == (2, ("wf-a",))
    st_ = {k: j.state for k, j in s.jobs.items()}
    assert st_ == {"wf-a": JobState.ASSIGNED, "wf-b": JobState.CANCELLED, "wf-c": JobState.CANCELLED,
                   "wf-d": JobState.SUCCEEDED}
    # a running parent finishing later releases nothing
    j = s.jobs["wf-a"]
    apply(s, JobsFinished(rid(), 5.0, (FinishedItem("wf-a", j.attempt, j.fencing_token, 0),)))
    assert s.jobs["wf-b"].state is JobState.CANCELLED


def sched(**kw: object) -> Schedule:
    return Schedule(id=str(kw.pop("id", "s")), cron="* * * * * *", spec=SPEC, **kw)  # type: ignore[arg-type]


def test_fire_is_at_most_once_per_instant() -> None:
    s = new_state()
    assert apply(s, AddSchedule(rid(), 100.5, sched())).ok
    res = apply(s, FireSchedule(rid(), 102.1, "s", (101.0, 102.0), 102.0))
    assert res.ok and res.value == (("s-101", "s-102"), 0)
    # a second leader proposing an overlapping fire: old instants refused, new ones run
    res = apply(s, FireSchedule(rid(), 103.1, "s", (102.0, 103.0), 103.0))
    assert res.ok and res.value == (("s-103",), 0)
    res = apply(s, FireSchedule(rid(), 103.2, "s", (103.0,), 103.0))
    assert res.code is Code.PRECONDITION and "already fired through 103.0" in res.message
    assert sorted(j for j in s.jobs if j.startswith("s-")) == ["s-101", "s-102", "s-103"]
    assert s.jobs["s-102"].scheduled_at == 102.0 and s.jobs["s-102"].schedule_id == "s"
    # nothing at or before creation fires
    s2 = new_state()
    apply(s2, AddSchedule(rid(), 100.5, sched()))
    res = apply(s2, FireSchedule(rid(), 101.1, "s", (100.0, 101.0), 101.0))
    assert res.value == (("s-101",), 0)


@pytest.mark.parametrize("policy,expect", [
    (Concurrency.ALLOW, (("s-101", "s-102"), 0)),
    (Concurrency.FORBID, (("s-101",), 1)),
    (Concurrency.REPLACE, (("s-101", "s-102"), 0)),
])
def test_concurrency_policies(policy: Concurrency, expect: tuple) -> None:
    s = new_state()
    apply(s, AddSchedule(rid(), 100.5, sched(concurrency=policy)))
    res = apply(s, FireSchedule(rid(), 102.1, "s", (101.0, 102.0), 102.0))
    assert res.value == expect
    if policy is Concurrency.REPLACE:
        assert s.jobs["s-101"].state is JobState.CANCELLED
        assert "replaced by the run scheduled at 102" in s.jobs["s-101"].reason


def test_replace_of_a_started_run_behaves_like_forbid() -> None:
    s = new_state()
    apply(s, AddSchedule(rid(), 100.5, sched(concurrency=Concurrency.REPLACE)))
    apply(s, FireSchedule(rid(), 101.1, "s", (101.0,), 101.0))
    apply(s, Assign(rid(), 101.2, (AssignItem("s-101", "n1", 0),)))
    res = apply(s, FireSchedule(rid(), 102.1, "s", (102.0,), 102.0))
    assert res.value == ((), 1)
    assert s.jobs["s-101"].state is JobState.ASSIGNED
    assert schedules(s)["s"].last_fired == 102.0 and schedules(s)["s"].skipped == 1


def test_pause_resume_and_run_now() -> None:
    s = new_state()
    apply(s, AddSchedule(rid(), 100.5, sched()))
    apply(s, SetSchedulePaused(rid(), 101.5, "s", True))
    res = apply(s, FireSchedule(rid(), 102.1, "s", (102.0,), 102.0))
    assert res.code is Code.PRECONDITION and "paused" in res.message
    apply(s, SetSchedulePaused(rid(), 105.5, "s", False))
    assert schedules(s)["s"].last_fired == 105.5  # instants passed while paused never fire
    res = apply(s, RunScheduleNow(rid(), 106.2, "s", "s-now-1"))
    assert res.ok and s.jobs["s-now-1"].schedule_id == "s"


def test_templates_crud() -> None:
    s = new_state()
    t = Template("tpl", SPEC)
    assert apply(s, PutTemplate(rid(), 1.0, t, "create")).value == 1
    assert apply(s, PutTemplate(rid(), 1.0, t, "create")).code is Code.PRECONDITION
    assert apply(s, PutTemplate(rid(), 2.0, Template("tpl", JobSpec(command=("x",))), "update")).value == 2
    assert templates(s)["tpl"].spec.command == ("x",) and templates(s)["tpl"].created_at == 1.0
    assert apply(s, PutTemplate(rid(), 2.0, Template("zz", SPEC), "update")).code is Code.NOT_FOUND
    assert ClusterState.from_dict(s.to_dict()).digest() == s.digest()
    assert apply(s, DeleteTemplate(rid(), 3.0, "tpl")).ok
    assert apply(s, DeleteTemplate(rid(), 3.0, "tpl")).code is Code.NOT_FOUND


def test_commands_round_trip_through_the_codec() -> None:
    cmds = [
        AddSchedule("a", 1.0, sched(start=5.0, end=None, concurrency=Concurrency.FORBID)),
        FireSchedule("b", 2.0, "s", (1.0, 2.0), 2.0, 3),
        SubmitWorkflow("c", 3.0, "w", "n", (WorkflowJob("w-a", SPEC), WorkflowJob("w-b", SPEC, ("w-a",)))),
        PutTemplate("d", 4.0, Template("t", SPEC, "@hourly", "Europe/Berlin"), "update"),
    ]
    assert codec.decode_entry(codec.encode_entry(cmds)) == cmds


def test_replicas_fed_the_same_commands_are_equal() -> None:
    a, b = new_state(), ClusterState()
    cmds = [NodeUp("n", 1.0, Node("n1", "g", "r", Resources(10**6, 10**6))),
            AddSchedule("x", 100.5, sched()),
            FireSchedule("y", 101.5, "s", (101.0,), 101.0),
            SubmitWorkflow("z", 102.0, "w", "n", (WorkflowJob("w-a", SPEC), WorkflowJob("w-b", SPEC, ("w-a",))))]
    a = ClusterState()
    for c in cmds:
        apply(a, c)
        apply(b, codec.decode_entry(codec.encode_entry([c]))[0])
    assert a.digest() == b.digest()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(101, 140), max_size=6), st.integers(100, 140)),
                min_size=1, max_size=25))
def test_interleaved_fire_proposals_never_fire_an_instant_twice(
        proposals: list[tuple[list[int], int]]) -> None:
    """Any sequence of FireSchedule proposals (stale leaders, retries, overlaps):
    each instant runs at most once, only instants after creation run, and
    last_fired only grows."""
    s = new_state()
    apply(s, AddSchedule(rid(), 100.5, sched()))
    last = schedules(s)["s"].last_fired
    for fire, through in proposals:
        inst = tuple(float(t) for t in sorted(set(fire)) if t <= through)
        res = apply(s, FireSchedule(rid(), 141.0, "s", inst, float(through)))
        now_last = schedules(s)["s"].last_fired
        assert now_last >= last
        if res.ok:
            assert now_last == through
        else:
            assert now_last == last
        last = now_last
    runs = [j for j in s.jobs.values() if j.schedule_id == "s"]
    assert len({j.scheduled_at for j in runs}) == len(runs)
    assert all(j.scheduled_at > 100.5 and j.id == f"s-{int(j.scheduled_at)}" for j in runs)
    assert schedules(s)["s"].runs == len(runs)
    assert ClusterState.from_dict(s.to_dict()).digest() == s.digest()
