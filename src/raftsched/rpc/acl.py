"""The Acl service: bootstrap, tokens, quotas. Permissions are checked by `auth`;
this servicer validates, refuses what cannot succeed before proposing, and writes
through `Writes` (only the sha256 of a secret ever reaches the log)."""

from __future__ import annotations

import time

import grpc

from raftsched.core import acl, runas
from raftsched.core.acl import BOOTSTRAP_NAME, Role
from raftsched.core.commands import AclBootstrap, CreateToken, RevokeToken, SetQuota
from raftsched.ports import ReplicaView
from raftsched.rpc import auth
from raftsched.rpc.writes import Writes
from raftsched.v1 import acl_pb2, acl_pb2_grpc

MIN_SECRET = 32
INVALID = grpc.StatusCode.INVALID_ARGUMENT
REFUSED = grpc.StatusCode.FAILED_PRECONDITION


def token_pb(t: acl.Token) -> acl_pb2.TokenInfo:
    return acl_pb2.TokenInfo(name=t.name, role=t.role.value, namespaces=list(t.namespaces),
                             created_at=t.created_at, created_by=t.created_by)


def quota_pb(ns: str, q: acl.Quota) -> acl_pb2.Quota:
    return acl_pb2.Quota(namespace=ns, max_cpu_millis=q.max_cpu_millis,
                         max_memory_mib=q.max_memory_mib, max_pending=q.max_pending)


class AclServicer(acl_pb2_grpc.AclServicer):
    def __init__(self, replica: ReplicaView, writes: Writes) -> None:
        self.replica = replica
        self.writes = writes

    @property
    def acl(self) -> acl.AclState:
        return acl.acl_of(self.replica.state)

    async def _secret(self, context: grpc.aio.ServicerContext, secret: str) -> str:
        if len(secret) < MIN_SECRET or not secret.isascii() or not secret.isprintable():
            await context.abort(INVALID, f"secret: give at least {MIN_SECRET} printable ASCII "
                                "characters of randomness (e.g. `python -c 'import secrets; "
                                "print(secrets.token_urlsafe(32))'`)")
        h = acl.hash_secret(secret)
        if h in self.acl.tokens:
            await context.abort(REFUSED, "secret: that token is already registered")
        return h

    async def Bootstrap(self, request, context):
        if self.acl.bootstrapped:
            await context.abort(REFUSED, "ACLs are already bootstrapped; ask an admin for a token")
        h = await self._secret(context, request.secret)

        async def local(rid: str) -> acl_pb2.TokenInfo:
            if self.acl.bootstrapped and rid not in self.replica.state.dedup:
                await context.abort(REFUSED, "ACLs are already bootstrapped")
            await self.writes.propose(context, AclBootstrap(rid, time.time(), BOOTSTRAP_NAME, h))
            return token_pb(self.acl.tokens[h])

        return await self.writes.write(context, request, acl_pb2_grpc.AclStub, "Bootstrap", local)

    async def CreateToken(self, request, context):
        err = acl.name_error("name", request.name) or acl.namespaces_error(tuple(request.namespaces))
        if err:
            await context.abort(INVALID, err)
        if request.role not in set(Role):
            await context.abort(INVALID, f"role {request.role!r}: use one of "
                                f"{', '.join(r.value for r in Role)}")
        h = await self._secret(context, request.secret)
        by = auth.principal().name

        async def local(rid: str) -> acl_pb2.TokenInfo:
            if request.name in self.acl.by_name and rid not in self.replica.state.dedup:
                await context.abort(REFUSED, f"name: a token named {request.name!r} already exists")
            cmd = CreateToken(rid, time.time(), request.name, h, request.role,
                              tuple(request.namespaces), by=by)
            await self.writes.propose(context, cmd)
            return token_pb(self.acl.tokens[h])

        return await self.writes.write(context, request, acl_pb2_grpc.AclStub, "CreateToken", local)

    async def ListTokens(self, request, context):
        with self.replica.lock:
            tokens = sorted(self.acl.tokens.values(), key=lambda t: t.name)
        return acl_pb2.ListTokensResponse(tokens=[token_pb(t) for t in tokens])

    async def RevokeToken(self, request, context):
        if not request.name:
            await context.abort(INVALID, "name is empty")
        by = auth.principal().name

        async def local(rid: str) -> acl_pb2.RevokeTokenResponse:
            if request.name not in self.acl.by_name and rid not in self.replica.state.dedup:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"token {request.name!r} not found")
            await self.writes.propose(context, RevokeToken(rid, time.time(), request.name, by=by))
            return acl_pb2.RevokeTokenResponse()

        return await self.writes.write(context, request, acl_pb2_grpc.AclStub, "RevokeToken", local)

    async def SetQuota(self, request, context):
        q = request.quota
        err = acl.name_error("quota.namespace", q.namespace)
        if err:
            await context.abort(INVALID, err)
        for name in ("max_cpu_millis", "max_memory_mib", "max_pending"):
            if not 0 <= getattr(q, name) < 1 << 40:
                await context.abort(INVALID, f"quota.{name} must be between 0 (unlimited) and 2^40")
        by = auth.principal().name

        async def local(rid: str) -> acl_pb2.Quota:
            cmd = SetQuota(rid, time.time(), q.namespace, q.max_cpu_millis, q.max_memory_mib,
                           q.max_pending, by=by)
            await self.writes.propose(context, cmd)
            return q

        return await self.writes.write(context, request, acl_pb2_grpc.AclStub, "SetQuota", local)

    async def ListQuotas(self, request, context):
        with self.replica.lock:
            quotas = sorted(self.acl.quotas.items())
        return acl_pb2.ListQuotasResponse(
            quotas=[quota_pb(ns, q) for ns, q in quotas if auth.visible(ns)])

    async def WhoAmI(self, request, context):
        return token_pb(auth.principal())

    async def SetNamespacePolicy(self, request, context):
        p = request.policy
        err = acl.name_error("policy.namespace", p.namespace) or runas.users_error(p.run_as,
                                                                                   "policy.run_as")
        if err:
            await context.abort(INVALID, err)
        users = tuple(sorted(set(p.run_as)))
        by = auth.principal().name

        async def local(rid: str) -> acl_pb2.NamespacePolicy:
            await self.writes.propose(context, runas.SetRunAs(rid, time.time(), p.namespace, users,
                                                              by=by))
            return acl_pb2.NamespacePolicy(namespace=p.namespace, run_as=list(users))

        return await self.writes.write(context, request, acl_pb2_grpc.AclStub, "SetNamespacePolicy",
                                       local)

    async def ListNamespacePolicies(self, request, context):
        with self.replica.lock:
            table = sorted(runas.runas_of(self.replica.state).allowed.items())
        return acl_pb2.ListNamespacePoliciesResponse(policies=[
            acl_pb2.NamespacePolicy(namespace=ns, run_as=list(users))
            for ns, users in table if auth.visible(ns)])
