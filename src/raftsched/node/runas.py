"""Running a job as another user of the node (`JobSpec.run_as`).

The namespace's allow list was checked before the job was accepted (core/runas.py);
the node checks its own: `allowed_run_as` in its `[[nodes]]` table (default: none),
so a cluster admin token alone cannot make a node run anything as root. A user the
node does not allow, or does not have, fails the attempt with that reason.

The job gets the user's uid, primary gid and supplementary groups. Without a
cgroup to join, `subprocess` sets them (`user=`, `group=`, `extra_groups=`); in a
cgroup mode the joining shell must move the process into the attempt's groups
first (which needs the node's privileges), so it runs `setpriv` to drop them right
before the job's program. Its HOME is the user's home, USER/LOGNAME its name, and
its scratch directory (cwd, TMPDIR) is owned by it, under a root the node keeps
outside its private data directory (0711: traversable, not listable). Output files
are still written by the node.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raftsched.node.jobenv import Scratch


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    def env(self) -> dict[str, str]:
        return {"HOME": self.home, "USER": self.user, "LOGNAME": self.user}

    def popen_kwargs(self) -> dict[str, Any]:
        """For subprocess.Popen: set the identity in the child before exec."""
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def drop_argv(self, setpriv: str) -> list[str]:
        """A prefix that becomes this user, then executes the rest of the argv."""
        groups = f"--groups={','.join(map(str, self.groups))}" if self.groups else "--clear-groups"
        return [setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", groups, "--"]


def resolve(user: str, allowed: tuple[str, ...], node_id: str) -> Identity | str:
    """The identity to run as, or why this node refuses (not allowed, unknown user)."""
    if user not in allowed:
        return (f"run_as {user!r}: node {node_id} does not allow it (its allowed_run_as: "
                f"{', '.join(allowed) or 'none'})")
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return f"run_as {user!r}: no such user on node {node_id}"
    try:
        groups = sorted(set(os.getgrouplist(user, pw.pw_gid)) - {pw.pw_gid})
    except OSError as e:
        return f"run_as {user!r}: cannot read its groups on node {node_id}: {e}"
    return Identity(user, pw.pw_uid, pw.pw_gid, tuple(groups), pw.pw_dir or "/")


def setpriv_path() -> str | None:
    return shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")


def scratch_root_path(node_id: str, data_dir: Path, base: Path | None = None) -> Path:
    """`<tmp>/raftsched-scratch-<node>-<hash of its data dir>`."""
    tag = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return (base or Path(tempfile.gettempdir())) / f"raftsched-scratch-{node_id}-{tag}"


def shared_scratch_root(node_id: str, data_dir: Path, base: Path | None = None) -> Path:
    """The root of run_as scratch directories (`scratch_root_path`), owned by the node's
    user, mode 0711. Refuses (OSError) a path someone else made, or a symlink, so another
    local user cannot plant it."""
    root = scratch_root_path(node_id, data_dir, base)
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=0o711)
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise OSError(f"{root} is not a directory owned by the node's user; remove it")
    os.chmod(root, 0o711)
    return root


class RunAs:
    """The executor's view: this node's allow list, identities, and the run_as scratch root."""

    def __init__(self, node_id: str, allowed: tuple[str, ...], retention: float,
                 data_dir: Path) -> None:
        self.node_id = node_id
        self.data_dir = data_dir
        self.allowed = allowed
        self.retention = retention
        self._scratch: Scratch | None = None

    def identity(self, user: str) -> Identity | str:
        return resolve(user, self.allowed, self.node_id)

    def scratch(self) -> Scratch:
        if self._scratch is None:
            root = shared_scratch_root(self.node_id, self.data_dir)
            self._scratch = Scratch(root, self.retention, root=root, mode=0o711)
        return self._scratch

    @staticmethod
    def popen_kwargs(who: Identity) -> dict[str, Any]:
        return who.popen_kwargs()

    def drop_argv(self, who: Identity) -> list[str]:
        path = setpriv_path()
        if path is None:
            raise FileNotFoundError(f"run_as {who.user!r}: setpriv (util-linux) is not installed "
                                    f"on node {self.node_id}")
        return who.drop_argv(path)
