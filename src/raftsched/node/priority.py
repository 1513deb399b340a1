"""CPU priority of the threads that keep a node alive (issue 12).

A node is one Python process. When the machine is busy (other processes, or the
node's own request handling on several threads), the Raft tick thread, the
heartbeat sender and the control port's handlers wait for a CPU like everything
else; a Raft tick or a heartbeat late by half a second costs an election or a
lease. Linux nice values are per thread, so these threads alone get
`critical_nice` (default -5): when they become runnable (a timer, a message) the
kernel runs them ahead of the node's request threads and of ordinary processes.
They still need the GIL, which CPython hands over within `sys.setswitchinterval`
(1 ms in a node). Going below 0 needs root or CAP_SYS_NICE; without it the node
runs them at normal priority and says so once.
"""

from __future__ import annotations

import os
import threading

import structlog

log = structlog.get_logger("raftsched.node.priority")

_warned = False


def favour(native_id: int | None, nice: int, what: str) -> bool:
    """Give thread `native_id` (a Linux TID) the nice value `nice`; False if not allowed."""
    global _warned
    if nice == 0 or native_id is None or not hasattr(os, "setpriority"):
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, native_id, nice)
        return True
    except OSError as e:
        if not _warned:
            _warned = True
            log.info("cannot raise the CPU priority of the Raft and heartbeat threads; they run at "
                     "normal priority (needs root or CAP_SYS_NICE)", thread=what, error=str(e))
        return False


def favour_me(nice: int, what: str) -> bool:
    """The calling thread (a ThreadPoolExecutor initializer, a thread's first step)."""
    return favour(threading.get_native_id(), nice, what)
