"""Authentication and authorization of client calls: one server interceptor.

Every call of a public service carries `authorization: Bearer <token>`. The
interceptor looks the token's hash up in this node's replica (a revoked token
is gone from the state at the entry that revoked it), checks the role against
`METHODS` (one table: method -> permission), bounds the request's fields
(`limits`), and hands the token to the servicer in a context variable: the
servicers check namespaces with `require_ns` / `visible`. NodeAgent calls are
node-to-node (authenticated by the node's certificate, not by a token); health
and reflection are open.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from raftsched.core import acl
from raftsched.core.acl import ALL_NAMESPACES, Perm, Role, Token

__all__ = ["ALL_NAMESPACES", "METHODS", "AuthInterceptor", "principal", "require_ns", "visible"]
from raftsched.ports import ReplicaView
from raftsched.rpc import bounds

AUTHORIZATION = "authorization"
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/", "/raftsched.v1.NodeAgent/")

_S, _E, _W, _A = "/raftsched.v1.Scheduler/", "/raftsched.v1.Events/", "/raftsched.v1.Workflows/", \
    "/raftsched.v1.Acl/"
# Every public method and the permission it needs (None: no token needed).
METHODS: dict[str, Perm | None] = {
    _S + "SubmitJob": Perm.SUBMIT, _S + "SubmitJobs": Perm.SUBMIT, _S + "GetJob": Perm.READ,
    _S + "ListJobs": Perm.READ, _S + "CancelJob": Perm.SUBMIT, _S + "RetryDeadJob": Perm.OPERATE,
    _S + "PurgeDeadJobs": Perm.ADMIN, _S + "ExplainJob": Perm.READ, _S + "PlanJob": Perm.READ,
    "/raftsched.v1.Cluster/ListNodes": Perm.READ, "/raftsched.v1.Cluster/ClusterStatus": Perm.READ,
    "/raftsched.v1.Cluster/SaveSnapshot": Perm.ADMIN,
    # membership (issue 15): admin only
    "/raftsched.v1.Cluster/ListMembers": Perm.ADMIN, "/raftsched.v1.Cluster/AddMember": Perm.ADMIN,
    "/raftsched.v1.Cluster/RemoveMember": Perm.ADMIN,
    # node operations: operator, and the servicer asks for a token of every namespace ('*')
    "/raftsched.v1.Cluster/DrainNode": Perm.OPERATE, "/raftsched.v1.Cluster/SetNodeEligibility": Perm.OPERATE,
    # runtime changes (issue 15): admin
    "/raftsched.v1.Cluster/UpdateNode": Perm.ADMIN, "/raftsched.v1.Cluster/SetClusterConfig": Perm.ADMIN,
    "/raftsched.v1.Cluster/GetClusterConfig": Perm.READ,
    _E + "WatchJobs": Perm.READ, _E + "WatchCluster": Perm.READ, _E + "GetJobOutput": Perm.READ,
    _E + "FollowJobOutput": Perm.READ,
    _W + "CreateTemplate": Perm.SUBMIT, _W + "UpdateTemplate": Perm.SUBMIT,
    _W + "GetTemplate": Perm.READ, _W + "ListTemplates": Perm.READ,
    _W + "DeleteTemplate": Perm.SUBMIT, _W + "SubmitFromTemplate": Perm.SUBMIT,
    _W + "AddSchedule": Perm.SUBMIT, _W + "ListSchedules": Perm.READ, _W + "GetSchedule": Perm.READ,
    _W + "PauseSchedule": Perm.OPERATE, _W + "ResumeSchedule": Perm.OPERATE,
    _W + "DeleteSchedule": Perm.SUBMIT, _W + "RunScheduleNow": Perm.OPERATE,
    _W + "NextFireTimes": Perm.READ, _W + "SubmitWorkflow": Perm.SUBMIT,
    _W + "GetWorkflow": Perm.READ, _W + "CancelWorkflow": Perm.SUBMIT,
    _A + "Bootstrap": None, _A + "CreateToken": Perm.ADMIN, _A + "ListTokens": Perm.ADMIN,
    _A + "RevokeToken": Perm.ADMIN, _A + "SetQuota": Perm.ADMIN, _A + "ListQuotas": Perm.READ,
    _A + "WhoAmI": Perm.READ, _A + "SetNamespacePolicy": Perm.ADMIN,
    _A + "ListNamespacePolicies": Perm.READ,
}

# With ACLs off (config `acl = false`) every caller acts as this token.
ANONYMOUS_ADMIN = Token("", "", Role.ADMIN, (ALL_NAMESPACES,))

_principal: contextvars.ContextVar[Token] = contextvars.ContextVar("raftsched_principal",
                                                                   default=ANONYMOUS_ADMIN)


def principal() -> Token:
    """The token of the call being served (set by the interceptor)."""
    return _principal.get()


def visible(namespace: str) -> bool:
    return principal().sees(namespace)


async def require_ns(context: grpc.aio.ServicerContext, namespace: str, what: str = "") -> None:
    """Abort with PERMISSION_DENIED unless the caller's token covers `namespace`."""
    t = principal()
    if not t.sees(namespace):
        thing = f"{what} is in namespace" if what else "namespace"
        await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                            f"{thing} {namespace!r}; token {t.name!r} may use only "
                            f"{', '.join(t.namespaces)}")


