"""The CLI's JSON form of messages: 64-bit integers are numbers, at every depth."""

from __future__ import annotations

import json

from raftsched.cli.format import job_summary, message_dict
from raftsched.v1 import cluster_pb2, jobs_pb2


def test_int64_fields_are_numbers_at_every_depth() -> None:
    j = jobs_pb2.Job(id="j1", fencing_token=7, seq=3, state=jobs_pb2.SUCCEEDED,
                     spec=jobs_pb2.JobSpec(command=["true"], env={"A": "1"},
                                           resources=jobs_pb2.Resources(cpu_millis=2000, memory_mib=64)),
                     attempts=[jobs_pb2.AttemptRecord(attempt=1, fencing_token=7)],
                     history=[jobs_pb2.JobTransition(state=jobs_pb2.PENDING, fencing_token=0)])
    d = json.loads(json.dumps(message_dict(j)))
    assert d["fencing_token"] == 7 and d["seq"] == 3
    assert d["spec"]["resources"] == {"cpu_millis": 2000, "memory_mib": 64}
    assert d["attempts"][0]["fencing_token"] == 7 and d["history"][0]["fencing_token"] == 0
    assert d["state"] == "SUCCEEDED" and d["spec"]["env"] == {"A": "1"}
    assert d["exit_code"] == 0 and d["reason"] == ""  # fields without presence are all there


def test_map_of_int64_and_summary() -> None:
    st = cluster_pb2.ClusterStatusResponse(jobs_by_state={"PENDING": 4})
    d = message_dict(st)
    assert d["jobs_by_state"] == {"PENDING": 4}
    j = jobs_pb2.Job(id="j", spec=jobs_pb2.JobSpec(shell="echo", use_shell=True, name="n"))
    s = job_summary(j)
    assert s["command"] == "echo" and s["exit_code"] is None and s["finished_at"] is None


def test_members_table_shows_each_control_address() -> None:
    from raftsched.cli.members import _rows

    own = cluster_pb2.Member(id="n1", raft_address="10.0.0.1:7000", grpc_address="10.0.0.1:7100",
                             control_address="10.0.0.1:9999")
    default = cluster_pb2.Member(id="n2", raft_address="10.0.0.2:7000", grpc_address="10.0.0.2:7100")
    lines = _rows([own, default]).splitlines()
    assert "CONTROL" in lines[0]
    assert "10.0.0.1:9999" in lines[1] and "10.0.0.2:7200" in lines[2]  # default: gRPC port + 100
