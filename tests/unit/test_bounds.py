"""Request bounds: every string, list, map, enum and float of a request is checked."""

from __future__ import annotations

import math

from raftsched.rpc import bounds as limits
from raftsched.v1 import events_pb2, jobs_pb2, scheduler_pb2, workflows_pb2


def test_a_normal_request_passes() -> None:
    spec = jobs_pb2.JobSpec(command=["echo", "hi"], env={"A": "b"}, working_dir="/tmp",
                            constraints=[jobs_pb2.Constraint(key="pool", value="x")])
    assert limits.check(scheduler_pb2.SubmitJobsRequest(specs=[spec] * 3, request_id="r1")) is None


def test_long_strings_name_their_field() -> None:
    spec = jobs_pb2.JobSpec(command=["true"], working_dir="/" + "x" * 10_000_000)
    err = limits.check(scheduler_pb2.SubmitJobRequest(spec=spec))
    assert err is not None and err.startswith("spec.working_dir: 10000001 characters")
    err = limits.check(scheduler_pb2.SubmitJobRequest(request_id="r" * (1 << 20)))
    assert err is not None and err.startswith("request_id:")
    big = jobs_pb2.Constraint(key="k", value="v" * 10_000_000)
    err = limits.check(scheduler_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(constraints=[big])))
    assert err is not None and err.startswith("spec.constraints[0].value:")


def test_counts_of_lists_and_maps() -> None:
    many = [jobs_pb2.Constraint(key="k")] * 100_000
    err = limits.check(scheduler_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(constraints=many)))
    assert err == "spec.constraints: 100000 entries; at most 64"
    env = {f"K{i}": "v" for i in range(5000)}
    err = limits.check(scheduler_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(env=env)))
    assert err == "spec.env: 5000 entries; at most 1024"
    err = limits.check(scheduler_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(env={"A": "v" * 70_000})))
    assert err == "spec.env['A']: 70000 characters; at most 65536"
    err = limits.check(scheduler_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(env={"K" * 300: "v"})))
    assert err == f"spec.env key {'K' * 40!r}: 300 characters; at most 256"
    specs = [jobs_pb2.JobSpec(command=["true"])] * 3 + [jobs_pb2.JobSpec(command=["x" * 70_000])]
    err = limits.check(scheduler_pb2.SubmitJobsRequest(specs=specs))  # repeated specs checked once
    assert err == "specs[3].command[0]: 70000 characters; at most 65536"


def test_unknown_enum_numbers_and_bad_floats() -> None:
    err = limits.check(scheduler_pb2.ListJobsRequest(states=[1, 77]))
    assert err is not None and err.startswith("states[1]: unknown value 77")
    err = limits.check(events_pb2.WatchJobsRequest(states=[99]))
    assert err is not None and "unknown value 99" in err
    for bad in (math.nan, math.inf, 1e18):
        err = limits.check(workflows_pb2.NextFireTimesRequest(after=bad))
        assert err is not None and err.startswith("after:"), err
    err = limits.check(scheduler_pb2.SubmitJobRequest(spec=jobs_pb2.JobSpec(timeout_seconds=math.nan)))
    assert err is not None and err.startswith("spec.timeout_seconds:")


def test_every_report_a_node_makes_fits_the_agent_bounds() -> None:
    """A node's FINISHED report carries what the node itself allows (a Python task's
    return value up to MAX_RESULT_BYTES, output tails): the agent must accept it, or the
    report would be refused forever (the CI failure of issue 14's tests)."""
    from raftsched.core.pytask import MAX_RESULT_BYTES
    from raftsched.node.reports import Report, ReportKind
    from raftsched.node.worker import report_to_pb
    from raftsched.v1 import node_pb2

    r = Report("j1", 1, 7, ReportKind.FINISHED, 1.0, exit_code=0, stdout_tail="o" * 4000,
               stderr_tail="e" * 4000, error="x" * 4000, result='"' + "r" * (MAX_RESULT_BYTES - 2) + '"')
    req = node_pb2.ReportJobsRequest(node_id="n1", reports=[report_to_pb(r)])
    assert limits.check(req) is None
    req.reports[0].result_json += "x"
    assert limits.check(req) == f"reports[0].result_json: {MAX_RESULT_BYTES + 1} characters; at most {MAX_RESULT_BYTES}"
