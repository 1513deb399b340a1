"""Access control: tokens, roles, namespaces and quotas. Pure and deterministic.

A token is a random secret held by a client; the replicated state keeps only its
sha256 (`secret_hash`), its name, role and namespaces. Revoking a token removes
it from the state, so every replica refuses it from the entry that commits the
revocation on. Quotas bound what one namespace may queue or run.

`HANDLERS` at the bottom is merged into the dispatch table by `apply`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from raftsched.core import codec, runas
from raftsched.core.commands import AclBootstrap, CreateToken, RevokeToken, SetQuota
from raftsched.core.model import JobSpec
from raftsched.core.state import ClusterState, Code, Handler, Result, ok, state_extension

ALL_NAMESPACES = "*"
MAX_TOKENS = 10_000
MAX_NAMESPACES_PER_TOKEN = 64
MAX_NAME = 128
BOOTSTRAP_NAME = "bootstrap"


class Role(StrEnum):
    ADMIN = "admin"  # everything: tokens, quotas, DLQ purge, every namespace's jobs
    OPERATOR = "operator"  # submitter + retry dead jobs, pause/resume/run schedules
    SUBMITTER = "submitter"  # read + submit and cancel jobs, templates, schedules, workflows
    READER = "reader"  # read jobs, output, watch, cluster status


class Perm(StrEnum):
    READ = "read"
    SUBMIT = "submit"
    OPERATE = "operate"
    ADMIN = "admin"


ROLE_PERMS: dict[Role, frozenset[Perm]] = {
    Role.READER: frozenset({Perm.READ}),
    Role.SUBMITTER: frozenset({Perm.READ, Perm.SUBMIT}),
    Role.OPERATOR: frozenset({Perm.READ, Perm.SUBMIT, Perm.OPERATE}),
    Role.ADMIN: frozenset(Perm),
}


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    secret_hash: str
    role: Role
    namespaces: tuple[str, ...]  # ("*",) = every namespace
    created_at: float = 0.0
    created_by: str = ""

    def may(self, perm: Perm) -> bool:
        return perm in ROLE_PERMS[self.role]

    def sees(self, namespace: str) -> bool:
        return ALL_NAMESPACES in self.namespaces or namespace in self.namespaces

    @property
    def default_namespace(self) -> str:
        first = self.namespaces[0] if self.namespaces else ALL_NAMESPACES
        return "default" if first == ALL_NAMESPACES else first


@dataclass(frozen=True, slots=True)
class Quota:
    max_cpu_millis: int = 0  # 0 = unlimited
    max_memory_mib: int = 0
    max_pending: int = 0


class AclState:
    def __init__(self) -> None:
        self.bootstrapped = False
        self.tokens: dict[str, Token] = {}  # secret hash -> token
        self.by_name: dict[str, str] = {}  # derived: name -> secret hash
        self.quotas: dict[str, Quota] = {}

    def add(self, t: Token) -> None:
        self.tokens[t.secret_hash] = t
        self.by_name[t.name] = t.secret_hash


def _dump(a: AclState) -> dict[str, Any]:
    return {
        "bootstrapped": a.bootstrapped,
        "tokens": {h: codec.to_wire(t) for h, t in sorted(a.tokens.items())},
        "quotas": {ns: codec.to_wire(q) for ns, q in sorted(a.quotas.items())},
    }


def _load(w: dict[str, Any]) -> AclState:
    a = AclState()
    a.bootstrapped = bool(w.get("bootstrapped", False))
    for t in w.get("tokens", {}).values():
        a.add(codec.from_wire(Token, t))
    a.quotas = {ns: codec.from_wire(Quota, q) for ns, q in w.get("quotas", {}).items()}
    return a


state_extension("acl", AclState, _dump, _load)


def acl_of(state: ClusterState) -> AclState:
    a: AclState = state.ext["acl"]
    return a


def lookup(state: ClusterState, secret: str) -> Token | None:
    """The live token with this secret, or None (unknown or revoked)."""
    return acl_of(state).tokens.get(hash_secret(secret))


# ---- validation of names (also used by the servicer before proposing) -----------------


def name_error(what: str, name: str) -> str | None:
    if not name or len(name) > MAX_NAME:
        return f"{what} must be 1..{MAX_NAME} characters"
    if not all(c.isalnum() or c in "-_." for c in name) or not name.isascii():
        return f"{what} {name!r} may contain only ASCII letters, digits, '-', '_' and '.'"
    return None


def namespaces_error(namespaces: tuple[str, ...]) -> str | None:
    if not namespaces:
        return "namespaces: give at least one namespace (or '*' for all)"
    if len(namespaces) > MAX_NAMESPACES_PER_TOKEN:
        return f"namespaces: at most {MAX_NAMESPACES_PER_TOKEN}"
    for ns in namespaces:
        if ns != ALL_NAMESPACES:
            err = name_error("namespace", ns)
            if err:
                return err
    return None


# ---- quotas -------------------------------------------------------------------------------


def quota_error(state: ClusterState, specs: list[JobSpec]) -> str | None:
    """Why submitting `specs` (as new PENDING jobs) would exceed a namespace quota, or None."""
    quotas = acl_of(state).quotas
    if not quotas:
        return None
    add: dict[str, list[int]] = {}
    for s in specs:
        if s.namespace in quotas:
            a = add.setdefault(s.namespace, [0, 0, 0])
            a[0] += s.resources.cpu_millis
            a[1] += s.resources.memory_mib
            a[2] += 1
    for ns, (cpu, mem, n) in sorted(add.items()):
        q = quotas[ns]
        u = state.ns_usage.get(ns)
        used = (u.cpu_millis, u.memory_mib, u.pending) if u else (0, 0, 0)
        for limit, have, more, what in ((q.max_cpu_millis, used[0], cpu, "cpu_millis"),
                                        (q.max_memory_mib, used[1], mem, "memory_mib"),
                                        (q.max_pending, used[2], n, "pending jobs")):
            if limit and have + more > limit:
                return (f"namespace {ns!r} quota exceeded: {what} {have} in use + {more} requested "
                        f"> limit {limit}")
    return None


def admission(state: ClusterState, specs: list[JobSpec]) -> Result | None:
    """The refusal of new jobs with these specs at apply (quota, run_as), or None."""
    over = quota_error(state, specs)
    if over:
        return Result(Code.EXHAUSTED, None, over)
    denied = runas.refusal(state, specs)
    return Result(Code.DENIED, None, denied) if denied else None


# ---- handlers -------------------------------------------------------------------------------


def _apply_bootstrap(state: ClusterState, cmd: AclBootstrap) -> Result:
    a = acl_of(state)
    if a.bootstrapped:
        return Result(Code.PRECONDITION, None, "ACLs are already bootstrapped")
    a.bootstrapped = True
    a.add(Token(cmd.name, cmd.secret_hash, Role.ADMIN, (ALL_NAMESPACES,), cmd.ts, ""))
    return ok(cmd.name)


def _apply_create(state: ClusterState, cmd: CreateToken) -> Result:
    a = acl_of(state)
    try:
        role = Role(cmd.role)
    except ValueError:
        return Result(Code.INVALID, None, f"role {cmd.role!r} is unknown")
    if cmd.name in a.by_name:
        return Result(Code.PRECONDITION, None, f"a token named {cmd.name!r} already exists")
    if cmd.secret_hash in a.tokens:
        return Result(Code.PRECONDITION, None, "that token secret is already in use")
    if len(a.tokens) >= MAX_TOKENS:
        return Result(Code.EXHAUSTED, None, f"at most {MAX_TOKENS} tokens")
    a.add(Token(cmd.name, cmd.secret_hash, role, cmd.namespaces, cmd.ts, cmd.by))
    return ok(cmd.name)


def _apply_revoke(state: ClusterState, cmd: RevokeToken) -> Result:
    a = acl_of(state)
    h = a.by_name.pop(cmd.name, None)
    if h is None:
        return Result(Code.NOT_FOUND, None, f"token {cmd.name!r} not found")
    del a.tokens[h]
    return ok(cmd.name)


def _apply_quota(state: ClusterState, cmd: SetQuota) -> Result:
    q = Quota(cmd.max_cpu_millis, cmd.max_memory_mib, cmd.max_pending)
    if min(q.max_cpu_millis, q.max_memory_mib, q.max_pending) < 0:
        return Result(Code.INVALID, None, "quota limits must be >= 0 (0 = unlimited)")
    quotas = acl_of(state).quotas
    if q == Quota():
        quotas.pop(cmd.namespace, None)
    else:
        quotas[cmd.namespace] = q
    return ok(cmd.namespace)


HANDLERS: dict[type, Handler] = {
    AclBootstrap: _apply_bootstrap,
    CreateToken: _apply_create,
    RevokeToken: _apply_revoke,
    SetQuota: _apply_quota,
}
