"""Baselines that bound `scripts/bench`'s figures on this machine (issue 13).

- `grpc_echo`: a gRPC-only unary echo, same shape as a single SubmitJob: one
  grpc.aio server process with the cluster's mutual TLS, the client in this process
  with `concurrency` calls in flight, a request of a SubmitJob's size. No auth, no
  validation, no Raft: the ceiling of one Python gRPC server on this machine.
- `raft_only`: pysyncobj (SafeSyncObj, our fsync modes) alone, 3 processes on
  loopback, one small command per entry, `window` in flight
  (tests/integration/raft_load_node.py, also `scripts/bench_raft`): the rate of
  commit rounds the log sustains without the scheduler.

`python -m raftsched.dev.benchbase echo-server CONFIG NODE PORTFILE` is the server.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc

from raftsched import config as configmod
from raftsched.client.credentials import local_files, open_aio_channel
from raftsched.dev.launcher import free_ports
from raftsched.rpc.identity import server_credentials

METHOD = "/raftsched.bench.Echo/Echo"


def pct(xs: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `xs`; NaN if empty."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


async def _serve(cfg_path: str, node_id: str, port_file: str) -> None:
    cfg = configmod.load(Path(cfg_path))
    server = grpc.aio.server()

    async def echo(req: bytes, _ctx: grpc.aio.ServicerContext) -> bytes:
        return req

    handler = grpc.method_handlers_generic_handler("raftsched.bench.Echo", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server.add_generic_rpc_handlers((handler,))
    port = free_ports(1)[0]
    if cfg.tls:
        server.add_secure_port(f"127.0.0.1:{port}", server_credentials(cfg, node_id))
    else:
        server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    Path(port_file).write_text(str(port))
    await server.wait_for_termination()


async def _echo_client(addr: str, cfg: configmod.ClusterConfig, payload: bytes, concurrency: int,
                       duration: float) -> dict:
    ch = open_aio_channel(addr, local_files(cfg.data_dir))
    call = ch.unary_unary(METHOD)
    await call(payload, timeout=30)  # connected before the clock starts
    lats: list[float] = []
    stop = time.perf_counter() + duration

    async def worker() -> None:
        while time.perf_counter() < stop:
            t = time.perf_counter()
            await call(payload, timeout=30)
            lats.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    el = time.perf_counter() - t0
    await ch.close()
    return {"concurrency": concurrency, "calls": len(lats), "rate_per_s": len(lats) / el,
            "p50_ms": pct(lats, 50) * 1e3}


def grpc_echo(cfg: configmod.ClusterConfig, payload: bytes, concurrencies: tuple[int, ...],
              duration: float) -> list[dict]:
    """Unary echo calls per second against a one-process grpc.aio server (TLS as the
    cluster), one run per concurrency."""
    port_file = Path(cfg.data_dir) / "echo.port"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "raftsched.dev.benchbase", "echo-server",
                             str(cfg.path), cfg.nodes[0].id, str(port_file)],
                            env={**os.environ, "GRPC_ENABLE_FORK_SUPPORT": "false"})
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("echo server did not start")
            time.sleep(0.05)
        addr = f"127.0.0.1:{port_file.read_text()}"
        return [asyncio.run(_echo_client(addr, cfg, payload, c, duration)) for c in concurrencies]
    finally:
        proc.terminate()
        proc.wait(10)


def raft_only(workdir: Path, fsync: str, commands: int, window: int) -> dict:
    """pysyncobj alone: entries committed per second (one command each), `window` in flight."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "integration"))
    from raft_load_node import Cluster  # type: ignore[import-not-found]

    with Cluster(workdir, batch=False, fsync=fsync) as c:
        leader = c.wait_leader(timeout=30)
        drv = c.drive(leader, commands, window, timeout=300)
    return {"fsync": fsync, "window": window, "entries": drv["ok"],
            "entries_per_s": drv["throughput"], "p50_ms": drv["p50_ms"]}


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "echo-server":
        raise SystemExit("usage: python -m raftsched.dev.benchbase echo-server CONFIG NODE PORTFILE")
    asyncio.run(_serve(sys.argv[2], sys.argv[3], sys.argv[4]))


def proposals(metrics_addr: str) -> tuple[float, float]:
    """(Raft entries, commands) a node has proposed so far, from its metrics endpoint
    ("" = none: zeros)."""
    if not metrics_addr:
        return 0.0, 0.0
    text = urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=5).read().decode()
    got = {}
    for line in text.splitlines():
        for name in ("raftsched_proposal_entries_total", "raftsched_proposal_commands_total"):
            if line.startswith(name + " "):
                got[name] = float(line.split()[1])
    return got.get("raftsched_proposal_entries_total", 0.0), got.get("raftsched_proposal_commands_total", 0.0)


def bounds(r: dict, cores: int) -> list[str]:
    """What the baselines and the measured CPU imply for the targets (lines to print):
    a submission's floor at c=1 is one gRPC round trip plus one commit round, and with
    every node on this machine a phase cannot go faster than `cores` seconds of CPU per
    second spread over the CPU all three nodes spend per job."""
    lines: list[str] = []
    base, cpu = r.get("baselines") or {}, r.get("cpu") or {}
    echo1 = next((g for g in base.get("grpc_echo", []) if g["concurrency"] == 1), None)
    raft1 = next((ro for ro in base.get("raft_only", []) if ro["window"] == 1), None)
    if echo1 and raft1:
        floor = echo1["p50_ms"] + raft1["p50_ms"]
        lines.append(f"bound c=1       p50 >= {floor:.2f} ms: a gRPC round trip ({echo1['p50_ms']:.2f} ms) "
                     f"+ one pysyncobj commit ({raft1['p50_ms']:.2f} ms), both alone, nothing else")
    for phase, c in cpu.items():
        per_job = c["leader_ms"] + 2 * c["follower_ms"]  # three nodes: the leader and two followers
        if per_job > 0:
            lines.append(f"bound {phase:<11s}<= {1000 * cores / per_job:8.0f} jobs/s: {per_job:.3f} ms of CPU per "
                         f"job over the three nodes, {cores} cores on this machine")
    return lines
