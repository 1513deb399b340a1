"""The forked snapshot child dies with its node (replica/durable._bound_the_child): a
node SIGKILLed mid-snapshot must not leave a child holding its listening ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

NODE = """
import os, sys, time
from raftsched.replica.durable import _bound_the_child
parent = os.getpid()
pid = os.fork()
if pid == 0:
    if sys.argv[1] == "bound":
        _bound_the_child(parent)
    time.sleep(60)
    os._exit(0)
print(pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("mode", ["bound", "unbound"])
def test_snapshot_child_dies_with_a_killed_node(mode: str) -> None:
    node = subprocess.Popen([sys.executable, "-c", NODE, mode], stdout=subprocess.PIPE, text=True)
    assert node.stdout is not None
    child = int(node.stdout.readline())
    try:
        time.sleep(0.3)
        assert _alive(child)
        node.send_signal(signal.SIGKILL)
        node.wait(10)
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        # without the bound the orphan lives on (what held the restarted node's ports)
        assert _alive(child) is (mode == "unbound")
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
