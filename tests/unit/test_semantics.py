"""Job semantics on the pure fsm: retries, DEAD, cancel, timeouts, keys, sequences, queue order."""

from __future__ import annotations

import pytest

from raftsched.core import apply as fsm
from raftsched.core import constraints as cons
from raftsched.core import retry
from raftsched.core import runqueue as queue
from raftsched.core.commands import (
    Assign,
    AssignItem,
    CancelJob,
    FinishedItem,
    JobsFinished,
    JobsStarted,
    NodeDown,
    NodeUp,
    PurgeDead,
    RetryDead,
    StartedItem,
    SubmitJobs,
)
from raftsched.core.model import Constraint, JobSpec, JobState, Node, Resources, RetryPolicy
from raftsched.core.placement import Candidate, Strategy, place

_n = 0


def rid() -> str:
    global _n
    _n += 1
    return f"r{_n}"


def cluster(nodes: int = 2, labels: list[dict[str, str]] | None = None) -> fsm.ClusterState:
    st = fsm.ClusterState()
    for i in range(nodes):
        lab = tuple(sorted((labels[i] if labels else {}).items()))
        fsm.apply(st, NodeUp(rid(), 1.0, Node(f"n{i + 1}", "a", "b", Resources(1000, 1000), lab)))
    return st


def spec(**kw) -> JobSpec:
    return JobSpec(command=("true",), **kw)


def submit(st, jid: str, sp: JobSpec, ts: float = 10.0, key: str = "") -> fsm.Result:
    return fsm.apply(st, SubmitJobs(rid(), ts, ((jid, sp),), keys=(key,) if key else ()))


def assign(st, jid: str, node: str, ts: float) -> int | str:
    job = st.jobs[jid]
    return fsm.apply(st, Assign(rid(), ts, (AssignItem(jid, node, job.attempt),))).value[0]


def finish(st, jid: str, ts: float, code: int | None = 0, timed_out: bool = False,
           retry_at: float = 0.0, error: str = "") -> str:
    j = st.jobs[jid]
    item = FinishedItem(jid, j.attempt, j.fencing_token, code, timed_out, error, retry_at=retry_at)
    return fsm.apply(st, JobsFinished(rid(), ts, (item,))).value[0]


