"""docs/api.md stays true to proto/: every call of the public services is listed, and
every grpcurl example names a real method with a request body that parses as that
method's request message (field names and enum values included)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf import json_format
from google.protobuf.message_factory import GetMessageClass

from raftsched.v1 import acl_pb2, cluster_pb2, events_pb2, scheduler_pb2, workflows_pb2

DOC = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
SERVICES = {
    "Scheduler": scheduler_pb2, "Cluster": cluster_pb2, "Events": events_pb2,
    "Workflows": workflows_pb2, "Acl": acl_pb2,
}


def _service(name: str):
    return SERVICES[name].DESCRIPTOR.services_by_name[name]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_call_is_listed(name: str) -> None:
    row = next(ln for ln in DOC.splitlines() if ln.startswith(f"| `{name}` |"))
    listed = {m.strip() for m in row.split("|")[3].split(",")}
    assert listed == {m.name for m in _service(name).methods}


EXAMPLE = re.compile(r"^G (?:-d '(?P<body>[^']*)' )?\$N raftsched\.v1\.(?P<svc>\w+)/(?P<method>\w+)",
                     re.M)


def test_examples_parse_as_their_requests() -> None:
    examples = list(EXAMPLE.finditer(DOC))
    assert len(examples) >= 20
    covered = set()
    for m in examples:
        method = _service(m["svc"]).methods_by_name[m["method"]]
        covered.add(f"{m['svc']}/{m['method']}")
        body = m["body"].replace("JOB_ID", "j1").replace("WORKFLOW_ID", "w1") if m["body"] else "{}"
        json_format.Parse(body, GetMessageClass(method.input_type)())  # raises on a wrong field
    # one example per call of Scheduler, Cluster and Events
    for name in ("Scheduler", "Cluster", "Events"):
        for meth in _service(name).methods:
            assert f"{name}/{meth.name}" in covered, meth.name


def test_metadata_keys_are_the_servers() -> None:
    from raftsched.rpc import auth, writes

    for key in (auth.AUTHORIZATION, writes.APPLIED_INDEX, writes.FORWARDED):
        assert f"`{key}" in DOC, key
