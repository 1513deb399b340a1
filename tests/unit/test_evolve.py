"""core.evolve.replace is dataclasses.replace, faster: same records, same errors."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftsched.core import evolve
from raftsched.core.model import AttemptRecord, Job, JobSpec, JobState, Node, Resources, Transition

A = Job("a", JobSpec(command=("true",)), 1, 1.0)
B = Job("b", JobSpec(command=("false",), priority=3), 7, 2.5, JobState.FAILED, 2, "n2", 9, 3.0, 4.0, 5.0, 1,
        "boom", "out", "err", (Transition(1.0, JobState.PENDING),), "wf", ("x",), "s", 6.0, 7.0, 1,
        (AttemptRecord(1, "n1", 8, 2.0, 3.0, "FAILED"),), 8.0, "me", "you", "[1]", 9.0)
N1 = Node("n1", "h:1", "h:2", Resources(1000, 100))
N2 = Node("n2", "i:1", "i:2", Resources(2000, 200), (("k", "v"),), False, 5.0, "inc", 3)


def names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


@given(st.sets(st.sampled_from(names(Job))))
def test_a_job_with_any_fields_changed_is_the_same_as_dataclasses_makes(changed: set[str]) -> None:
    ch = {n: getattr(B, n) for n in changed}
    new = evolve.replace(A, **ch)
    assert type(new) is Job and new == dataclasses.replace(A, **ch) and hash(new) == hash(dataclasses.replace(A, **ch))
    assert Job("a", JobSpec(command=("true",)), 1, 1.0) == A  # the original is untouched


@given(st.sets(st.sampled_from(names(Node))))
def test_a_node_too(changed: set[str]) -> None:
    ch = {n: getattr(N2, n) for n in changed}
    assert evolve.replace(N1, **ch) == dataclasses.replace(N1, **ch)


def test_unknown_fields_are_refused_and_frozen_stays_frozen() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        evolve.replace(A, state=JobState.RUNNING, nope=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        evolve.replace(A, attempt=2).attempt = 3  # type: ignore[misc]


def test_classes_it_cannot_copy_go_to_dataclasses() -> None:
    @dataclasses.dataclass(frozen=True)
    class Plain:  # no slots
        x: int
        y: int = 0

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        x: int

        def __post_init__(self) -> None:
            if self.x < 0:
                raise ValueError("x < 0")

    assert evolve.replace(Plain(1, 2), y=3) == Plain(1, 3)
    with pytest.raises(ValueError, match="x < 0"):
        evolve.replace(Checked(1), x=-1)
    assert evolve._copiers[Plain] is None and evolve._copiers[Checked] is None


def test_changes_may_be_none_or_falsy() -> None:
    j: Any = evolve.replace(B, exit_code=None, reason="", attempt=0)
    assert (j.exit_code, j.reason, j.attempt) == (None, "", 0)
