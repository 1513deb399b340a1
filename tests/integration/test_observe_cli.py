"""The observability CLI against a real cluster: top in a pseudo-terminal, --json, logs, watch, status."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from raftsched.v1 import jobs_pb2
from tests.support.cluster import TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def cli(c: TestCluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "raftsched", "--config", str(c.config_path), *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "NO_COLOR": ""})


def run_in_pty(argv: list[str], duration: float | None, cols: int = 120) -> tuple[str, int]:
    """Run argv with a pty as its terminal; stop it with Ctrl-C after `duration` seconds."""
    import fcntl
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # child
        os.environ.pop("NO_COLOR", None)
        os.environ["TERM"] = "xterm"
        os.execv(sys.executable, [sys.executable, *argv])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
    out = b""
    start = time.monotonic()
    sent = False
    status = None
    while True:
        if duration is not None and not sent and time.monotonic() - start > duration:
            os.write(fd, b"\x03")  # Ctrl-C through the terminal: SIGINT to the foreground group
            sent = True
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            out += chunk
        wpid, st = os.waitpid(pid, os.WNOHANG)
        if wpid:
            status = st
            # drain what is left
            while select.select([fd], [], [], 0.1)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            break
        if time.monotonic() - start > 60:
            os.kill(pid, signal.SIGKILL)
    if status is None:
        _, status = os.waitpid(pid, 0)
    os.close(fd)
    return out.decode(errors="replace"), os.waitstatus_to_exitcode(status)


def test_top_in_a_terminal_and_json(cluster3: TestCluster) -> None:
    c = cluster3
    client = c.client()
    bad = client.submit(jobs_pb2.JobSpec(command=["sh", "-c", "exit 3"], name="bad"))
    long_id = client.submit(jobs_pb2.JobSpec(command=["sleep", "15"], name="long",
                                             resources=jobs_pb2.Resources(cpu_millis=1000, memory_mib=64)))
    c.wait_terminal([bad], client=client)
    c.wait_until(lambda: client.get(long_id).state == jobs_pb2.RUNNING, 20, "long job running")
    # --once in a terminal: one frame, coloured
    out, code = run_in_pty(["-m", "raftsched", "--config", str(c.config_path), "top", "--once"], None)
    assert code == 0, out
    assert "\x1b[" in out, "a terminal gets colour"
    plain = ANSI.sub("", out)
    for n in ("n1", "n2", "n3"):
        assert re.search(rf"^{n}\s+up\s+(leader|follower)\s+\[[#.]+\]\s+\d+%", plain, re.M), plain
    assert re.search(rf"^{long_id}\s+n\d\s+1\s", plain, re.M), plain  # running job listed
    assert re.search(rf"^{bad}\s+n\d\s+1\s+3\s+exit code 3", plain, re.M), plain  # recent failure
    # the 1000m job shows as at least 50% CPU on its 2000m node
    node = client.get(long_id).node_id
    m = re.search(rf"^{node}\s+up\s+\S+\s+\[[#.]+\]\s+(\d+)%", plain, re.M)
    assert m and int(m.group(1)) >= 50, plain

    # live mode: redraws until Ctrl-C, then restores the cursor and exits 0
    out, code = run_in_pty(["-m", "raftsched", "--config", str(c.config_path), "top",
                            "--interval", "0.3"], duration=2.5)
    assert code == 0, out
    assert out.count("\x1b[H\x1b[2J") >= 3, "expected several redraws"
    assert out.rstrip().endswith("\x1b[?25h")

    # --json (either position) parses and carries the same facts; no colour codes
    for args in (["--json", "top", "--once"], ["top", "--json"]):
        r = cli(c, *args)
        assert r.returncode == 0, r.stderr
        assert "\x1b[" not in r.stdout
        d = json.loads(r.stdout)
        assert {n["id"] for n in d["nodes"]} == {"n1", "n2", "n3"}
        assert long_id in {x["id"] for x in d["running"]}
        assert bad in {x["id"] for x in d["recent_failures"]}
        assert d["leader"] in {"n1", "n2", "n3"}


def test_json_outputs_parse(cluster3: TestCluster) -> None:
    c = cluster3
    r = cli(c, "--json", "submit", "--wait", "--count", "3", "--", "sh", "-c", "echo hello; echo oops >&2")
    assert r.returncode == 0, r.stderr
    jobs = json.loads(r.stdout)["jobs"]
    assert [j["state"] for j in jobs] == ["SUCCEEDED"] * 3
    jid = jobs[0]["id"]
    assert [t["state"] for t in jobs[0]["history"]] == ["PENDING", "ASSIGNED", "RUNNING", "SUCCEEDED"]

    for args in (["status", jid, "--json"], ["--json", "list"], ["--json", "nodes"], ["--json", "leader"]):
        r = cli(c, *args)
        assert r.returncode == 0, (args, r.stderr)
        json.loads(r.stdout)

    r = cli(c, "--json", "logs", jid)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["stdout"] == "hello\n" and d["stderr"] == "oops\n" and d["source"] == "NODE_FILE"

    r = cli(c, "logs", jid)
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello\n", "oops\n")

    r = cli(c, "--json", "watch", "--job", jid, "--initial", "--until-done")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(x["job_id"], x["state"], x["initial"]) for x in lines] == [(jid, "SUCCEEDED", True)]

    # exit codes mean something
    assert cli(c, "status", "no-such-job").returncode == 3
    assert cli(c, "logs", "no-such-job").returncode == 3
    assert cli(c, "watch", "--from", "0.0").returncode == 6
    assert cli(c, "watch", "--from", "x.y").returncode == 2


def test_status_shows_timeline_and_wait_progress(cluster3: TestCluster) -> None:
    c = cluster3
    r = cli(c, "submit", "--wait", "--count", "2", "--", "false")
    assert r.returncode == 1, "a failed job makes --wait exit 1"
    jid = r.stdout.splitlines()[1].split()[0]
    r = cli(c, "status", jid)
    assert r.returncode == 0, r.stderr
    tl = r.stdout[r.stdout.index("timeline"):].splitlines()[1:5]
    assert [line.split()[2] for line in tl] == ["PENDING", "ASSIGNED", "RUNNING", "FAILED"], r.stdout
    assert "exit code 1" in tl[3] and "token" in tl[1]

    # the progress display in a terminal
    out, code = run_in_pty(["-m", "raftsched", "--config", str(c.config_path), "submit", "--wait",
                            "--count", "5", "--", "sleep", "0.3"], None)
    assert code == 0, out
    assert re.search(r"\[[#]+\] 5/5 done\s+succeeded 5", ANSI.sub("", out)), out
