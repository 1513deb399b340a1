"""A Python worker's scratch directories (stdlib only: imported by child.py).

Each task runs in a fresh, empty 0700 directory of its own
(`<node data dir>/scratch/<job>.<attempt>/`, node/jobenv.py). Making one is a mkdir,
which costs 70-200 us of CPU on this project's test machines (ext4) against ~10 us for
a rename: most of a warm worker's cost per no-op task. So when a task leaves its
directory exactly as it got it (empty, 0700, ours, no extended attributes) and no
process of it is left alive, the next task's directory is that one, renamed. Nothing a
task can observe changes: it gets a new, empty, private directory under its own name;
only an empty directory of a finished attempt goes before its retention.

"No process left alive" matters: a process holding the old directory as its working
directory would follow it to the next task. The worker is a child subreaper
(`PR_SET_CHILD_SUBREAPER`), so a task's orphans (double fork, setsid) are re-parented
to it and killed with the rest (child.kill_leftovers); where the subreaper cannot be
set, or a child is still there, directories are never reused.
"""

from __future__ import annotations

import os
import stat


class ScratchDirs:
    def __init__(self, reuse: bool) -> None:
        self.reuse = reuse
        self.spare: str | None = None  # an empty directory a finished task left
        self.reused = 0

    def make(self, path: str) -> None:
        """The task's directory at `path`: the spare one renamed, else a new one."""
        spare, self.spare = self.spare, None
        if spare is not None:
            try:
                if spare != path:
                    os.rename(spare, path)  # fails on a non-empty `path`: made below
                os.utime(path)  # the scratch sweep goes by mtime: it is in use now
                self.reused += 1
                return
            except OSError:
                pass
        os.makedirs(path, mode=0o700, exist_ok=True)

    def done(self, path: str) -> None:
        """The task that ran in `path` has returned and what it left running is
        killed: keep the directory for the next task if it is as it was made."""
        if self.reuse and not _has_children() and as_made(path):
            self.spare = path


def as_made(path: str | os.PathLike[str]) -> bool:
    """An empty directory, 0700, this process's user's, without extended attributes
    (e.g. a default ACL): as a scratch directory is made, so it may serve another
    attempt (once no process of the one that used it is left)."""
    try:
        st = os.lstat(path)
        if not (stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
                and st.st_uid == os.getuid()):
            return False
        if os.listxattr(path, follow_symlinks=False):
            return False
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:
        return False


def _has_children() -> bool:
    pid = os.getpid()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                if f.read().strip():
                    return True
    except OSError:
        return True
    return False
