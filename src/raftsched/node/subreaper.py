"""`PR_SET_CHILD_SUBREAPER` (stdlib only: a Python worker imports it too). A subreaper
gets the orphans of its descendants (setsid, double fork, nohup) re-parented to it,
not to init: they stay in its process tree, to be found and killed (the fallback
isolation of a node; a Python worker after each task)."""

from __future__ import annotations

import ctypes

PR_SET_CHILD_SUBREAPER = 36


def set_subreaper() -> bool:
    """Make this process a child subreaper. False if refused or not on Linux."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False
