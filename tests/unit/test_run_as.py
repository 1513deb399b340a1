"""run_as: user names, the replicated per-namespace allow list, the node's allow list,
and the executor running a real process as a throwaway user (with and without cgroups)."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import pytest

from raftsched.config import ConfigError, IsolationConfig, parse
from raftsched.core import apply as fsm
from raftsched.core import runas
from raftsched.core.commands import SubmitJobs, SubmitWorkflow, WorkflowJob
from raftsched.core.model import JobSpec, Resources
from raftsched.core.state import Code
from raftsched.core.validate import validate_spec
from raftsched.node.executor import Executor, Report, ReportKind
from raftsched.node.isolation import Isolation
from raftsched.node.isolation.cgroup_v1 import CgroupV1
from raftsched.node.isolation.fallback import Fallback
from raftsched.node.runas import resolve, shared_scratch_root
from tests.support import users
from tests.unit.fsm_helpers import cluster, rid

SPEC = JobSpec(command=("id", "-u"), resources=Resources(100, 64), namespace="team")


def test_user_names_are_checked_naming_the_field() -> None:
    for good in ("alice", "_svc", "build-bot.2", "A" * 32):
        assert runas.user_error(good) is None, good
    for bad in ("", "-rf", "0", "1000", ".hidden", "a b", "a/b", "a:b", "x" * 33, "é"):
        err = runas.user_error(bad)
        assert err and err.startswith("run_as"), bad
    assert "run_as" in (validate_spec(JobSpec(command=("id",), run_as="--help")) or "")
    assert validate_spec(JobSpec(command=("id",), run_as="alice")) is None
    assert "at most 64" in (runas.users_error(["u"] * 65) or "")


def test_namespace_allow_list_is_replicated_and_checked_at_apply() -> None:
    st = cluster("n1")
    job = JobSpec(command=("id",), namespace="team", run_as="alice")
    res = fsm.apply(st, SubmitJobs(rid(), 2.0, (("j1", job),)))
    assert res.code is Code.DENIED and "namespace 'team' does not allow" in res.message
    assert "j1" not in st.jobs
    assert fsm.apply(st, runas.SetRunAs(rid(), 3.0, "team", ("bob", "alice", "alice"))).ok
    assert runas.allowed(st, "team") == ("alice", "bob")
    assert runas.allowed(st, "other") == ()
    assert fsm.apply(st, SubmitJobs(rid(), 4.0, (("j2", job),))).ok
    other = JobSpec(command=("id",), namespace="other", run_as="alice")
    wf = SubmitWorkflow(rid(), 5.0, "wf1", "w", (WorkflowJob("wf1-a", other),))
    assert fsm.apply(st, wf).code is Code.DENIED
    # survives a snapshot; an empty list removes the policy
    again = fsm.ClusterState.from_dict(st.to_dict())
    assert runas.allowed(again, "team") == ("alice", "bob")
    assert fsm.apply(st, runas.SetRunAs(rid(), 6.0, "team", ())).ok
    assert runas.allowed(st, "team") == ()
    assert fsm.apply(st, runas.SetRunAs(rid(), 7.0, "team", ("-x",))).code is Code.INVALID


def _config(tmp_path: Path, extra: str) -> str:
    return (f'[cluster]\nsecret = "{"s" * 40}"\ndata_dir = "{tmp_path}"\n[[nodes]]\nid = "n1"\n'
            f'raft = "127.0.0.1:7101"\ngrpc = "127.0.0.1:7201"\ncpu_millis = 1000\n'
            f"memory_mib = 1000\n{extra}\n")


def test_node_allow_list_is_configured_per_node(tmp_path: Path) -> None:
    import tomllib

    def load(extra: str):
        return parse(tomllib.loads(_config(tmp_path, extra)), tmp_path / "c.toml")

    assert load("").nodes[0].allowed_run_as == ()  # default: none
    assert load('allowed_run_as = ["bob", "alice"]').nodes[0].allowed_run_as == ("alice", "bob")
    with pytest.raises(ConfigError, match="allowed_run_as"):
        load('allowed_run_as = ["../x"]')
    with pytest.raises(ConfigError, match="allowed_run_as"):
        load('allowed_run_as = "root"')


def test_the_node_refuses_users_it_does_not_allow_or_have() -> None:
    assert "does not allow" in str(resolve("root", (), "n1"))
    assert "does not allow" in str(resolve("root", ("alice",), "n1"))
    ghost = users.unused_name("ghost")
    assert "no such user" in str(resolve(ghost, (ghost,), "n1"))
    me = resolve("root", ("root",), "n1")
    assert not isinstance(me, str) and me.uid == 0


def test_shared_scratch_root_refuses_a_planted_path(tmp_path: Path) -> None:
    root = shared_scratch_root("n1", tmp_path / "data", base=tmp_path)
    assert oct(os.stat(root).st_mode & 0o777) == "0o711"
    assert shared_scratch_root("n1", tmp_path / "data", base=tmp_path) == root  # reused
    (tmp_path / "elsewhere").mkdir()
    planted = shared_scratch_root("n2", tmp_path / "data", base=tmp_path)
    planted.rmdir()
    planted.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError, match="not a directory owned"):
        shared_scratch_root("n2", tmp_path / "data", base=tmp_path)


SCRIPT = ('id -u; id -g; id -G; echo "$HOME"; echo "$USER"; stat -c %u .; '
          'echo hi > "$TMPDIR/f" && echo wrote')


def _run(tmp_path: Path, iso: Isolation, allowed: tuple[str, ...], user: str) -> tuple[Report, Path]:
    async def go() -> tuple[Report, Path]:
        done: asyncio.Future[Report] = asyncio.get_running_loop().create_future()

        def on_report(r: Report) -> None:
            if r.kind is ReportKind.FINISHED and not done.done():
                done.set_result(r)

        ex = Executor(iso.node_id, tmp_path, asyncio.get_running_loop(), on_report, 1.0,
                      isolation=iso, settings=IsolationConfig(), allowed_run_as=allowed)
        try:
            ex.start("job", 1, 7, JobSpec(command=("/bin/sh", "-c", SCRIPT), run_as=user))
            report = await asyncio.wait_for(done, 20)
        finally:
            ex.close()
            if ex.run_as._scratch is not None:
                shutil.rmtree(ex.run_as._scratch.root, ignore_errors=True)
        return report, ex.out_dir / "job.1.out"

    return asyncio.run(go())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["fallback", "cgroup-v1"])
def test_executor_runs_the_job_as_the_user(tmp_path: Path, mode: str) -> None:
    users.skip_unless_possible()
    if mode == "cgroup-v1" and CgroupV1.unusable():
        pytest.skip(f"cgroup v1 unusable here: {CgroupV1.unusable()}")
    node = f"u{uuid.uuid4().hex[:6]}"
    with users.throwaway_user() as pw:
        iso: Isolation = Fallback(node) if mode == "fallback" else CgroupV1(node)
        report, out = _run(tmp_path, iso, (pw.pw_name,), pw.pw_name)
        assert report.exit_code == 0, report
        lines = report.stdout_tail.split()
        assert lines == [str(pw.pw_uid), str(pw.pw_gid), str(pw.pw_gid), pw.pw_dir, pw.pw_name,
                         str(pw.pw_uid), "wrote"], report
        assert os.stat(out).st_uid == os.getuid()  # output is written by the node

        other = node + "b"  # groups of the first run may still be being removed
        iso = Fallback(other) if mode == "fallback" else CgroupV1(other)
        refused, _ = _run(tmp_path, iso, (), pw.pw_name)  # this node does not allow it
        assert refused.exit_code is None and "does not allow" in refused.error


@pytest.mark.timeout(60)
def test_executor_fails_an_unknown_user_with_a_reason(tmp_path: Path) -> None:
    ghost = users.unused_name("ghost")
    report, _ = _run(tmp_path, Fallback(f"u{uuid.uuid4().hex[:6]}"), (ghost,), ghost)
    assert report.exit_code is None and f"run_as {ghost!r}: no such user" in report.error
