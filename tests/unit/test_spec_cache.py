"""Specs converted from protobuf are reused while the same bytes come again (submissions,
starts), per default namespace, with bounded memory."""

from __future__ import annotations

import pytest

from raftsched.rpc import convert
from raftsched.v1 import jobs_pb2


def test_converted_specs_are_reused_by_bytes_and_namespace_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convert, "_spec_cache", {})
    monkeypatch.setattr(convert, "SPEC_CACHE_ENTRIES", 3)
    pb = jobs_pb2.JobSpec(command=["true"], env={"A": "b"})
    a, b = convert.spec_from_pb_cached(pb, "x"), convert.spec_from_pb_cached(jobs_pb2.JobSpec.FromString(
        pb.SerializeToString()), "x")
    assert a is b and a == convert.spec_from_pb(pb, "x")
    assert convert.spec_from_pb_cached(pb, "y").namespace == "y"  # the default namespace is in the key
    big = jobs_pb2.JobSpec(shell="x" * 10_000)
    assert convert.spec_from_pb_cached(big).shell == "x" * 10_000
    assert len(convert._spec_cache) == 2  # the big one is not kept
    for i in range(5):
        convert.spec_from_pb_cached(jobs_pb2.JobSpec(command=[str(i)]))
    assert len(convert._spec_cache) == 3


def test_a_large_spec_repeated_in_one_request_is_converted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convert, "_spec_cache", {})
    calls = []
    real = convert.spec_from_pb
    monkeypatch.setattr(convert, "spec_from_pb", lambda p, ns="default": calls.append(1) or real(p, ns))
    big = jobs_pb2.JobSpec(shell="x" * 10_000)
    request: dict = {}
    specs = [convert.spec_from_pb_cached(big, "ns", request) for _ in range(100)]
    assert len(calls) == 1 and all(s is specs[0] for s in specs)
    assert convert._spec_cache == {}  # too large for the shared cache
