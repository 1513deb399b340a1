"""Python tasks (issue 14): what a Python call in a job spec may look like, and how
much of its return value the cluster keeps. Pure: no imports are attempted here.

A Python task names `package.module:function` and passes JSON arguments: a list
(`args_json`) and an object (`kwargs_json`). Both are bounded, because the spec
is replicated in the Raft log; so is the stored return value (`MAX_RESULT_BYTES`):
a larger one fails the attempt on the node, with a message saying so.
"""

from __future__ import annotations

import json
import re

from raftsched.core.model import JobSpec

MAX_TARGET_CHARS = 512
MAX_ARGS_BYTES = 64 * 1024  # args_json + kwargs_json together
MAX_RESULT_BYTES = 64 * 1024
# dotted module path, a colon, then a dotted attribute path (a function, or Class.method)
_TARGET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
                     r":[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def is_python(spec: JobSpec) -> bool:
    return bool(spec.python.target)


def _json_of(text: str, field: str, kind: type, what: str) -> str | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        return f"{field} is not valid JSON: {e}"
    if not isinstance(value, kind):
        return f"{field} must be a JSON {what}, got {type(value).__name__}"
    return None


def validate_python(spec: JobSpec) -> str | None:
    """None if the Python call of `spec` is acceptable, else what is wrong (naming the field)."""
    py = spec.python
    if spec.command or spec.shell or spec.use_shell:
        return "python.target is set: give either a Python task or command/shell, not both"
    if len(py.target) > MAX_TARGET_CHARS:
        return f"python.target is longer than {MAX_TARGET_CHARS} characters"
    if not _TARGET.match(py.target):
        return (f"python.target {py.target[:80]!r} must look like package.module:function "
                "(dotted module path, a colon, the function name)")
    size = len(py.args_json.encode()) + len(py.kwargs_json.encode())
    if size > MAX_ARGS_BYTES:
        return (f"python.args_json and python.kwargs_json are {size} bytes together; "
                f"at most {MAX_ARGS_BYTES}: pass references (paths, ids) to large data instead")
    return (_json_of(py.args_json, "python.args_json", list, "array")
            or _json_of(py.kwargs_json, "python.kwargs_json", dict, "object"))


def stored_result(succeeded: bool, result: str) -> str:
    """What the job keeps of an attempt's return value: only a success's, bounded.
    (The node already fails an attempt whose result is larger; this guards the state.)"""
    if not succeeded or len(result) > MAX_RESULT_BYTES:
        return ""
    return result
