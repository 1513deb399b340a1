"""One SafeSyncObj cluster node for load tests, plus the harness that runs three.

As a script (``python raft_load_node.py --port P --peers P1,P2 --dir D --name n0``)
it runs a node whose replicated consumer keeps a counter and a running sha256
digest of applied commands.  Every 0.2 s it writes ``D/<name>.status`` (JSON).
When ``D/<name>.drive`` appears (JSON ``{"n": N, "window": W}``) the node
submits N commands, keeping W in flight, and reports throughput and commit
latency (submit -> commit callback on the submitting node).

As a module, ``Cluster`` starts/stops three such processes (used by
tests/integration/test_raft_load.py and scripts/bench_raft).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent / "src"
PASSWORD = "raft-load-secret"
BAD_LOG_MARKERS = ("truncating already-applied", "IndexError", "Traceback",
                   "exceeds journal end")


# --------------------------------------------------------------------------- node

def run_node(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(SRC))
    from pysyncobj import FAIL_REASON, SyncObjConf, SyncObjConsumer, replicated

    from raftsched.replica.raftsafe import SafeSyncObj

    class Digest(SyncObjConsumer):
        def __init__(self):
            super().__init__()
            self.state = (0, hashlib.sha256().digest())  # (applied count, digest)

        @replicated
        def apply(self, value):
            count, digest = self.state
            self.state = (count + 1, hashlib.sha256(digest + repr(value).encode()).digest())

    d = Path(args.dir)
    conf = SyncObjConf(
        password=PASSWORD,
        journalFile=str(d / f"{args.name}.journal"),
        fullDumpFile=str(d / f"{args.name}.dump"),
        appendEntriesUseBatch=args.batch,
        raftMinTimeout=1.0, raftMaxTimeout=2.5, leaderFallbackTimeout=2.0,
    )
    cls = SafeSyncObj
    if args.unsafe:
        cls = type("UnsafeSyncObj", (SafeSyncObj,), {"raftsafe_enabled": False})
    digest = Digest()
    peers = [f"127.0.0.1:{p}" for p in args.peers.split(",")]
    node = cls(f"127.0.0.1:{args.port}", peers, conf, consumers=[digest], fsync=args.fsync)

    driver: dict = {}

    def drive(n: int, window: int) -> None:
        sem = threading.Semaphore(window)
        lock = threading.Lock()
        lat: list[float] = []
        res = {"ok": 0, "failed": 0}
        driver.update(submitted=0, ok=0, failed=0, done=False)
        t0 = time.monotonic()
        i = 0
        while True:
            with lock:
                if res["ok"] >= n:
                    break
            # submit only what is still needed (failed calls are replaced)
            with lock:
                need = n - res["ok"] - (driver["submitted"] - res["ok"] - res["failed"])
            if need <= 0:
                time.sleep(0.001)
                continue
            sem.acquire()
            i += 1
            ts = time.monotonic()

            def cb(result, err, ts=ts):
                with lock:
                    if err == FAIL_REASON.SUCCESS:
                        res["ok"] += 1
                        lat.append(time.monotonic() - ts)
                    else:
                        res["failed"] += 1
                sem.release()

            digest.apply(i, callback=cb)
            driver["submitted"] += 1
            driver.update(ok=res["ok"], failed=res["failed"])
        elapsed = time.monotonic() - t0
        lat.sort()
        driver.update(ok=res["ok"], failed=res["failed"], done=True, elapsed=elapsed,
                      throughput=res["ok"] / elapsed,
                      p50_ms=1000 * lat[len(lat) // 2],
                      p99_ms=1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))])

    status_path, drive_path = d / f"{args.name}.status", d / f"{args.name}.drive"
    driving = False
    while True:
        if not driving and drive_path.exists():
            spec = json.loads(drive_path.read_text())
            driving = True
            threading.Thread(target=drive, args=(spec["n"], spec["window"]), daemon=True).start()
        st = node.getStatus()
        count, dig = digest.state
        status = {
            "name": args.name, "pid": os.getpid(), "time": time.time(),
            "leader": str(st["leader"]) if st["leader"] else None,
            "is_leader": node._isLeader(), "ready": node.isReady(),
            "applied_count": count, "digest": dig.hex(),
            "last_applied": st["last_applied"], "commit_idx": st["commit_idx"],
            "term": st["raft_term"], "log_len": st["log_len"],
            "raftsafe": node.raftsafe_stats(), "driver": dict(driver),
        }
        tmp = status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        os.replace(tmp, status_path)
        time.sleep(0.2)


# ------------------------------------------------------------------------ harness

def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Cluster:
    """Three node processes on 127.0.0.1; always call stop() (context manager)."""

    def __init__(self, workdir: Path, batch: bool, fsync: str = "never", unsafe: bool = False):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.batch, self.fsync, self.unsafe = batch, fsync, unsafe
        self.names = ["n0", "n1", "n2"]
        self.procs: dict[str, subprocess.Popen] = {}

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self) -> None:
        ports = free_ports(3)
        for name, port in zip(self.names, ports, strict=True):
            peers = ",".join(str(p) for p in ports if p != port)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--port", str(port),
                   "--peers", peers, "--dir", str(self.dir), "--name", name,
                   "--fsync", self.fsync] + (["--batch"] if self.batch else []) \
                + (["--unsafe"] if self.unsafe else [])
            log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - child owns it
            self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)
            log.close()

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)  # own session: node + forked dumpers
        for p in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)

    def statuses(self) -> dict[str, dict]:
        out = {}
        for name in self.names:
            with contextlib.suppress(OSError, ValueError):
                out[name] = json.loads((self.dir / f"{name}.status").read_text())
        return out

    def check_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"node process exited: {dead}\n{self.logs_tail()}")

    def wait_leader(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            st = self.statuses()
            leaders = [n for n, s in st.items() if s["is_leader"]]
            if len(st) == 3 and len(leaders) == 1 and all(s["leader"] for s in st.values()):
                return leaders[0]
            time.sleep(0.1)
        raise TimeoutError(f"no leader: {self.statuses()}")

    def drive(self, name: str, n: int, window: int, timeout: float) -> dict:
        (self.dir / f"{name}.drive").write_text(json.dumps({"n": n, "window": window}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            drv = self.statuses().get(name, {}).get("driver", {})
            if drv.get("done"):
                return drv
            time.sleep(0.2)
        raise TimeoutError(f"driver did not finish: {self.statuses()}")

    def wait_converged(self, min_count: int, timeout: float) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        st: dict[str, dict] = {}
        while time.monotonic() < deadline:
            self.check_alive()
            st = self.statuses()
            keys = {(s["applied_count"], s["digest"], s["last_applied"]) for s in st.values()}
            if len(st) == 3 and len(keys) == 1 and next(iter(keys))[0] >= min_count:
                return st
            time.sleep(0.2)
        raise TimeoutError(f"nodes did not converge: {st}")

    def bad_log_lines(self) -> list[str]:
        bad = []
        for name in self.names:
            text = (self.dir / f"{name}.log").read_text(errors="replace")
            bad += [f"{name}: {ln}" for ln in text.splitlines()
                    if any(m in ln for m in BAD_LOG_MARKERS)]
        return bad

    def logs_tail(self, n: int = 20) -> str:
        parts = []
        for name in self.names:
            lines = (self.dir / f"{name}.log").read_text(errors="replace").splitlines()
            parts.append(f"--- {name}.log\n" + "\n".join(lines[-n:]))
        return "\n".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--peers", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--batch", action="store_true")
    ap.add_argument("--unsafe", action="store_true")
    ap.add_argument("--fsync", default="never", choices=("always", "batch", "never"))
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_node(ap.parse_args())


if __name__ == "__main__":
    main()
