"""Identifiers that end up in file names (job ids in output and scratch paths)."""

from __future__ import annotations

import re

# one path component: no separator, not "." or "..", no leading dot or dash, no NUL or newline
SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@+=-]{0,199}")


def is_safe_path_component(name: str) -> bool:
    return SAFE_ID.fullmatch(name) is not None
