"""Real 3-node cluster: DAG workflows, templates, schedules through the API and CLI.

* a 50-job DAG with diamonds runs in a valid topological order, checked from the
  start/end records the jobs themselves write to a ledger file;
* a failing job marks exactly its descendants UPSTREAM_FAILED (CLI dag submit/status);
* bad input is refused with a clear message and no state change (applied index
  and state digest of every replica unchanged).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import grpc
import pytest

from raftsched.cli import main as cli
from raftsched.client.workflows_client import WorkflowsClient
from raftsched.core import dag
from raftsched.v1 import jobs_pb2
from raftsched.v1 import workflows_pb2 as wpb
from tests.support.cluster import TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

DONE = {jobs_pb2.SUCCEEDED, jobs_pb2.FAILED, jobs_pb2.CANCELLED, jobs_pb2.UPSTREAM_FAILED}


def wclient(c: TestCluster) -> WorkflowsClient:
    return WorkflowsClient([c.addr(n.id) for n in c.cfg.nodes], token=c.token, tls=c.tls)


def diamond_dag(n: int, seed: int) -> dict[str, list[str]]:
    """n jobs: chains of diamonds (a -> b, c -> d) plus random extra edges to earlier jobs."""
    rnd = random.Random(seed)
    deps: dict[str, list[str]] = {"j00": []}
    i = 1
    while i < n:
        top = f"j{rnd.randrange(i):02d}"
        if i + 2 < n:  # a diamond below `top`
            left, right, bottom = f"j{i:02d}", f"j{i + 1:02d}", f"j{i + 2:02d}"
            deps[left] = [top]
            deps[right] = [top]
            extra = {f"j{rnd.randrange(i):02d}" for _ in range(rnd.randrange(2))} - {top}
            deps[bottom] = sorted({left, right} | extra)
            i += 3
        else:
            deps[f"j{i:02d}"] = [top]
            i += 1
    return deps


def ledger_spec(ledger: Path, name: str, fail: bool = False) -> jobs_pb2.JobSpec:
    script = (f'echo "S $RAFTSCHED_JOB_ID $(date +%s.%N)" >> {ledger}; sleep 0.05; '
              f'echo "E $RAFTSCHED_JOB_ID $(date +%s.%N)" >> {ledger}')
    if fail:
        script += "; exit 3"
    return jobs_pb2.JobSpec(use_shell=True, shell=script, name=name,
                            resources=jobs_pb2.Resources(cpu_millis=100, memory_mib=16))


def wait_workflow(wc: WorkflowsClient, wf_id: str, timeout: float = 90) -> wpb.WorkflowStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            w = wc.workflow(wf_id)
        except grpc.RpcError as e:
            # reads come from one node's replica: it may not have applied the submit yet
            if e.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline - timeout + 5:
                raise
            time.sleep(0.05)
            continue
        if all(j.job.state in DONE for j in w.jobs):
            return w
        time.sleep(0.2)
    raise TimeoutError(f"workflow {wf_id} not finished: {wc.workflow(wf_id)}")


def test_fifty_job_dag_runs_in_topological_order(cluster3: TestCluster) -> None:
    c = cluster3
    wc = wclient(c)
    deps = diamond_dag(50, seed=5)
    assert len(deps) == 50 and dag.validate(deps) is None
    diamonds = sum(1 for ps in deps.values() if len(ps) >= 2)
    assert diamonds >= 10
    ledger = c.root / "dag-ledger.txt"
    ledger.touch()
    jobs = [wpb.WorkflowJobSpec(name=n, spec=ledger_spec(ledger, n), depends_on=ps)
            for n, ps in sorted(deps.items(), key=lambda kv: -int(kv[0][1:]))]  # any order
    follower = c.followers()[0]
    r = WorkflowsClient([c.addr(follower)], token=c.token, tls=c.tls).submit_workflow("fifty", jobs)
    assert len(r.job_ids) == 50
    w = wait_workflow(wc, r.workflow_id)
    assert w.state == "SUCCEEDED", w.counts
    assert {j.name for j in w.jobs} == set(deps)

    starts: dict[str, list[float]] = {}
    ends: dict[str, list[float]] = {}
    for line in ledger.read_text().splitlines():
        kind, jid, t = line.split()
        (starts if kind == "S" else ends).setdefault(jid.removeprefix(r.workflow_id + "-"), []).append(float(t))
    assert set(starts) == set(deps) and set(ends) == set(deps)
    assert all(len(v) == 1 for v in starts.values()), "a job ran twice"
    nodes = {j.job.node_id for j in w.jobs}
    for child, parents in deps.items():
        for p in parents:
            assert ends[p][0] <= starts[child][0], f"{child} started before its parent {p} ended"
    assert len(nodes) >= 2, nodes
    c.replicas_identical()


def test_failure_marks_exactly_descendants_upstream_failed(cluster3: TestCluster, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    c = cluster3
    deps = diamond_dag(20, seed=11)
    failing = "j04"
    desc = set(dag.descendants(failing, dag.children(deps)))
    assert desc, "the failing job must have descendants"
    ledger = c.root / "dag-fail-ledger.txt"
    lines = ['name = "with-failure"']
    for n, ps in deps.items():
        spec = ledger_spec(ledger, n, fail=(n == failing))
        lines += ["[[jobs]]", f'name = "{n}"', f"shell = '{spec.shell}'", f"depends_on = {ps!r}".replace("'", '"'),
                  "cpu_millis = 100", "memory_mib = 16"]
    f = tmp_path / "wf.toml"
    f.write_text("\n".join(lines) + "\n")
    nodes = ["--config", str(c.config_path), *(a for n in c.cfg.nodes for a in ("--node", c.addr(n.id)))]
    assert cli.main([*nodes, "dag", "submit", str(f)]) == 0
    wf_id = capsys.readouterr().out.strip()
    w = wait_workflow(wclient(c), wf_id)
    states = {j.name: jobs_pb2.JobState.Name(j.job.state) for j in w.jobs}
    assert states[failing] == "FAILED"
    assert {n for n, s in states.items() if s == "UPSTREAM_FAILED"} == desc
    assert all(s == "SUCCEEDED" for n, s in states.items() if n not in desc | {failing})
    reasons = {j.name: j.job.reason for j in w.jobs if j.name in desc}
    assert all(f"upstream job {wf_id}-" in r for r in reasons.values())
    assert w.state == "FAILED"
    assert cli.main([*nodes, "dag", "status", wf_id]) == cli.EXIT_JOB_FAILED
    out = capsys.readouterr().out
    assert "UPSTREAM_FAILED" in out and failing in out


def test_templates_schedules_and_cancel_via_api_and_cli(cluster3: TestCluster,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    c = cluster3
    wc = wclient(c)
    nodes = ["--config", str(c.config_path), *(a for n in c.cfg.nodes for a in ("--node", c.addr(n.id)))]
    assert cli.main([*nodes, "template", "create", "hello", "--env", "A=1", "--cron", "@hourly",
                     "--tz", "Europe/Berlin", "--", "sh", "-c", "echo $A$B"]) == 0
    assert cli.main([*nodes, "template", "update", "hello", "--env", "A=2", "--", "sh", "-c", "echo $A$B"]) == 0
    t = wc.call("GetTemplate", wpb.GetTemplateRequest(name="hello"))
    assert t.version == 2 and dict(t.spec.env) == {"A": "2"} and not t.cron
    r = wc.call("SubmitFromTemplate", wpb.SubmitFromTemplateRequest(
        template="hello", overrides=wpb.SpecOverrides(env={"B": "x"}, priority=5)))
    job = c.wait_terminal([r.job_id])[r.job_id]
    assert job.state == jobs_pb2.SUCCEEDED and job.stdout_tail.strip() == "2x" and job.spec.priority == 5
    capsys.readouterr()
    assert cli.main([*nodes, "template", "list"]) == 0
    assert "hello" in capsys.readouterr().out

    # a schedule from the template, paused: run-now, next, resume, delete
    s = wc.add_schedule(wpb.Schedule(id="from-tpl", cron="0 3 * * *", timezone="Europe/Berlin",
                                     template="hello", paused=True))
    assert s.paused and s.next_fire == 0
    assert cli.main([*nodes, "cron", "run", "from-tpl"]) == 0
    run_id = capsys.readouterr().out.strip()
    assert run_id.startswith("from-tpl-now-")
    assert c.wait_terminal([run_id])[run_id].state == jobs_pb2.SUCCEEDED
    assert cli.main([*nodes, "cron", "resume", "from-tpl"]) == 0
    assert "from-tpl active next " in capsys.readouterr().out
    assert cli.main([*nodes, "--json", "cron", "next", "from-tpl", "--count", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("T03:00:00+0") == 3
    assert cli.main([*nodes, "cron", "next", "--cron", "30 2 * * *", "--tz", "Europe/Berlin",
                     "--count", "400"]) == 0
    assert "T03:00:00+02:00" in capsys.readouterr().out  # the spring-forward day
    assert cli.main([*nodes, "cron", "list"]) == 0
    assert "from-tpl" in capsys.readouterr().out
    assert cli.main([*nodes, "cron", "delete", "from-tpl"]) == 0
    assert cli.main([*nodes, "cron", "get", "from-tpl"]) == cli.EXIT_NOT_FOUND
    assert "schedule 'from-tpl' not found" in capsys.readouterr().err
    assert cli.main([*nodes, "template", "delete", "hello"]) == 0
    capsys.readouterr()

    # cron add through the CLI (options after the expression), and a refusal
    assert cli.main([*nodes, "cron", "add", "*/5 * * * * *", "--id", "cli-s", "--misfire", "run_all",
                     "--concurrency", "forbid", "--tz", "America/New_York", "--", "true"]) == 0
    got = wc.schedule("cli-s")
    assert (got.misfire, got.concurrency, got.timezone, list(got.spec.command)) == (
        wpb.MISFIRE_RUN_ALL, wpb.CONCURRENCY_FORBID, "America/New_York", ["true"])
    assert cli.main([*nodes, "cron", "pause", "cli-s"]) == 0
    assert wc.schedule("cli-s").paused
    assert cli.main([*nodes, "cron", "delete", "cli-s"]) == 0
    capsys.readouterr()
    assert cli.main([*nodes, "cron", "add", "0 0 30 2 *", "--", "true"]) == cli.EXIT_REFUSED
    assert "could never fire" in capsys.readouterr().err

    # cancelling a workflow cancels what has not started
    jobs = [wpb.WorkflowJobSpec(name="slow", spec=jobs_pb2.JobSpec(command=["sleep", "1.5"])),
            wpb.WorkflowJobSpec(name="after", spec=jobs_pb2.JobSpec(command=["true"]), depends_on=["slow"]),
            wpb.WorkflowJobSpec(name="last", spec=jobs_pb2.JobSpec(command=["true"]), depends_on=["after"])]
    r = wc.submit_workflow("to-cancel", jobs)
    c.wait_until(lambda: wc.workflow(r.workflow_id).jobs[0].job.state == jobs_pb2.RUNNING, 20, "slow running")
    cr = wc.call("CancelWorkflow", wpb.CancelWorkflowRequest(workflow_id=r.workflow_id))
    assert cr.cancelled == 2 and list(cr.still_running) == [f"{r.workflow_id}-slow"]
    w = wait_workflow(wc, r.workflow_id)
    assert [jobs_pb2.JobState.Name(j.job.state) for j in w.jobs] == ["SUCCEEDED", "CANCELLED", "CANCELLED"]
    assert w.state == "CANCELLED"


def _state(c: TestCluster) -> list[tuple[str, int, str]]:
    reps = c.replicas_identical()
    return [(r.node_id, r.applied_index, r.state_digest) for r in reps]


def test_bad_input_is_refused_without_state_change(cluster3: TestCluster) -> None:
    c = cluster3
    wc = wclient(c)
    spec = jobs_pb2.JobSpec(command=["true"])

    def sched(**kw: object) -> wpb.AddScheduleRequest:
        return wpb.AddScheduleRequest(schedule=wpb.Schedule(spec=spec, **kw))  # type: ignore[arg-type]

    def wf(deps: dict[str, list[str]]) -> wpb.SubmitWorkflowRequest:
        return wpb.SubmitWorkflowRequest(name="bad", jobs=[
            wpb.WorkflowJobSpec(name=n, spec=spec, depends_on=ps) for n, ps in deps.items()])

    now = time.time()
    cases = [
        ("AddSchedule", sched(cron="61 * * * *"), grpc.StatusCode.INVALID_ARGUMENT,
         "field 1 (minute) '61' is not valid"),
        ("AddSchedule", sched(cron="* * *"), grpc.StatusCode.INVALID_ARGUMENT, "has 3 fields"),
        ("AddSchedule", sched(cron="@hourly", timezone="Europe/Atlantis"), grpc.StatusCode.INVALID_ARGUMENT,
         "unknown timezone 'Europe/Atlantis'"),
        ("AddSchedule", sched(cron="0 0 30 2 *"), grpc.StatusCode.INVALID_ARGUMENT,
         "could never fire"),
        ("AddSchedule", sched(cron="@hourly", start=now + 7200, end=now + 3600),
         grpc.StatusCode.INVALID_ARGUMENT, "end is before start"),
        ("AddSchedule", wpb.AddScheduleRequest(schedule=wpb.Schedule(cron="@hourly", template="nope")),
         grpc.StatusCode.NOT_FOUND, "template 'nope' not found"),
        ("SubmitWorkflow", wf({"a": ["c"], "b": ["a"], "c": ["b"]}), grpc.StatusCode.INVALID_ARGUMENT,
         "dependency cycle: a -> c -> b -> a"),
        ("SubmitWorkflow", wf({"a": [], "b": ["b"]}), grpc.StatusCode.INVALID_ARGUMENT,
         "job 'b' depends on itself"),
        ("SubmitWorkflow", wf({"a": [], "b": ["ghost"]}), grpc.StatusCode.INVALID_ARGUMENT,
         "'b' depends on 'ghost', which is not a job of this workflow"),
        ("SubmitWorkflow", wf({f"j{i}": [] for i in range(1001)}), grpc.StatusCode.INVALID_ARGUMENT,
         "workflow has 1001 jobs; at most 1000"),
        ("CreateTemplate", wpb.PutTemplateRequest(template=wpb.Template(name="bad name", spec=spec)),
         grpc.StatusCode.INVALID_ARGUMENT, "template name 'bad name' is invalid"),
        ("SubmitFromTemplate", wpb.SubmitFromTemplateRequest(template="missing"), grpc.StatusCode.NOT_FOUND,
         "template 'missing' not found"),
    ]
    before = _state(c)
    for method, req, code, msg in cases:
        with pytest.raises(grpc.RpcError) as ei:
            wc.call(method, req)
        assert ei.value.code() == code, (method, ei.value.details())
        assert msg in (ei.value.details() or ""), (method, ei.value.details())
    assert _state(c) == before, "a refused request changed the replicated state"
