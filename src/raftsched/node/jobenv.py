"""What a job sees of its node: a documented environment and its own scratch directory.

A job's environment is exactly its spec's `env` on top of a minimal base, then
the `RAFTSCHED_*` variables (which the spec cannot override):

    PATH     /usr/local/bin:/usr/bin:/bin (unless the spec sets PATH)
    HOME     the attempt's scratch directory (unless the spec sets HOME); with run_as,
             that user's home, and USER, LOGNAME its name
    LANG     C.UTF-8 (unless the spec sets LANG)
    TMPDIR   the attempt's scratch directory (unless the spec sets TMPDIR)
    RAFTSCHED_JOB_ID, RAFTSCHED_ATTEMPT, RAFTSCHED_FENCING_TOKEN, RAFTSCHED_NODE_ID

Nothing of the node's own environment (RAFTSCHED_SECRET, credentials, ...) is passed.
Without a `working_dir` in its spec, an attempt runs in a fresh directory
`<node data dir>/scratch/<job>.<attempt>/` (0700), removed once untouched for
`retention` seconds; a node never runs a job in its own working directory.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import structlog

from raftsched.core.names import is_safe_path_component

log = structlog.get_logger("raftsched.node.jobenv")

BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
JOB_VARIABLES = ("RAFTSCHED_JOB_ID", "RAFTSCHED_ATTEMPT", "RAFTSCHED_FENCING_TOKEN", "RAFTSCHED_NODE_ID")


def check_job_id(job_id: str) -> None:
    """Job ids become file names: refuse anything that is not one safe path component."""
    if not is_safe_path_component(job_id):
        raise ValueError(f"job id {job_id[:80]!r} is not a safe file name")


def job_env(spec_env: Mapping[str, str], job_id: str, attempt: int, token: int, node_id: str,
            scratch: Path, user_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`user_env`: HOME, USER, LOGNAME of a run_as user (node/runas.py)."""
    env = {"PATH": BASE_PATH, "HOME": str(scratch), "LANG": "C.UTF-8", "TMPDIR": str(scratch)}
    env.update(user_env or {})
    env.update(spec_env)
    env.update({
        "RAFTSCHED_JOB_ID": job_id,
        "RAFTSCHED_ATTEMPT": str(attempt),
        "RAFTSCHED_FENCING_TOKEN": str(token),
        "RAFTSCHED_NODE_ID": node_id,
    })
    return env


class Scratch:
    """Per-attempt scratch directories under the node's data dir, swept after `retention`."""

    SWEEP_EVERY = 60.0

    def __init__(self, node_data_dir: Path, retention: float, root: Path | None = None,
                 mode: int = 0o700) -> None:
        self.root = root or node_data_dir / "scratch"
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, mode)
        self.retention = retention
        self._last_sweep = 0.0
        self._sweeping = threading.Lock()

    def path(self, job_id: str, attempt: int) -> Path:
        """The attempt's directory, not created (a Python worker makes its task's own,
        off the node's event loop); checks the job id is a safe file name."""
        check_job_id(job_id)
        self.maybe_sweep()
        return self.root / f"{job_id}.{attempt}"

    def make(self, job_id: str, attempt: int, owner: tuple[int, int] | None = None) -> Path:
        """The attempt's directory (0700); `owner` (uid, gid): the run_as user's."""
        check_job_id(job_id)
        d = self.root / f"{job_id}.{attempt}"
        d.mkdir(mode=0o700, exist_ok=True)
        if owner is not None:
            os.chown(d, *owner)
        self.maybe_sweep()
        return d

    def maybe_sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < self.SWEEP_EVERY or self._sweeping.locked():
            return
        self._last_sweep = now
        # off the event loop: a job may leave a large tree behind
        threading.Thread(target=self.sweep, name="scratch-sweep", daemon=True).start()

    def sweep(self, now: float | None = None) -> int:
        """Remove scratch directories untouched for more than `retention` seconds."""
        removed = 0
        with self._sweeping:
            cutoff = (now if now is not None else time.time()) - self.retention
            for d in list(self.root.iterdir()):
                try:
                    if d.stat().st_mtime < cutoff:
                        shutil.rmtree(d, ignore_errors=True)
                        removed += 1
                except OSError as e:
                    log.warning("scratch sweep", path=str(d), error=str(e))
        return removed