def test_backoff_math() -> None:
    p = RetryPolicy(max_attempts=5, initial_delay_s=1.0, multiplier=2.0, max_delay_s=5.0)
    assert [retry.backoff_delay(p, n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    pj = RetryPolicy(max_attempts=5, initial_delay_s=2.0, multiplier=1.0, max_delay_s=5.0, jitter=0.5)
    assert retry.backoff_delay(pj, 1, 0.0) == 1.0 and retry.backoff_delay(pj, 1, 1.0) == 3.0
    assert retry.should_retry(p, 4) and not retry.should_retry(p, 5)
    assert not retry.should_retry(RetryPolicy(), 1)
    assert "multiplier" in (retry.validate_policy(RetryPolicy(max_attempts=2, multiplier=0.5)) or "")


def test_fail_twice_then_succeed_with_backoff() -> None:
    st = cluster()
    p = RetryPolicy(max_attempts=3, initial_delay_s=1.0, multiplier=3.0, max_delay_s=100)
    submit(st, "j", spec(retry=p))
    assert isinstance(assign(st, "j", "n1", 11.0), int)
    assert finish(st, "j", 12.0, code=1, retry_at=13.25) == ""
    j = st.jobs["j"]
    assert j.state is JobState.PENDING and j.failures == 1 and j.not_before == 13.25
    assert queue.runnable(st, 13.0) == []
    assert "retry time" in str(assign(st, "j", "n1", 13.0))
    assert isinstance(assign(st, "j", "n2", 13.3), int)
    assert finish(st, "j", 14.0, timed_out=True, code=-15) == ""  # no retry_at: fsm fallback
    j = st.jobs["j"]
    assert j.state is JobState.PENDING and j.not_before == 14.0 + 3.0
    assert [a.outcome for a in j.attempts] == ["FAILED", "TIMED_OUT"]
    assert isinstance(assign(st, "j", "n1", 17.5), int)
    assert finish(st, "j", 18.0, code=0) == ""
    j = st.jobs["j"]
    assert j.state is JobState.SUCCEEDED and j.attempt == 3 and j.failures == 2


def test_budget_exhausted_goes_dead_then_dlq_retry_and_purge() -> None:
    st = cluster()
    submit(st, "j", spec(retry=RetryPolicy(max_attempts=2, initial_delay_s=0)))
    for t in (11.0, 13.0):
        assign(st, "j", "n1", t)
        finish(st, "j", t + 1, code=3)
    j = st.jobs["j"]
    assert j.state is JobState.DEAD and "2 failed attempts" in j.reason and "exit code 3" in j.reason
    assert len(j.attempts) == 2
    assert fsm.apply(st, CancelJob(rid(), 20.0, "j")).code is fsm.Code.PRECONDITION
    res = fsm.apply(st, RetryDead(rid(), 21.0, "j"))
    assert res.ok and st.jobs["j"].state is JobState.PENDING and st.jobs["j"].failures == 0
    assign(st, "j", "n1", 22.0)
    assert st.jobs["j"].attempt == 3  # attempts keep growing across a DLQ retry
    finish(st, "j", 23.0, code=3)
    finish_again = fsm.apply(st, RetryDead(rid(), 24.0, "j"))
    assert finish_again.code is fsm.Code.PRECONDITION  # PENDING again (fresh budget of 2)
    assign(st, "j", "n1", 25.0)
    finish(st, "j", 26.0, code=3)
    assert st.jobs["j"].state is JobState.DEAD
    res = fsm.apply(st, PurgeDead(rid(), 30.0))
    assert res.value == ("j",) and "j" not in st.jobs and st.counts[JobState.DEAD] == 0


def test_no_policy_keeps_failed_and_timed_out() -> None:
    st = cluster()
    submit(st, "a", spec())
    submit(st, "b", spec(timeout_s=0.5))
    assign(st, "a", "n1", 11.0)
    assign(st, "b", "n1", 11.0)
    finish(st, "a", 12.0, code=2)
    finish(st, "b", 12.0, code=-15, timed_out=True)
    assert st.jobs["a"].state is JobState.FAILED and st.jobs["a"].reason == "exit code 2"
    assert st.jobs["b"].state is JobState.TIMED_OUT and "timed out after 0.5s" in st.jobs["b"].reason
    res = fsm.apply(st, RetryDead(rid(), 13.0, "a"))
    assert res.code is fsm.Code.PRECONDITION and "not DEAD" in res.message


def test_node_down_does_not_count_against_budget() -> None:
    st = cluster()
    submit(st, "j", spec(retry=RetryPolicy(max_attempts=1)))
    assign(st, "j", "n1", 11.0)
    fsm.apply(st, NodeDown(rid(), 12.0, "n1", "test"))
    j = st.jobs["j"]
    assert j.state is JobState.PENDING and j.failures == 0 and j.attempts[-1].outcome == "LOST"
    assign(st, "j", "n2", 13.0)
    finish(st, "j", 14.0, code=0)
    assert st.jobs["j"].state is JobState.SUCCEEDED


def test_cancel_running_holds_capacity_until_reported() -> None:
    st = cluster(1)
    submit(st, "j", spec(resources=Resources(1000, 10)))
    assign(st, "j", "n1", 11.0)
    j = st.jobs["j"]
    fsm.apply(st, JobsStarted(rid(), 11.5, (StartedItem("j", j.attempt, j.fencing_token),)))
    res = fsm.apply(st, CancelJob(rid(), 12.0, "j"))
    assert res.ok and st.jobs["j"].state is JobState.CANCELLING
    assert st.allocated("n1").cpu_millis == 1000  # still held
    submit(st, "k", spec(resources=Resources(1000, 10)))
    assert "does not fit" in str(assign(st, "k", "n1", 12.5))
    assert finish(st, "j", 13.0, code=-15, error="killed: revoked by leader") == ""
    j = st.jobs["j"]
    assert j.state is JobState.CANCELLED and j.attempts[-1].outcome == "CANCELLED"
    assert st.allocated("n1").cpu_millis == 0
    res = fsm.apply(st, CancelJob(rid(), 14.0, "j"))
    assert res.code is fsm.Code.PRECONDITION and "already finished as CANCELLED" in res.message


def test_cancelling_on_dead_node_ends_cancelled() -> None:
    st = cluster(1)
    submit(st, "j", spec())
    assign(st, "j", "n1", 11.0)
    fsm.apply(st, CancelJob(rid(), 12.0, "j"))
    assert fsm.apply(st, NodeDown(rid(), 13.0, "n1", "x")).value == ()
    assert st.jobs["j"].state is JobState.CANCELLED


def test_idempotency_keys() -> None:
    st = cluster()
    r1 = submit(st, "a", spec(), ts=100.0, key="k1")
    r2 = submit(st, "b", spec(), ts=150.0, key="k1")
    assert r1.value == ("a",) and r2.value == ("a",) and "b" not in st.jobs
    r3 = submit(st, "c", spec(name="other"), ts=160.0, key="k1")
    assert r3.code is fsm.Code.INVALID and "different spec" in r3.message
    # after the retention window the key is forgotten (pruned by command time)
    r4 = fsm.apply(st, SubmitJobs(rid(), 100.0 + 86400 + 1, (("d", spec()),), keys=("k1",)))
    assert r4.value == ("d",)
    r5 = fsm.apply(st, SubmitJobs(rid(), 200000.0, (("e", spec()),), keys=("k2",), key_retention_s=10))
    assert "k1" not in st.idem and r5.ok
    twice = fsm.apply(st, SubmitJobs(rid(), 1.0, (("f", spec()), ("g", spec())), keys=("x", "x")))
    assert twice.code is fsm.Code.INVALID


def test_constraints_checked_at_apply_and_placement() -> None:
    st = cluster(2, labels=[{"pool": "light"}, {"pool": "heavy"}])
    heavy = spec(constraints=(Constraint("pool", "eq", "heavy"),))
    submit(st, "h", heavy)
    assert "does not satisfy constraint pool=heavy" in str(assign(st, "h", "n1", 11.0))
    cands = [Candidate(n, Resources(0, 0)) for n in st.nodes.values()]
    assert [i.node_id for i in place([st.jobs["h"]], cands)] == ["n2"]
    assert cons.parse("size!=a|b") == Constraint("size", "not_in", "a,b")
    assert cons.parse("!gpu") == Constraint("gpu", "not_exists")
    assert cons.validate([Constraint("pool", "bogus")]) is not None


def test_sequence_key_one_at_a_time_in_order() -> None:
    st = cluster(2)
    for i in range(3):
        submit(st, f"s{i}", spec(sequence_key="q", priority=i * 10))
    submit(st, "free", spec())
    ids = [j.id for j in queue.runnable(st, 20.0)]
    assert ids == ["s0", "free"]  # despite s2's higher priority
    assert "waits for job s0" in str(assign(st, "s1", "n1", 20.0))
    assign(st, "s0", "n1", 20.0)
    assert [j.id for j in queue.runnable(st, 20.0)] == ["free"]
    finish(st, "s0", 21.0, code=0)
    assert [j.id for j in queue.runnable(st, 21.0)] == ["s1", "free"]


def test_priority_order_fifo_and_aging() -> None:
    st = cluster()
    submit(st, "low", spec(priority=0), ts=0.0)
    submit(st, "high", spec(priority=100), ts=50.0)
    assert [j.id for j in queue.runnable(st, 60.0)] == ["high", "low"]
    assert [j.id for j in queue.runnable(st, 60.0, queue.QueueOrder.FIFO)] == ["low", "high"]
    # aging 1 point/s: at t=60 low has 60, high 110
    assert [j.id for j in queue.runnable(st, 60.0, aging_rate=1.0)] == ["high", "low"]
    # at t=200 the old low job (200) beats a fresh high-priority one (100 + 1)
    submit(st, "fresh", spec(priority=100), ts=199.0)
    assert [j.id for j in queue.runnable(st, 200.0, aging_rate=1.0)] == ["high", "low", "fresh"]
    assert [j.id for j in queue.runnable(st, 200.0)] == ["high", "fresh", "low"]  # no aging


def test_round_robin_node_choice() -> None:
    st = cluster(3)
    for i in range(4):
        submit(st, f"j{i}", spec())
    # n1 was assigned to last (recency token 1): round-robin continues after it
    cands = [Candidate(n, Resources(0, 0), last=int(n.id == "n1")) for n in st.nodes.values()]
    items = place(queue.runnable(st, 20.0), cands, Strategy.ROUND_ROBIN)
    assert [i.node_id for i in items] == ["n2", "n3", "n1", "n2"]


def test_snapshot_roundtrip_keeps_semantic_state() -> None:
    st = cluster()
    submit(st, "a", spec(sequence_key="q", retry=RetryPolicy(max_attempts=3)), key="k")
    submit(st, "b", spec(sequence_key="q"))
    assign(st, "a", "n1", 11.0)
    finish(st, "a", 12.0, code=1, retry_at=20.0)
    st2 = fsm.ClusterState.from_dict(st.to_dict())
    assert st2 == st
    assert st2.sequences == st.sequences and st2.idem == st.idem
    assert st2.jobs["a"].not_before == 20.0 and st2.jobs["a"].attempts == st.jobs["a"].attempts


@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT])
def test_terminal_states_refuse_reports(state: JobState) -> None:
    st = cluster()
    submit(st, "j", spec())
    assign(st, "j", "n1", 11.0)
    code = {JobState.SUCCEEDED: 0, JobState.FAILED: 1, JobState.TIMED_OUT: None}[state]
    finish(st, "j", 12.0, code=code, timed_out=state is JobState.TIMED_OUT)
    assert st.jobs["j"].state is state
    assert "report refused" in finish(st, "j", 13.0, code=0)


