"""Job isolation pieces with real processes: the fallback's environment scan and
subreaper, the watchdog killing by handle, cgroup v1 sandboxes (where usable),
mountinfo parsing, output caps and retention, and the OOM_KILLED outcome."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from raftsched.config import ConfigError, machine_resources, parse
from raftsched.core.commands import FinishedItem
from raftsched.core.jobs import attempt_outcome
from raftsched.core.model import JobSpec, JobState, ResourceLimits, Resources
from raftsched.core.validate import validate_spec
from raftsched.node.isolation import cgfs, kill
from raftsched.node.isolation.cgroup_v1 import CgroupV1
from raftsched.node.isolation.fallback import Fallback
from raftsched.node.lease import Lease
from raftsched.node.output import OutputSink, Retention

SLEEPER = "import time; time.sleep(60)"


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def start_job_with_daemon(argv_prefix: list[str], env: dict[str, str], pidfile: Path) -> subprocess.Popen[bytes]:
    """A job (own process group) that starts a setsid daemon and writes its pid."""
    script = f"setsid {sys.executable} -c '{SLEEPER}' & echo $! > {pidfile}; sleep 60"
    return subprocess.Popen([*argv_prefix, "/bin/sh", "-c", script], env=env, process_group=0)


def wait_for(pred, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def job_env(node: str, job: str, attempt: int) -> dict[str, str]:
    return {**os.environ, "RAFTSCHED_NODE_ID": node, "RAFTSCHED_JOB_ID": job, "RAFTSCHED_ATTEMPT": str(attempt)}


@pytest.mark.timeout(30)
def test_fallback_kills_setsid_daemon_and_reaps_it_as_subreaper(tmp_path: Path) -> None:
    iso = Fallback(f"u{uuid.uuid4().hex[:6]}")
    assert iso.subreaper  # Linux >= 3.4
    job_id = uuid.uuid4().hex
    sb = iso.sandbox(job_id, 1, ResourceLimits(64, 100, 10))
    assert sb.limits == ResourceLimits()  # nothing is enforced in this mode, and it says so
    pidfile = tmp_path / "pid"
    proc = start_job_with_daemon(sb.wrap([]), job_env(iso.node_id, job_id, 1), pidfile)
    sb.started(proc.pid)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
    daemon = int(pidfile.read_text())
    other = subprocess.Popen([sys.executable, "-c", SLEEPER], env=job_env(iso.node_id, job_id, 2))
    try:
        assert alive(daemon)
        proc.kill()  # the job's own process ends first: the daemon is orphaned...
        proc.wait()
        sb.exited()
        # ...and re-parented to us, the subreaper, not to init
        wait_for(lambda: Path(f"/proc/{daemon}/stat").read_text().rpartition(")")[2].split()[1]
                 == str(os.getpid()))
        sb.signal(signal.SIGKILL)
        sb.release()
        wait_for(lambda: not alive(daemon), 2.0)
        wait_for(lambda: (iso.reap(), not Path(f"/proc/{daemon}").exists())[1])  # reaped, no zombie
        assert other.poll() is None  # another attempt's process is not touched
    finally:
        other.kill()
        other.wait()
        os.system(f"kill -9 {daemon} 2>/dev/null")


@pytest.mark.timeout(30)
def test_watchdog_kills_marked_daemons_by_handle_when_the_lease_runs_out(tmp_path: Path) -> None:
    node, job_id = f"u{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    pidfile = tmp_path / "pid"
    proc = start_job_with_daemon([], job_env(node, job_id, 3), pidfile)
    lease = Lease(0.3)
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
        daemon = int(pidfile.read_text())
        lease.renew(time.monotonic(), 0.3, 1)
        lease.register(f"env {proc.pid} {node} 3 {job_id}")
        assert proc.wait(5) == -9
        wait_for(lambda: not alive(daemon))
    finally:
        proc.kill()
        lease.close()


def test_kill_handle_refuses_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="unknown job handle"):
        kill.kill_handle("cgroup-v7 /x")


def test_v1_dirs_follow_mountinfo_and_strip_the_mount_root(tmp_path: Path, monkeypatch) -> None:
    mi = tmp_path / "mountinfo"
    mi.write_text(
        "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n"
        "31 25 0:27 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "33 25 0:29 / /proc rw - proc proc rw\n")
    cg = tmp_path / "cgroup"
    cg.write_text("4:memory:/a/b\n2:cpu,cpuacct:/docker/abc/x\n0::/\n")
    monkeypatch.setattr(cgfs, "MOUNTINFO", mi)
    monkeypatch.setattr(cgfs, "SELF_CGROUP", cg)
    dirs = cgfs.v1_dirs()
    assert dirs["memory"] == Path("/sys/fs/cgroup/memory/a/b")
    assert dirs["cpu"] == dirs["cpuacct"] == Path("/sys/fs/cgroup/cpu,cpuacct/x")
    assert "pids" not in dirs


V1_WHY = CgroupV1.unusable()


@pytest.mark.skipif(bool(V1_WHY), reason=f"cgroup v1 not usable here: {V1_WHY}")
@pytest.mark.timeout(30)
def test_cgroup_v1_sandbox_limits_kill_and_cleanup(tmp_path: Path) -> None:
    iso = CgroupV1(f"u{uuid.uuid4().hex[:6]}")
    try:
        sb = iso.sandbox("job", 1, ResourceLimits(64, 250, 16))
        assert sb.limits == ResourceLimits(64, 250, 16)
        dirs = sb.dirs  # type: ignore[attr-defined]
        assert cgfs.read_int(dirs["memory"] / "memory.limit_in_bytes") == 64 << 20
        assert cgfs.read_int(dirs["pids"] / "pids.max") == 16
        if "cpu" in dirs:
            assert cgfs.read_int(dirs["cpu"] / "cpu.cfs_quota_us") == 25_000
        pidfile = tmp_path / "pid"
        proc = start_job_with_daemon(sb.wrap([]), dict(os.environ), pidfile)
        sb.started(proc.pid)
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
        daemon = int(pidfile.read_text())
        assert daemon in [int(p) for p in (dirs["freezer"] / "cgroup.procs").read_text().split()]
        assert sb.usage().memory_bytes > 0
        sb.signal(signal.SIGKILL)
        assert proc.wait(5) == -9
        wait_for(lambda: not alive(daemon))
        assert not sb.oom_killed()
        wait_for(sb.release)
        assert not any(d.exists() for d in dirs.values())
    finally:
        iso.close()
    assert not any(d.exists() for d in iso.base.values())


@pytest.mark.timeout(30)
def test_output_sink_caps_with_marker_and_keeps_the_real_tail(tmp_path: Path) -> None:
    async def run() -> tuple[str, bytes]:
        sink = OutputSink(asyncio.get_running_loop(), tmp_path / "o", cap=1000)
        code = "import sys\nfor i in range(50): sys.stdout.write('%04d' % i * 100)\nsys.stdout.write('END')"
        p = subprocess.Popen([sys.executable, "-c", code], stdout=sink.child_fd)
        sink.child_started()
        while p.poll() is None:
            await asyncio.sleep(0.01)
        return sink.close(), (tmp_path / "o").read_bytes()

    tail, data = asyncio.run(run())
    assert tail.endswith("0049" * 100 + "END")
    assert data[:1000] == b"0000" * 100 + b"0001" * 100 + b"0002" * 50  # the first 1000 bytes
    rest = data[1000:].decode()
    assert "truncated at the cap of 1000 bytes" in rest and f"{50 * 400 + 3 - 1000} bytes discarded" in rest


@pytest.mark.timeout(30)
def test_output_files_are_created_at_the_first_byte_only(tmp_path: Path) -> None:
    async def run() -> list[str]:
        loop = asyncio.get_running_loop()
        sinks = [OutputSink(loop, tmp_path / name, cap=0) for name in ("o", "e")]
        assert not any(p.exists() for p in tmp_path.iterdir())  # nothing yet: no file made
        p = subprocess.Popen([sys.executable, "-c", "print('hi')"], stdout=sinks[0].child_fd,
                             stderr=sinks[1].child_fd)
        for s in sinks:
            s.child_started()
        while p.poll() is None:
            await asyncio.sleep(0.01)
        return [s.close() for s in sinks]

    tails = asyncio.run(run())
    assert tails == ["hi\n", ""]
    assert (tmp_path / "o").read_text() == "hi\n" and not (tmp_path / "e").exists()


@pytest.mark.timeout(30)
def test_output_sink_whose_file_cannot_be_made_keeps_the_tail(tmp_path: Path) -> None:
    async def run() -> str:
        sink = OutputSink(asyncio.get_running_loop(), tmp_path / "missing-dir" / "o", cap=0)
        p = subprocess.Popen([sys.executable, "-c", "print('still here')"], stdout=sink.child_fd)
        sink.child_started()
        while p.poll() is None:
            await asyncio.sleep(0.01)
        return sink.close()

    tail = asyncio.run(run())
    assert "cannot create o" in tail and tail.endswith("still here\n")


def test_retention_remembers_empty_attempts_until_they_leave(tmp_path: Path) -> None:
    r = Retention(max_bytes=0, max_files=2)
    a, b, c = ((tmp_path / f"{n}.out", tmp_path / f"{n}.err") for n in "abc")
    r.add(a, 0)
    r.add(b, 5)
    assert a in r.empty and b not in r.empty
    r.add(c, 0)  # a leaves: no longer "kept, printed nothing"
    assert r.empty == {c}


def test_retention_deletes_oldest_beyond_size_but_keeps_the_newest(tmp_path: Path) -> None:
    r = Retention(max_bytes=100, max_files=10)
    files = []
    for i in range(4):
        f = tmp_path / f"f{i}"
        f.write_text("x")
        files.append(f)
        r.add((f,), 60)
    assert [f.exists() for f in files] == [False, False, False, True]
    r.add((tmp_path / "big",), 1000)  # a single attempt bigger than the budget is kept alone
    assert not files[3].exists() and len(r.kept) == 1


def test_oom_killed_is_its_own_failure_unless_the_job_succeeded() -> None:
    oom = FinishedItem("j", 1, 1, -9, oom_killed=True)
    state, why = attempt_outcome(oom)
    assert state is JobState.FAILED and why.startswith("OOM_KILLED")
    assert attempt_outcome(FinishedItem("j", 1, 1, 0, oom_killed=True))[0] is JobState.SUCCEEDED
    assert attempt_outcome(FinishedItem("j", 1, 1, -9))[1] == "killed by signal 9"


def test_limits_are_validated_naming_the_field() -> None:
    base = JobSpec(command=("true",), resources=Resources(100, 64))
    assert validate_spec(base) is None
    assert validate_spec(JobSpec(command=("true",), resources=Resources(100, 64),
                                 limits=ResourceLimits(memory_mib=600, cpu_millis=2000, pids=50))) is None
    err = validate_spec(JobSpec(command=("true",), resources=Resources(100, 64), limits=ResourceLimits(32)))
    assert err and "limits.memory_mib" in err
    err = validate_spec(JobSpec(command=("true",), resources=Resources(100, 64),
                                limits=ResourceLimits(cpu_millis=50)))
    assert err and "limits.cpu_millis" in err
    err = validate_spec(JobSpec(command=("true",), limits=ResourceLimits(pids=-1)))
    assert err and "limits.pids" in err


def test_isolation_config_is_parsed_and_checked() -> None:
    raw = {"cluster": {"secret": "s"}, "nodes": [{"id": "n1", "raft": "127.0.0.1:1", "grpc": "127.0.0.1:2",
                                                  "cpu_millis": 1000, "memory_mib": 512}]}
    cfg = parse({**raw, "isolation": {"mode": "fallback", "output_cap_mib": 0.5, "pids_limit": 99}}, Path("c"))
    assert cfg.isolation.mode == "fallback" and cfg.isolation.pids_limit == 99
    assert cfg.isolation.output_cap_bytes == 512 << 10
    with pytest.raises(ConfigError, match=r"isolation\.mode"):
        parse({**raw, "isolation": {"mode": "jail"}}, Path("c"))


def test_capacity_auto_is_the_machine_minus_a_reserve() -> None:
    node = {"id": "n1", "raft": "127.0.0.1:1", "grpc": "127.0.0.1:2", "cpu_millis": "auto", "memory_mib": "auto",
            "reserve_memory_mib": 100}
    cfg = parse({"cluster": {"secret": "s"}, "nodes": [node]}, Path("c"))
    cpu, mem = machine_resources()
    assert cfg.nodes[0].capacity.cpu_millis == cpu - 500 and cfg.nodes[0].capacity.memory_mib == mem - 100
    with pytest.raises(ConfigError, match="cpu_millis"):
        parse({"cluster": {"secret": "s"}, "nodes": [{**node, "cpu_millis": "lots"}]}, Path("c"))


def _v2_writable() -> str:
    own = cgfs.v2_dir()
    if own is None:
        return "no cgroup v2 hierarchy mounted"
    return cgfs.writable_dir(own)


V2_WHY = _v2_writable()


@pytest.mark.skipif(bool(V2_WHY), reason=f"cannot create cgroup v2 groups here: {V2_WHY}")
@pytest.mark.timeout(30)
def test_cgroup_v2_sandbox_kills_the_whole_group(tmp_path: Path) -> None:
    """The v2 join/kill/cleanup path, on a v2 hierarchy even without controllers
    (limit files are not written when no limit is asked)."""
    from raftsched.node.isolation.cgroup_v2 import V2Sandbox

    own = cgfs.v2_dir()
    assert own is not None
    d = own / f"raftsched-unit-{uuid.uuid4().hex[:8]}"
    sb = V2Sandbox("job.1", ResourceLimits(), d)
    try:
        pidfile = tmp_path / "pid"
        proc = start_job_with_daemon(sb.wrap([]), dict(os.environ), pidfile)
        sb.started(proc.pid)
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
        daemon = int(pidfile.read_text())
        members = [int(p) for p in (d / "cgroup.procs").read_text().split()]
        assert proc.pid in members and daemon in members
        sb.signal(signal.SIGKILL)
        assert proc.wait(5) == -9
        wait_for(lambda: not alive(daemon))
        wait_for(sb.release)
        assert not d.exists()
    finally:
        kill.kill_v2(d)
        cgfs.remove_tree(d)
