"""The chaos report names, for a job with a finding, what the ledger and the cluster
know of each of its attempts (the test dir is usually gone when a CI log is read)."""

from __future__ import annotations

from raftsched.dev.chaos import ChaosReport, finding_details
from raftsched.v1 import jobs_pb2


def test_overlap_details_show_both_lock_holders_and_the_attempts() -> None:
    ledger = {
        "b2": ["S b2 2 330 n1 10.5", "OVERLAP b2 1 320 n3 10.9", "E b2 2 330 n1 11.2"],
        "other": ["S other 1 5 n2 1.0"],
    }
    job = jobs_pb2.Job(id="b2", state=jobs_pb2.SUCCEEDED, attempt=2, fencing_token=330, node_id="n1",
                       attempts=[jobs_pb2.AttemptRecord(attempt=1, node_id="n3", fencing_token=320,
                                                        outcome="LOST", reason="node n3 restarted"),
                                 jobs_pb2.AttemptRecord(attempt=2, node_id="n1", fencing_token=330,
                                                        outcome="SUCCEEDED")])
    r = ChaosReport(seed=1, overlaps=["b2 attempt 1 token 320 found another attempt alive"])
    r.details = finding_details(["b2", "b2"], ledger, {"b2": job, "other": job})
    assert r.details == [
        "S b2 2 330 n1 10.5", "OVERLAP b2 1 320 n3 10.9", "E b2 2 330 n1 11.2",
        "b2 final: SUCCEEDED attempt 2 token 330 node n1",
        "b2 attempt 1 node n3 token 320 LOST: node n3 restarted",
        "b2 attempt 2 node n1 token 330 SUCCEEDED: ",
    ]
    text = r.summary()
    assert "overlapping_attempts=1" in text and "ledger: OVERLAP b2 1 320 n3 10.9" in text


def test_details_are_bounded_and_survive_a_job_missing_from_the_state() -> None:
    ledger = {f"j{i}": [f"S j{i} 1 {i} n1 1.0"] for i in range(9)}
    out = finding_details([f"j{i}" for i in range(9)], ledger, {})
    assert out == [f"S j{i} 1 {i} n1 1.0" for i in range(5)]
