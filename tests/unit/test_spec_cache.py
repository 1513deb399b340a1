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
