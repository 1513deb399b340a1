"""Throwaway users for run_as tests: made with useradd, removed with userdel."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest


def why_not() -> str:
    """Why this machine cannot make users for a test ("" if it can)."""
    if os.geteuid() != 0:
        return "run_as tests need root (to create a user and setuid to it)"
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        return "run_as tests need useradd and userdel"
    if shutil.which("setpriv") is None:
        return "run_as in a cgroup mode needs setpriv (util-linux)"
    return ""


def skip_unless_possible() -> None:
    why = why_not()
    if why:
        pytest.skip(why)


def unused_name(prefix: str = "rsjob") -> str:
    while True:
        name = f"{prefix}{uuid.uuid4().hex[:8]}"
        try:
            pwd.getpwnam(name)
        except KeyError:
            return name


@contextlib.contextmanager
def throwaway_user(prefix: str = "rsjob") -> Iterator[pwd.struct_passwd]:
    """A new system user without a home directory or login shell, deleted afterwards."""
    name = unused_name(prefix)
    subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", f"/nonexistent/{name}",
                    "--shell", "/usr/sbin/nologin", "--user-group", name], check=True,
                   capture_output=True, timeout=30)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True, timeout=30)
