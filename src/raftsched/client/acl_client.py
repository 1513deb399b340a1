"""Synchronous client of the Acl service (tokens, quotas), against any node."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from raftsched.client.client import NodesClient
from raftsched.client.credentials import new_secret
from raftsched.v1 import acl_pb2, acl_pb2_grpc


class AclClient(NodesClient):
    def call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        if hasattr(request, "request_id") and not request.request_id:
            request.request_id = uuid.uuid4().hex
        return self._invoke(acl_pb2_grpc.AclStub, method, request, timeout)

    def bootstrap(self, secret: str | None = None) -> tuple[str, acl_pb2.TokenInfo]:
        """Register the first management token; returns (secret, info)."""
        secret = secret or new_secret()
        return secret, self.call("Bootstrap", acl_pb2.BootstrapRequest(secret=secret))

    def create_token(self, name: str, role: str, namespaces: Sequence[str],
                     secret: str | None = None) -> tuple[str, acl_pb2.TokenInfo]:
        secret = secret or new_secret()
        req = acl_pb2.CreateTokenRequest(name=name, role=role, namespaces=list(namespaces),
                                         secret=secret)
        return secret, self.call("CreateToken", req)

    def tokens(self) -> list[acl_pb2.TokenInfo]:
        return list(self.call("ListTokens", acl_pb2.ListTokensRequest()).tokens)

    def revoke(self, name: str) -> None:
        self.call("RevokeToken", acl_pb2.RevokeTokenRequest(name=name))

    def set_quota(self, namespace: str, max_cpu_millis: int = 0, max_memory_mib: int = 0,
                  max_pending: int = 0) -> acl_pb2.Quota:
        q = acl_pb2.Quota(namespace=namespace, max_cpu_millis=max_cpu_millis,
                          max_memory_mib=max_memory_mib, max_pending=max_pending)
        return self.call("SetQuota", acl_pb2.SetQuotaRequest(quota=q))

    def quotas(self) -> list[acl_pb2.Quota]:
        return list(self.call("ListQuotas", acl_pb2.ListQuotasRequest()).quotas)

    def set_namespace_policy(self, namespace: str, run_as: Sequence[str]) -> acl_pb2.NamespacePolicy:
        """The users `namespace`'s jobs may run as (replaces the list; empty: none)."""
        p = acl_pb2.NamespacePolicy(namespace=namespace, run_as=list(run_as))
        return self.call("SetNamespacePolicy", acl_pb2.SetNamespacePolicyRequest(policy=p))

    def namespace_policies(self) -> list[acl_pb2.NamespacePolicy]:
        return list(self.call("ListNamespacePolicies", acl_pb2.ListNamespacePoliciesRequest()).policies)

    def whoami(self) -> acl_pb2.TokenInfo:
        return self.call("WhoAmI", acl_pb2.WhoAmIRequest())