def test_check_placeable_names_the_constraint() -> None:
    from raftsched.core import validate

    nodes = [("n1", {"pool": "light"}, Resources(1000, 1000)), ("n2", {"pool": "heavy"}, Resources(4000, 1000))]
    ok = spec(constraints=(Constraint("pool", "eq", "heavy"),), resources=Resources(3000, 10))
    assert validate.check_placeable(ok, nodes) is None
    msg = validate.check_placeable(spec(constraints=(Constraint("pool", "eq", "gpu"),)), nodes)
    assert msg and "pool=gpu" in msg
    both = spec(constraints=(Constraint("pool", "eq", "heavy"), Constraint("pool", "ne", "heavy")))
    msg = validate.check_placeable(both, nodes)
    assert msg and "together" in msg
    big = spec(constraints=(Constraint("pool", "eq", "light"),), resources=Resources(3000, 10))
    msg = validate.check_placeable(big, nodes)
    assert msg and "exceed every node satisfying the constraints (n1)" in msg


def test_new_commands_roundtrip_through_the_codec() -> None:
    from raftsched.core import codec

    cmds = [
        RetryDead("a", 1.0, "j"),
        PurgeDead("b", 2.0, ("x", "y")),
        SubmitJobs("c", 3.0, (("j", spec(retry=RetryPolicy(max_attempts=2, jitter=0.1),
                                         constraints=(Constraint("k", "in", "a,b"),),
                                         sequence_key="s")),), keys=("k1",), key_retention_s=5.0),
        JobsFinished("d", 4.0, (FinishedItem("j", 1, 2, 3, retry_at=9.5),)),
    ]
    assert codec.decode_entry(codec.encode_entry(cmds)) == cmds
    # an old entry without the new fields still decodes, with defaults
    old = codec.decode_entry(b'[[1,{"rid":"e","ts":1.0,"jobs":[["j",{"command":["true"]}]]}]]')
    assert old[0].keys == () and old[0].jobs[0][1].retry == RetryPolicy()
