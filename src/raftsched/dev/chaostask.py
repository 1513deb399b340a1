"""The chaos harness's Python task (issue 14): the same ledger as its shell jobs.

Under a non-blocking flock on the job's lock file (the one the shell jobs use), it
appends `S <job> <attempt> <token> <node> <time>` to the ledger, sleeps, appends
`E ...`; if another attempt of the job holds the lock it appends `OVERLAP ...` and
fails. A worker killed mid-task releases the lock with its file descriptor.
Stdlib and raftsched.current_task only: it runs in the nodes' worker processes.
"""

from __future__ import annotations

import fcntl
import os
import time

import raftsched


def _append(ledger: str, line: str) -> None:
    with open(ledger, "a") as f:
        f.write(line + "\n")


def ledger_task(ledger: str, locks: str, seconds: float) -> str:
    ctx = raftsched.current_task()
    rec = f"{ctx.job_id} {ctx.attempt} {ctx.fencing_token} {ctx.node_id}"
    fd = os.open(os.path.join(locks, ctx.job_id), os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _append(ledger, f"OVERLAP {rec} {time.time():.6f}")
            raise RuntimeError("another attempt of this job holds its lock") from None
        _append(ledger, f"S {rec} {time.time():.6f}")
        time.sleep(seconds)
        _append(ledger, f"E {rec} {time.time():.6f}")
        return rec
    finally:
        os.close(fd)
