"""Jobs that cannot escape (issue 16), on real clusters with real subprocess jobs.

A job's escapees are found by scanning /proc for a marker on their command
line. The cgroup tests run where the node picks a cgroup mode and are skipped
with the node's reason elsewhere; the fallback (subreaper + environment scan)
tests run everywhere.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftsched.v1 import jobs_pb2
from tests.support.cluster import TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

SLEEPER = "import time; time.sleep(600)"


def sh(script: str, **kw) -> jobs_pb2.JobSpec:
    return jobs_pb2.JobSpec(use_shell=True, shell=script, **kw)


def marked(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains `marker`."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if marker.encode() in cmd and stat.rpartition(")")[2].split()[:1] != ["Z"]:
            out.append(int(d.name))
    return out


def daemon_script(marker: str, body: str = "sleep 600") -> str:
    """Starts a setsid daemon, a double-forked nohup child, then runs `body`."""
    return (f"setsid {sys.executable} -c '{SLEEPER}' {marker}-setsid >/dev/null 2>&1 < /dev/null & "
            f"( nohup {sys.executable} -c '{SLEEPER}' {marker}-nohup >/dev/null 2>&1 & ) ; {body}")


def isolation_note(job: jobs_pb2.Job) -> str:
    return next((h.reason for h in job.history if h.state == jobs_pb2.RUNNING), "")


def wait_daemons(c: TestCluster, marker: str, n: int = 2) -> None:
    c.wait_until(lambda: len(marked(marker)) >= n, 20, f"{n} daemons of {marker}")


def wait_gone(c: TestCluster, marker: str, timeout: float = 15) -> None:
    c.wait_until(lambda: not marked(marker), timeout, f"processes of {marker} to die")


def run_and_get_mode(c: TestCluster) -> str:
    client = c.client()
    jid = client.submit(sh("true"))
    job = c.wait_terminal([jid], timeout=30)[jid]
    assert job.state == jobs_pb2.SUCCEEDED, job.reason
    note = isolation_note(job)
    assert note.startswith("isolation "), job.history
    return note.split()[1].rstrip(":")


@pytest.fixture(scope="module")
def cg_cluster() -> Iterator[TestCluster]:
    c = TestCluster(n_nodes=3, cluster_extra="\n[isolation]\noutput_cap_mib = 1\n").start()
    try:
        c.wait_ready()
        mode = run_and_get_mode(c)
        if not mode.startswith("cgroup"):
            log = (c.log_dir / "n1.log").read_text(errors="replace")
            why = next((ln for ln in log.splitlines() if "no usable cgroups" in ln), mode)
            pytest.skip(f"this machine offers no usable cgroups: {why}")
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def fb_cluster() -> Iterator[TestCluster]:
    c = TestCluster(n_nodes=1, cluster_extra='\n[isolation]\nmode = "fallback"\n').start()
    try:
        c.wait_ready()
        yield c
    finally:
        c.close()


# ---- cgroups ---------------------------------------------------------------------------------


def test_cancel_kills_setsid_and_double_forked_children(cg_cluster: TestCluster) -> None:
    client = cg_cluster.client()
    m = f"iso-cancel-{uuid.uuid4().hex[:8]}"
    jid = client.submit(sh(daemon_script(m)))
    wait_daemons(cg_cluster, m)
    client.cancel(jid)
    job = cg_cluster.wait_terminal([jid], timeout=20)[jid]
    assert job.state == jobs_pb2.CANCELLED, job.reason
    assert not marked(m), "a setsid/nohup child survived the cancel"
    note = isolation_note(job)
    assert note.startswith("isolation cgroup-v"), note
    assert "memory 64 MiB" in note and "cpu 100m" in note and "pids 1024" in note, note


def test_timeout_kills_the_daemons_too(cg_cluster: TestCluster) -> None:
    client = cg_cluster.client()
    m = f"iso-timeout-{uuid.uuid4().hex[:8]}"
    jid = client.submit(sh(daemon_script(m), timeout_seconds=2.0))
    job = cg_cluster.wait_terminal([jid], timeout=30)[jid]
    assert job.state == jobs_pb2.TIMED_OUT, job.reason
    assert not marked(m), "a daemon survived the timeout"


def test_daemon_left_by_a_successful_job_dies_with_it(cg_cluster: TestCluster) -> None:
    client = cg_cluster.client()
    m = f"iso-exit-{uuid.uuid4().hex[:8]}"
    jid = client.submit(sh(daemon_script(m, body="sleep 1")))
    job = cg_cluster.wait_terminal([jid], timeout=30)[jid]
    assert job.state == jobs_pb2.SUCCEEDED, job.reason
    assert not marked(m), "a daemon outlived its job"


def test_memory_hog_ends_oom_killed_and_the_node_is_unharmed(cg_cluster: TestCluster) -> None:
    client = cg_cluster.client()
    hog = f"{sys.executable} -c 'x = bytearray(400 << 20); print(len(x))'"
    jid = client.submit(sh(hog, resources=jobs_pb2.Resources(cpu_millis=100, memory_mib=64)))
    dead = client.submit(sh(hog, retry=jobs_pb2.RetryPolicy(max_attempts=1)))
    burst = client.submit(sh(hog, limits=jobs_pb2.ResourceLimits(memory_mib=600)))
    jobs = cg_cluster.wait_terminal([jid, dead, burst], timeout=60)
    job = jobs[jid]
    assert job.state == jobs_pb2.FAILED, job.reason
    assert job.reason.startswith("OOM_KILLED"), job.reason
    assert job.attempts[-1].outcome == "OOM_KILLED"
    assert jobs[dead].state == jobs_pb2.DEAD and "OOM_KILLED" in jobs[dead].reason, jobs[dead].reason
    dlq = subprocess.run([sys.executable, "-m", "raftsched", "--config", str(cg_cluster.config_path),
                          "dlq", "list"], capture_output=True, text=True, timeout=30)
    assert dead in dlq.stdout and "OOM_KILLED" in dlq.stdout, dlq.stdout + dlq.stderr
    metrics = urllib.request.urlopen(f"http://{cg_cluster.cfg.node(job.node_id).metrics}/metrics",
                                     timeout=10).read().decode()
    count = next(ln for ln in metrics.splitlines() if ln.startswith("raftsched_executor_oom_killed_total"))
    assert float(count.split()[-1]) >= 1, count
    # a limit above the request lets the same job burst and succeed
    assert jobs[burst].state == jobs_pb2.SUCCEEDED, jobs[burst].reason
    # the node that ran the hog is alive, still serving, and runs the next job
    assert all(p.poll() is None for p in cg_cluster.procs.values())
    assert next(n for n in client.nodes() if n.id == job.node_id).alive
    ok = client.submit(sh("echo fine"))
    assert cg_cluster.wait_terminal([ok], timeout=30)[ok].state == jobs_pb2.SUCCEEDED


def test_fork_bomb_is_stopped_by_the_pids_limit(cg_cluster: TestCluster) -> None:
    client = cg_cluster.client()
    m = f"iso-bomb-{uuid.uuid4().hex[:8]}"
    bomb = ("import os, time\nn = 0\ntry:\n    while n < 100000:\n        if os.fork() == 0:\n"
            "            time.sleep(600)\n            os._exit(0)\n        n += 1\n"
            "except OSError as e:\n    print('stopped after', n, e.strerror)\n")
    jid = client.submit(jobs_pb2.JobSpec(command=[sys.executable, "-c", bomb, m],
                                         limits=jobs_pb2.ResourceLimits(pids=40)))
    job = cg_cluster.wait_terminal([jid], timeout=60)[jid]
    assert job.state == jobs_pb2.SUCCEEDED, job.reason + job.stderr_tail
    words = job.stdout_tail.split()
    assert words[:2] == ["stopped", "after"], job.stdout_tail
    assert int(words[2]) < 40, job.stdout_tail  # the limit held, counting the job itself
    wait_gone(cg_cluster, m)  # and the children died with the job


def test_output_is_capped_with_a_marker(cg_cluster: TestCluster) -> None:
    client = cg_cluster.client()
    script = "import sys\nfor _ in range(100): sys.stdout.write('x' * (1 << 20))\nsys.stdout.write('END')\n"
    jid = client.submit(jobs_pb2.JobSpec(command=[sys.executable, "-c", script]))
    job = cg_cluster.wait_terminal([jid], timeout=60)[jid]
    assert job.state == jobs_pb2.SUCCEEDED, job.reason
    assert job.stdout_tail.endswith("END")  # the tail is the stream's real end
    out = cg_cluster.root / "data" / job.node_id / "output" / f"{jid}.1.out"
    data = out.read_bytes()
    assert len(data) < (1 << 20) + 1024, len(data)  # output_cap_mib = 1, plus the markers
    assert data[: 1 << 20] == b"x" * (1 << 20)
    tail = data[1 << 20:].decode()
    assert "output truncated at the cap of 1048576 bytes" in tail, tail
    assert f"{100 * (1 << 20) + 3 - (1 << 20)} bytes discarded" in tail, tail


def test_nodes_shows_actual_use_from_the_cgroups(cg_cluster: TestCluster) -> None:
    client = cg_cluster.client()
    hold = f"{sys.executable} -c 'import time; x = bytearray(150 << 20); time.sleep(30)'"
    jid = client.submit(sh(hold, resources=jobs_pb2.Resources(cpu_millis=100, memory_mib=200)))
    cg_cluster.wait_until(lambda: client.get(jid).state == jobs_pb2.RUNNING, 20, "RUNNING")
    node = client.get(jid).node_id

    def used() -> int:
        st = client.status(include_replicas=True)
        return next(r.memory_mib_used for r in st.replicas if r.node_id == node)

    cg_cluster.wait_until(lambda: used() >= 150, 20, "the job's memory in the node's cgroup use")
    out = subprocess.run([sys.executable, "-m", "raftsched", "--config", str(cg_cluster.config_path), "nodes"],
                         capture_output=True, text=True, timeout=30).stdout
    assert "USED (CGROUPS)" in out
    row = next(ln for ln in out.splitlines() if ln.split()[:1] == [node])
    mib = int(next(w for w in row.split() if w.endswith("Mi") and "/" not in w)[:-2])
    assert mib >= 150, out  # actual use, beside the 200 MiB requested in the MEMORY column
    assert "200/" in row, out
    client.cancel(jid)
    cg_cluster.wait_terminal([jid], timeout=20)


def test_frozen_node_past_its_lease_loses_its_daemons(cg_cluster: TestCluster) -> None:
    """Last in this module: it freezes a node. The watchdog kills the cgroup
    while the node process is stopped."""
    client = cg_cluster.client()
    m = f"iso-frozen-{uuid.uuid4().hex[:8]}"
    jid = client.submit(sh(daemon_script(f"{m}-$RAFTSCHED_ATTEMPT")))
    wait_daemons(cg_cluster, f"{m}-1")
    node = client.get(jid).node_id
    cg_cluster.kill(node, signal.SIGSTOP)
    try:
        # lease (default ttl 1.5 s - 0.5 s) runs out: the watchdog kills while the node is frozen
        wait_gone(cg_cluster, f"{m}-1", timeout=10)
        assert cg_cluster.procs[node].poll() is None
        assert Path(f"/proc/{cg_cluster.procs[node].pid}/stat").read_text().split(") ")[1][0] == "T"
    finally:
        cg_cluster.kill(node, signal.SIGCONT)
    cg_cluster.wait_ready()
    c2 = cg_cluster.client()
    cg_cluster.wait_until(lambda: c2.get(jid).attempt >= 2, 30, "the job re-placed")
    c2.cancel(jid)
    cg_cluster.wait_terminal([jid], timeout=30, client=c2)
    wait_gone(cg_cluster, m)


# ---- fallback: no cgroups --------------------------------------------------------------------


def test_fallback_kills_setsid_children_on_cancel_and_timeout(fb_cluster: TestCluster) -> None:
    client = fb_cluster.client()
    m1, m2 = (f"iso-fb{i}-{uuid.uuid4().hex[:8]}" for i in (1, 2))
    cancelled = client.submit(sh(daemon_script(m1)))
    timed = client.submit(sh(daemon_script(m2), timeout_seconds=2.0))
    wait_daemons(fb_cluster, m1)
    client.cancel(cancelled)
    jobs = fb_cluster.wait_terminal([cancelled, timed], timeout=30)
    assert jobs[cancelled].state == jobs_pb2.CANCELLED, jobs[cancelled].reason
    assert jobs[timed].state == jobs_pb2.TIMED_OUT, jobs[timed].reason
    assert not marked(m1) and not marked(m2), "a setsid/nohup child survived in fallback mode"
    note = isolation_note(jobs[cancelled])
    assert note.startswith("isolation fallback:") and "memory unlimited" in note, note
    log = (fb_cluster.log_dir / "n1.log").read_text(errors="replace")
    assert "no usable cgroups" in log and "NOT enforced" in log


def test_fallback_watchdog_kills_marked_children_of_a_frozen_node(fb_cluster: TestCluster) -> None:
    client = fb_cluster.client()
    m = f"iso-fbfrozen-{uuid.uuid4().hex[:8]}"
    jid = client.submit(sh(daemon_script(f"{m}-$RAFTSCHED_ATTEMPT")))
    wait_daemons(fb_cluster, f"{m}-1")
    fb_cluster.kill("n1", signal.SIGSTOP)
    try:
        wait_gone(fb_cluster, f"{m}-1", timeout=10)
    finally:
        fb_cluster.kill("n1", signal.SIGCONT)
    time.sleep(0.5)
    fb_cluster.wait_ready()
    c2 = fb_cluster.client()
    c2.cancel(jid)
    fb_cluster.wait_terminal([jid], timeout=30, client=c2)
    wait_gone(fb_cluster, m)