def bearer(metadata: Any) -> str | None:
    for k, v in metadata or ():
        if k == AUTHORIZATION and isinstance(v, str):
            return v[7:].strip() if v[:7].lower() == "bearer " else ""
    return None


def passthrough(context: grpc.aio.ServicerContext) -> tuple[tuple[str, str], ...]:
    """The caller's authorization metadata, for a call this node makes on its behalf
    (a forwarded write, output from the node that ran a job): the next node checks it again."""
    for k, v in context.invocation_metadata() or ():
        if k == AUTHORIZATION:
            return ((AUTHORIZATION, v),)
    return ()


class BadRequest:
    """What the request deserializer returns for bytes that are not a valid message."""

    def __init__(self, error: str) -> None:
        self.error = error


def _deserializer(fn: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if fn is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return fn(data)
        except Exception as e:  # invalid UTF-8, truncated fields: never an UNKNOWN status
            return BadRequest(f"request is not a valid message: {str(e)[:200] or type(e).__name__}")

    return parse


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, replica: ReplicaView, enabled: bool = True,
                 caught_up: Callable[[], bool] | None = None) -> None:
        self.replica = replica
        self.enabled = enabled
        # A node that restarted answers before its replica has applied the log: a token
        # it does not know yet may exist. Then the caller should retry (elsewhere).
        self.caught_up = caught_up or (lambda: True)

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        return _wrap(handler, method, self._check)

    async def _check(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        """Authenticate, authorize, bound: abort the call or set the principal."""
        if method not in METHODS:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{method} is not callable")
        need = METHODS[method]
        token = ANONYMOUS_ADMIN
        if self.enabled and need is not None:
            secret = bearer(context.invocation_metadata())
            if not secret:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                    "no token: send the metadata 'authorization: Bearer <token>' "
                                    "(raftsched --token or RAFTSCHED_TOKEN)")
            with self.replica.lock:
                found = acl.lookup(self.replica.state, secret or "")
            if found is None:
                if not self.caught_up():
                    await context.abort(grpc.StatusCode.UNAVAILABLE,
                                        "this node is still catching up with the log; retry")
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown or revoked token")
            assert found is not None
            if not found.may(need):
                await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                    f"token {found.name!r} (role {found.role.value}) may not call "
                                    f"{method.rsplit('/', 1)[-1]}: it needs the {need.value} permission")
            token = found
        if isinstance(request, BadRequest):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.error)
        err = bounds.check(request)
        if err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, err)
        _principal.set(token)


Check = Callable[[str, Any, grpc.aio.ServicerContext], Awaitable[None]]


def _wrap(h: Any, method: str, check: Check) -> Any:
    des, ser = _deserializer(h.request_deserializer), h.response_serializer
    if h.unary_unary is not None:
        inner = h.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await check(method, request, context)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(unary, des, ser)
    if h.unary_stream is not None:
        inner_s = h.unary_stream

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await check(method, request, context)
            async for item in inner_s(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(stream, des, ser)
    return h  # client-streaming methods: none in the public API
