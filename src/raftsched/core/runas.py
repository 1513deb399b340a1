"""Jobs that run as another user of the node (`JobSpec.run_as`). Pure and deterministic.

Two allow lists must both name the user before a job runs as it:
- the job's **namespace** (replicated here, set by an admin with `SetRunAs`): checked
  before a submission is proposed and again when it is applied;
- the **node** (its `allowed_run_as` setting, node/runas.py): checked when the node
  starts the attempt, so a cluster admin token alone cannot make a node run as root.

`HANDLERS` at the bottom is merged into the dispatch table by `apply`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from raftsched.core.codec import command
from raftsched.core.model import JobSpec
from raftsched.core.state import ClusterState, Code, Handler, Result, ok, state_extension

# A conventional user name (useradd's default rule, upper case and '.' allowed): it never
# starts with '-' or a digit, so it is never an option or a uid.
USER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
MAX_USER = 32
MAX_USERS_PER_NAMESPACE = 64
MAX_POLICIES = 10_000


def user_error(user: str, field: str = "run_as") -> str | None:
    """None if `user` is a safe user name, else why not (naming `field`)."""
    if USER_RE.fullmatch(user) is None:
        return (f"{field} {user[:40]!r} is not a user name: 1-{MAX_USER} characters from letters, "
                "digits, '_', '.', '-', not starting with a digit, '.' or '-'")
    return None


def users_error(users: Iterable[str], field: str = "run_as") -> str | None:
    users = list(users)
    if len(users) > MAX_USERS_PER_NAMESPACE:
        return f"{field}: {len(users)} users; at most {MAX_USERS_PER_NAMESPACE} per namespace"
    for i, u in enumerate(users):
        err = user_error(u, f"{field}[{i}]")
        if err:
            return err
    return None


@command(84)
@dataclass(frozen=True, slots=True)
class SetRunAs:
    """The users the jobs of `namespace` may run as (empty: none, the default)."""

    rid: str
    ts: float
    namespace: str
    users: tuple[str, ...] = ()
    by: str = ""
    fp: str = ""


class RunAsState:
    def __init__(self) -> None:
        self.allowed: dict[str, tuple[str, ...]] = {}  # namespace -> users (sorted, distinct)


def _dump(s: RunAsState) -> dict[str, Any]:
    return {ns: list(users) for ns, users in sorted(s.allowed.items())}


def _load(w: dict[str, Any]) -> RunAsState:
    s = RunAsState()
    s.allowed = {ns: tuple(users) for ns, users in w.items()}
    return s


state_extension("runas", RunAsState, _dump, _load)


def runas_of(state: ClusterState) -> RunAsState:
    s: RunAsState = state.ext["runas"]
    return s


def allowed(state: ClusterState, namespace: str) -> tuple[str, ...]:
    return runas_of(state).allowed.get(namespace, ())


def refusal(state: ClusterState, specs: Iterable[JobSpec]) -> str | None:
    """Why a spec may not run as its `run_as` user (its namespace does not allow it), or None."""
    for s in specs:
        if s.run_as and s.run_as not in allowed(state, s.namespace):
            return (f"run_as {s.run_as!r}: namespace {s.namespace!r} does not allow it "
                    f"(allowed: {', '.join(allowed(state, s.namespace)) or 'none'}); an admin "
                    f"allows it with `raftsched acl namespace set {s.namespace} --run-as USER`")
    return None


def _apply_set(state: ClusterState, cmd: SetRunAs) -> Result:
    err = users_error(cmd.users)
    if err:
        return Result(Code.INVALID, None, err)
    table = runas_of(state).allowed
    users = tuple(sorted(set(cmd.users)))
    if not users:
        table.pop(cmd.namespace, None)
    elif cmd.namespace not in table and len(table) >= MAX_POLICIES:
        return Result(Code.EXHAUSTED, None, f"at most {MAX_POLICIES} namespace policies")
    else:
        table[cmd.namespace] = users
    return ok(cmd.namespace)


HANDLERS: dict[type, Handler] = {SetRunAs: _apply_set}
