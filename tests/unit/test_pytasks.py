"""Python tasks (issue 14), the pure and in-process parts: spec validation, the codec,
the result kept by the state machine, pool settings, the client's spec builder and
decorator, and one worker's request handling (`child.run`) in this process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import raftsched
from raftsched.client.specs import job_spec
from raftsched.core import codec, pytask
from raftsched.core.model import JobSpec, JobState, PythonCall, RetryPolicy
from raftsched.core.validate import validate_spec
from raftsched.node.pytasks import child
from raftsched.node.pytasks.settings import PyConfigError, PyPoolConfig, parse_pool
from raftsched.rpc import convert
from tests.support import pytasks_funcs
from tests.unit import fsm_helpers as h


def py(target: str = "pkg.mod:fn", args: str = "", kwargs: str = "") -> JobSpec:
    return JobSpec(python=PythonCall(target, args, kwargs))


@pytest.mark.parametrize(("spec", "field"), [
    (py("pkg.mod"), "python.target"),
    (py("pkg mod:fn"), "python.target"),
    (py("pkg.mod:fn()"), "python.target"),
    (py("x" * 600 + ":f"), "python.target"),
    (py(args="{"), "python.args_json"),
    (py(args='{"a": 1}'), "python.args_json"),
    (py(kwargs="[1]"), "python.kwargs_json"),
    (py(args="[" + "1," * 40_000 + "1]"), "python.args_json"),
    (JobSpec(command=("true",), python=PythonCall("a.b:c")), "python.target"),
    (JobSpec(use_shell=True, shell="true", python=PythonCall("a.b:c")), "python.target"),
])
def test_invalid_python_calls_name_the_field(spec: JobSpec, field: str) -> None:
    err = validate_spec(spec)
    assert err is not None and field in err


def test_valid_python_calls() -> None:
    for spec in (py(), py("a:b"), py("pkg.sub.mod:Class.method", "[1, [2]]", '{"k": null}')):
        assert validate_spec(spec) is None, spec
    # the other checks of a spec still apply to a Python task
    assert "priority" in (validate_spec(JobSpec(python=PythonCall("a:b"), priority=5000)) or "")


def test_python_spec_and_result_survive_codec_and_proto() -> None:
    s = JobSpec(python=PythonCall("a.b:c", "[1]", '{"x":2}'), retry=RetryPolicy(max_attempts=2))
    assert codec.from_wire(JobSpec, codec.to_wire(s)) == s
    assert convert.spec_from_pb(convert.spec_to_pb(s)) == s
    assert "python" not in codec.to_wire(JobSpec(command=("true",)))  # old journals unchanged


def test_result_is_stored_only_for_a_success() -> None:
    st = h.cluster("n1")
    ok_id, bad_id = h.submit(st, py(), JobSpec(python=PythonCall("a:b"), retry=RetryPolicy(max_attempts=2)))
    for jid in (ok_id, bad_id):
        assert h.assign(st, jid, "n1").ok
    assert h.finished(st, ok_id, 0, result="[1,2]").ok
    assert h.finished(st, bad_id, 1, error="raised ValueError: x", result="[9]").ok
    ok, bad = st.jobs[ok_id], st.jobs[bad_id]
    assert (ok.state, ok.result) == (JobState.SUCCEEDED, "[1,2]")
    assert convert.job_to_pb(ok).result_json == "[1,2]"
    assert (bad.state, bad.result) == (JobState.PENDING, "")  # retried; nothing kept
    assert bad.reason.startswith("attempt 1 FAILED: raised ValueError: x")
    assert pytask.stored_result(True, "x" * (pytask.MAX_RESULT_BYTES + 1)) == ""


def test_pool_settings(tmp_path: Path) -> None:
    assert parse_pool({}, "n", tmp_path) == PyPoolConfig()
    cfg = parse_pool({"python_workers": 4, "python_path": ["lib", "/abs"], "python_max_tasks": 10,
                      "python_max_rss_mib": 100, "python_executable": "venv/bin/python"}, "n", tmp_path)
    assert cfg == PyPoolConfig(4, (str(tmp_path / "lib"), "/abs"), str(tmp_path / "venv/bin/python"), 10, 100)
    for bad in ({"python_workers": -1}, {"python_workers": "2"}, {"python_path": [1]},
                {"python_max_tasks": True}):
        with pytest.raises(PyConfigError, match=r"n\.python_"):
            parse_pool(bad, "n", tmp_path)


def test_job_spec_builder_and_decorator() -> None:
    s = job_spec(python="m:f", args=[1, "a"], kwargs={"k": [2]}, retry=3, timeout=5, priority=7)
    assert (s.python.target, json.loads(s.python.args_json), json.loads(s.python.kwargs_json)) == \
        ("m:f", [1, "a"], {"k": [2]})
    assert (s.retry.max_attempts, s.timeout_seconds, s.priority) == (3, 5, 7)
    assert job_spec("echo hi").use_shell and list(job_spec(["a", "b"]).command) == ["a", "b"]
    with pytest.raises(ValueError, match="JSON-serialisable"):
        job_spec(python="m:f", args=[object()])
    with pytest.raises(ValueError, match="either command or python"):
        job_spec(["x"], python="m:f")
    t = pytasks_funcs.mul
    assert t.target == "tests.support.pytasks_funcs:mul" and t(3, 4) == 12
    assert t.options(priority=1).spec(1, 2).priority == 1 and t.spec(1, 2).priority == 5
    with pytest.raises(ValueError, match="module-level"):
        raftsched.task(lambda: 1)


def test_child_runs_a_request_and_restores_its_process(tmp_path: Path) -> None:
    scratch = tmp_path / "job.1"
    scratch.mkdir()
    env_before, cwd_before = dict(os.environ), os.getcwd()
    req = {"job": "j1", "attempt": 2, "token": 7, "node": "n1", "target": f"{pytasks_funcs.__name__}:describe",
           "args": "", "kwargs": '{"tag": "z"}', "env": {"PATH": "/bin", "RAFTSCHED_JOB_ID": "j1"},
           "cwd": str(scratch)}
    r = child.run(req, cwd_before, env_before, reap=False)  # reap would kill pytest's children
    assert r["ok"], r
    out = json.loads(r["result"])
    assert (out["job_id"], out["attempt"], out["token"], out["cwd"]) == ("j1", 2, 7, str(scratch))
    assert out["env"] == {"PATH": "/bin", "RAFTSCHED_JOB_ID": "j1"}
    assert "hello from j1" in r["stdout"]
    assert dict(os.environ) == env_before and os.getcwd() == cwd_before
    with pytest.raises(RuntimeError):
        raftsched.current_task()  # only inside a task

    bad = child.run({**req, "target": f"{pytasks_funcs.__name__}:fail_until",
                     "args": json.dumps([5, str(tmp_path / "l")]), "kwargs": ""}, cwd_before, env_before,
                    reap=False)
    assert not bad["ok"] and bad["error"] == "raised ValueError: boom on attempt 2"
    assert bad["traceback"].rstrip().endswith("ValueError: boom on attempt 2")
    big = child.run({**req, "target": f"{pytasks_funcs.__name__}:big_result", "args": "[70000]",
                     "kwargs": ""}, cwd_before, env_before, reap=False)
    assert not big["ok"] and "at most 65536" in big["error"]


def test_child_kills_what_a_task_left_running(tmp_path: Path) -> None:
    req = {"job": "j1", "attempt": 1, "token": 1, "node": "n1", "target": f"{pytasks_funcs.__name__}:leave_behind",
           "args": "[60]", "kwargs": "", "env": {"PATH": os.environ["PATH"]}, "cwd": str(tmp_path)}
    code = ("import json, os, sys; from raftsched.node.pytasks import child; "
            "print(json.dumps(child.run(json.loads(sys.argv[1]), os.getcwd(), dict(os.environ))))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(req)], capture_output=True, text=True,
                         timeout=30, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    r = json.loads(out.stdout)
    assert r["ok"] and r["leftovers_killed"] == 1, r
    assert not Path(f"/proc/{int(r['result'])}").exists()  # killed and reaped


_SEQUENCE = """
import json, os, sys
from raftsched.node.pytasks import child
from raftsched.node.pytasks.scratchdir import ScratchDirs
from raftsched.node.subreaper import set_subreaper
reqs, subreaper = json.loads(sys.argv[1]), sys.argv[2] == "1"
scratch = ScratchDirs(reuse=set_subreaper() if subreaper else False)
home, env = os.getcwd(), dict(os.environ)
out = []
for req in reqs:
    r = child.run(req, home, env, scratch=scratch)
    out.append({"ok": r["ok"], "result": r.get("result"), "killed": r["leftovers_killed"],
                "exists": sorted(os.listdir(os.path.dirname(req["cwd"]))), "reused": scratch.reused})
