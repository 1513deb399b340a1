"""A real local cluster for tests: node processes on 127.0.0.1 with free ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raftsched import config as configmod
from raftsched.client.client import Client
from raftsched.client.credentials import OPTIONS, ClientTLS, local_files, open_token_channel, read_token
from raftsched.dev.launcher import free_ports, write_config  # noqa: F401
from raftsched.node import certs
from raftsched.node.acl_bootstrap import ensure_local_token
from raftsched.v1 import jobs_pb2

TERMINAL = {jobs_pb2.SUCCEEDED, jobs_pb2.FAILED, jobs_pb2.CANCELLED, jobs_pb2.UPSTREAM_FAILED,
            jobs_pb2.TIMED_OUT, jobs_pb2.DEAD}


def status_of(fn: Callable[[], Any]) -> tuple[Any, str]:
    """The gRPC status code and details `fn()` ends with (OK, "" if it returns)."""
    import grpc

    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


class TestCluster:
    __test__ = False

    def __init__(self, n_nodes: int = 3, **kw: Any) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="raftsched-test-"))
        self.config_path = write_config(self.root, n_nodes, **kw)
        self.cfg = configmod.load(self.config_path)
        # Security stays on in tests: a CA and certificates for every node and the client.
        certs.init(self.cfg)
        self.tls: ClientTLS | None = local_files(self.cfg.data_dir)
        # ACLs are on: the nodes bootstrap this management token; clients use it by default
        self.token = read_token(ensure_local_token(self.cfg.data_dir)) if self.cfg.acl else None
        self.log_dir = self.root / "logs"
        self.log_dir.mkdir()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._clients: list[Client] = []
        self._expect_dead = False
        self.added: dict[str, str] = {}  # gRPC address of nodes added at run time (not in the file)

    # ---- processes ------------------------------------------------------------------

    def start_node(self, node_id: str, *extra: str) -> None:
        """Start node `node_id` (`extra`: more `raftsched node` flags, e.g. --join ADDR)."""
        log = open(self.log_dir / f"{node_id}.log", "ab")  # noqa: SIM115
        self.procs[node_id] = subprocess.Popen(
            [sys.executable, "-m", "raftsched", "--config", str(self.config_path), "node",
             "--id", node_id, *extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()

    def start(self) -> TestCluster:
        for n in self.cfg.nodes:
            self.start_node(n.id)
        return self

    def kill(self, node_id: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs[node_id]
        p.send_signal(sig)
        if sig == signal.SIGKILL:
            p.wait(10)

    def stop_node(self, node_id: str) -> None:
        p = self.procs[node_id]
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def close(self) -> None:
        for c in self._clients:
            c.close()
        for nid in list(self.procs):
            p = self.procs[nid]
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait()
        # jobs that outlived a killed node (own process groups) must not leak
        subprocess.run(["pkill", "-KILL", "-f", str(self.root)], check=False)
        if os.environ.get("RAFTSCHED_KEEP_TEST_DIRS"):
            print(f"test cluster kept in {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> TestCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- clients --------------------------------------------------------------------

    def addr(self, node_id: str) -> str:
        return self.added.get(node_id) or self.cfg.node(node_id).grpc

    def client(self, *node_ids: str, token: str | None = "") -> Client:
        """A client of the given nodes (default all) with the management token, or `token`
        (None: no token at all)."""
        ids = node_ids or tuple(n.id for n in self.cfg.nodes)
        c = Client([self.addr(i) for i in ids], token=self.token if token == "" else token, tls=self.tls)
        self._clients.append(c)
        return c

    def channel(self, node_id: str, token: str | None = "") -> Any:
        """A TLS channel to one node, carrying the management token (or `token`). It does
        not share the process-wide subchannels of the clients (nor their reconnect backoff
        from before the node listened): a single-node channel does not move on."""
        opts = [*OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
        return open_token_channel(self.addr(node_id), self.token if token == "" else token, opts,
                                  self.tls)

    def wait_ready(self, timeout: float = 30.0) -> str:
        """Wait for a leader and for every running node to be registered alive."""
        c = self.client()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [nid for nid, p in self.procs.items() if p.poll() is not None]
            if dead and not self._expect_dead:
                raise RuntimeError(f"nodes {dead} exited:\n{self.logs()}")
            try:
                st = c.status()
                nodes = c.nodes()
                alive = {n.id for n in nodes if n.alive}
                want = {nid for nid, p in self.procs.items() if p.poll() is None}
                if st.leader_id and want <= alive:
                    return st.leader_id
            except Exception:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"cluster not ready:\n{self.logs()}")

    def leader(self) -> str:
        return self.client().wait_for_leader().leader_id

    def followers(self) -> list[str]:
        lead = self.leader()
        return [n.id for n in self.cfg.nodes if n.id != lead]

    def wait_terminal(self, ids: list[str], timeout: float = 60.0,
                      client: Client | None = None) -> dict[str, jobs_pb2.Job]:
        c = client or self.client()
        left = set(ids)
        done: dict[str, jobs_pb2.Job] = {}
        deadline = time.monotonic() + timeout
        while left and time.monotonic() < deadline:
            for j in c.list_all():
                if j.id in left and j.state in TERMINAL:
                    done[j.id] = j
                    left.discard(j.id)
            if left:
                time.sleep(0.2)
        if left:
            raise TimeoutError(f"{len(left)} jobs not terminal after {timeout}s; logs {self.log_dir}")
        return done

    def wait_until(self, pred: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {what or pred}")

    def replicas_identical(self, timeout: float = 20.0) -> list[Any]:
        """Wait until every replica reports the same applied index and digest."""
        c = self.client()
        deadline = time.monotonic() + timeout
        reps: list[Any] = []
        while time.monotonic() < deadline:
            reps = list(c.status(include_replicas=True).replicas)
            if all(r.reachable for r in reps) and len(
                {(r.applied_index, r.state_digest) for r in reps}
            ) == 1:
                return reps
            time.sleep(0.3)
        raise AssertionError(f"replicas differ: {reps}")

    def quiet_replicas(self, quiet_for: float = 1.5) -> set[tuple[int, str]]:
        """Wait until the log stops growing for `quiet_for` seconds; then the replicas'
        (applied index, digest), all equal: compare before and after refused requests."""
        cl = self.client()
        last, since = -1, time.monotonic()
        while time.monotonic() - since < quiet_for:
            idx = cl.status().commit_index
            if idx != last:
                last, since = idx, time.monotonic()
            time.sleep(0.1)
        return {(r.applied_index, r.state_digest) for r in self.replicas_identical()}

    def logs(self) -> str:
        return "\n".join(
            f"==== {p.name}\n{p.read_text(errors='replace')[-5000:]}"
            for p in sorted(self.log_dir.glob("*.log"))
        )
