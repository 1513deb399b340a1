"""Every command of the README's "Using it" section runs as written (issue 17).

The commands are read from README.md, so the README cannot drift. They run through
bash, in a directory whose `cluster.toml` is this test's config: the shipped
cluster.toml's nodes (labels, capacities) on free ports, with the test's CA, token and
data directory. `raftsched node ...` and `raftsched cluster up` are started as written
(the cluster the other commands then use is the one `cluster up` started). Only
placeholders are replaced: JOB_ID / WORKFLOW_ID by real ids (a finished job, or for
`cancel` a running one, for `dlq retry` a dead one), `...` by the token, and the
shipped config's addresses (127.0.0.1:720N) or the example remote one (10.0.0.5:7201)
by the test nodes' addresses. The remote-cluster block (several machines, prod.toml)
is the one block not run.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from raftsched.v1 import jobs_pb2
from tests.support.cluster import TestCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
NOT_COMMANDS = {". .venv/bin/activate"}
REMOTE_BLOCK_MARK = "prod.toml"


def readme_blocks() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Using it")
    end = text.index("\n## ", start + 1)
    blocks = re.findall(r"```bash\n(.*?)```", text[start:end], re.S)
    return [[ln for ln in b.splitlines() if ln.strip()] for b in blocks]


def commands() -> tuple[list[str], list[str]]:
    """(server lines, client lines) of the section, in README order."""
    blocks = readme_blocks()
    remote = [b for b in blocks if any(REMOTE_BLOCK_MARK in ln for ln in b)]
    assert len(remote) == 1, "expected exactly one remote-cluster block"
    server, client = [], []
    for b in blocks:
        if b is remote[0]:
            continue
        for ln in b:
            if ln in NOT_COMMANDS:
                continue
            assert re.match(r"^(\w+=\S+ )?raftsched ", ln), f"not a raftsched command: {ln!r}"
            # `raftsched node --id ...` runs a node; `raftsched node drain ...` is a client command
            (server if re.match(r"^raftsched (node --|cluster up\b)", ln) else client).append(ln)
    return server, client


def test_readme_commands_are_found() -> None:
    server, client = commands()
    assert [s.split("#")[0].split()[:2] for s in server] == [["raftsched", "cluster"],
                                                            ["raftsched", "node"]]
    assert len(client) >= 20


def _listening(addr: str) -> bool:
    host, port = addr.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=0.5).close()
        return True
    except OSError:
        return False


def _stop(p: subprocess.Popen[str], sig: int = signal.SIGINT) -> int:
    if p.poll() is None:
        os.killpg(p.pid, sig)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return p.returncode


def test_readme_commands_run_as_written(tmp_path: Path) -> None:
    shipped = tomllib.loads((ROOT / "cluster.toml").read_text())["nodes"]
    c = TestCluster(n_nodes=len(shipped), labels=[n.get("labels", {}) for n in shipped],
                    cpu=shipped[0]["cpu_millis"], mem=shipped[0]["memory_mib"])
    procs: list[subprocess.Popen[str]] = []
    try:
        _run(c, procs, tmp_path)
    finally:
        for p in procs:
            _stop(p, signal.SIGKILL)
        c.close()


def _run(c: TestCluster, procs: list[subprocess.Popen[str]], work: Path) -> None:
    (work / "cluster.toml").symlink_to(c.config_path)
    for name in ("flaky.sh", "backup.sh", "render", "run-tests"):
        (work / name).write_text("#!/bin/sh\nexit 0\n")
        (work / name).chmod(0o755)
    (work / "workflow.toml").write_text(
        'name = "readme"\n[[jobs]]\nname = "a"\ncommand = ["true"]\n'
        '[[jobs]]\nname = "b"\nshell = "true"\ndepends_on = ["a"]\n')
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RAFTSCHED_CONFIG", None)
    env.pop("RAFTSCHED_TOKEN", None)
    addr = {f"127.0.0.1:720{i + 1}": n.grpc for i, n in enumerate(c.cfg.nodes)}
    addr["10.0.0.5:7201"] = c.cfg.nodes[0].grpc

    def start(line: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(["bash", "-c", line], cwd=work, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        return p

    server, client_lines = commands()
    # `raftsched node --config cluster.toml --id n1`: starts and serves, then stops
    node_line = next(s for s in server if " node " in s)
    p = start(node_line)
    deadline = time.monotonic() + 60
    while not _listening(c.cfg.nodes[0].grpc):
        assert p.poll() is None, f"{node_line!r} exited {p.returncode}: {p.stdout.read()}"
        assert time.monotonic() < deadline, f"{node_line!r} never listened"
        time.sleep(0.2)
    _stop(p, signal.SIGTERM)
    procs.remove(p)
    # `raftsched cluster up`: the cluster for everything else
    up = start(next(s for s in server if "cluster up" in s))
    client = c.client()
    deadline = time.monotonic() + 90
    while True:
        assert up.poll() is None, f"cluster up exited {up.returncode}: {up.stdout.read()}"
        try:
            if client.status().leader_id and all(n.alive for n in client.nodes()) \
                    and len(client.nodes()) == len(c.cfg.nodes):
                break
        except Exception:
            pass
        assert time.monotonic() < deadline, "cluster up: no ready cluster"
        time.sleep(0.2)

    done = client.submit(jobs_pb2.JobSpec(command=["sh", "-c", "echo readme"]))
    running = client.submit(jobs_pb2.JobSpec(command=["sleep", "300"]))
    dead = client.submit(jobs_pb2.JobSpec(command=["false"], retry=jobs_pb2.RetryPolicy(
        max_attempts=1)))
    c.wait_terminal([done, dead], client=client)
    c.wait_until(lambda: client.get(running).state == jobs_pb2.RUNNING, 30, "a running job")
    wf = subprocess.run(["raftsched", "dag", "submit", "workflow.toml"], cwd=work, env=env,
                        capture_output=True, text=True, timeout=60)
    assert wf.returncode == 0, wf.stderr
    workflow_id = wf.stdout.strip()

    for line in client_lines:
        job = running if " cancel " in line else dead if "dlq retry" in line else done
        cmd = line.replace("JOB_ID", job).replace("WORKFLOW_ID", workflow_id)
        cmd = cmd.replace("=...", f"={c.token}").replace("--token ...", f"--token {c.token}")
        for old, new in addr.items():
            cmd = cmd.replace(old, new)
        r = subprocess.run(["bash", "-c", cmd], cwd=work, env=env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, f"README: {line}\nran: {cmd}\nexit {r.returncode}\n{r.stderr}"
        assert "Traceback" not in r.stderr, (line, r.stderr)

    assert client.get(running).state in (jobs_pb2.CANCELLING, jobs_pb2.CANCELLED)
    j = client.get(dead)  # `dlq retry` put it back (and `false` may have died again since)
    assert j.state != jobs_pb2.DEAD or j.attempt >= 2, j
    assert _stop(up) == 0, up.stdout.read() if up.stdout else ""