print(json.dumps(out))
"""


def _sequence(tmp_path: Path, tasks: list[tuple[str, str]], subreaper: bool = True) -> list[dict[str, Any]]:
    """Run tasks (function, JSON args) one after another in one worker-like process,
    each in its own scratch directory tmp_path/scratch/t<i>.1 made by the worker."""
    (tmp_path / "scratch").mkdir()
    reqs = [{"job": f"t{i}", "attempt": 1, "token": 1, "node": "n1", "target": f"{pytasks_funcs.__name__}:{fn}",
             "args": args, "kwargs": "", "env": {"PATH": os.environ["PATH"]},
             "cwd": str(tmp_path / "scratch" / f"t{i}.1"), "mkcwd": True} for i, (fn, args) in enumerate(tasks)]
    out = subprocess.run([sys.executable, "-c", _SEQUENCE, json.dumps(reqs), "1" if subreaper else "0"],
                         capture_output=True, text=True, timeout=30, check=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    return list(json.loads(out.stdout))


def test_a_worker_kills_the_orphans_of_a_task(tmp_path: Path) -> None:
    """The worker is a child subreaper: a double-forked process of a task comes back to
    it and is killed when the task returns."""
    (r,) = _sequence(tmp_path, [("daemonize", "[60]")])
    assert r["ok"] and r["killed"] == 1, r
    assert not Path(f"/proc/{int(r['result'])}").exists()  # killed and reaped


def test_an_empty_scratch_directory_serves_the_next_task(tmp_path: Path) -> None:
    """Each task gets its own empty 0700 directory under its own name; one a task left
    empty is renamed for the next (no mkdir), one it wrote in is kept as it is."""
    r = _sequence(tmp_path, [("pid", ""), ("pid", ""), ("write_scratch", '["f"]'), ("pid", ""),
                             ("daemonize", "[60]"), ("pid", "")])
    assert all(x["ok"] for x in r), r
    assert r[0]["exists"] == ["t0.1"] and r[0]["reused"] == 0
    assert r[1]["exists"] == ["t1.1"] and r[1]["reused"] == 1  # t0.1, empty, became t1.1
    assert r[2]["exists"] == ["t2.1"] and r[2]["reused"] == 2
    assert json.loads(r[2]["result"]) == str(tmp_path / "scratch" / "t2.1")
    assert r[3]["exists"] == ["t2.1", "t3.1"] and r[3]["reused"] == 2  # t2.1 kept its file: a new one
    assert (tmp_path / "scratch" / "t2.1" / "f").read_text() == "x"
    assert r[5]["exists"] == ["t2.1", "t5.1"] and r[5]["reused"] == 4  # the daemon was killed first
    assert oct((tmp_path / "scratch" / "t5.1").stat().st_mode & 0o777) == "0o700"


def test_no_reuse_without_the_subreaper(tmp_path: Path) -> None:
    r = _sequence(tmp_path, [("pid", ""), ("pid", "")], subreaper=False)
    assert r[1]["exists"] == ["t0.1", "t1.1"] and r[1]["reused"] == 0
