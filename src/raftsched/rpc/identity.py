"""Who is calling: mutual TLS on every listener, and node identity from the peer certificate.

A node's certificate has the common name `node:<id>`; a client certificate has
none of that form, so it can never pass as a node. The id must also be a current
member in the replicated member list (core/members.py): a removed node's certificate
no longer opens node-to-node calls. With `tls = false` (only
allowed on loopback, or with `insecure_i_know`) there is no identity at all and
node-to-node calls are accepted from anyone who can reach the port.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc

from raftsched.client.credentials import ClientTLS
from raftsched.config import ClusterConfig

NODE_PREFIX = "node:"
NOT_MEMBER = "is not a member of this cluster"  # in the refusal of a removed node's call


def node_tls_files(cfg: ClusterConfig, node_id: str) -> tuple[Path, Path, Path]:
    d = cfg.data_dir / "tls"
    return d / "ca.pem", d / f"{node_id}.pem", d / f"{node_id}-key.pem"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RuntimeError(
            f"TLS is on but {path} is missing: run `raftsched --config CONFIG tls init` and copy "
            "ca.pem, <node>.pem and <node>-key.pem to every node (a local cluster makes them itself)"
        ) from None


def server_credentials(cfg: ClusterConfig, node_id: str) -> grpc.ServerCredentials:
    """Mutual TLS: every caller (node or client) presents a certificate of the cluster CA."""
    ca, cert, key = node_tls_files(cfg, node_id)
    return grpc.ssl_server_credentials([(_read(key), _read(cert))], root_certificates=_read(ca),
                                       require_client_auth=True)


def node_client_tls(cfg: ClusterConfig, node_id: str) -> ClientTLS | None:
    """What this node presents when it calls its peers."""
    if not cfg.tls:
        return None
    ca, cert, key = node_tls_files(cfg, node_id)
    return ClientTLS(ca, cert, key)


def peer_node_id(context: grpc.aio.ServicerContext) -> str | None:
    """The node id in the caller's verified certificate, or None (client cert, no TLS)."""
    try:
        auth = context.auth_context() or {}
    except Exception:  # pragma: no cover - no auth context on this transport
        return None
    for cn in auth.get("x509_common_name", ()):
        name = cn.decode(errors="replace") if isinstance(cn, bytes) else str(cn)
        if name.startswith(NODE_PREFIX) and len(name) > len(NODE_PREFIX):
            return name[len(NODE_PREFIX):]
    return None


class NodeIdentity:
    """The check every node-to-node call makes before it reads its request."""

    def __init__(self, tls: bool, members: Callable[[], set[str]] | None = None) -> None:
        self.tls = tls
        self.members = members  # ids of the current members (the replicated list)

    def problem(self, context: grpc.ServicerContext | grpc.aio.ServicerContext,
                claimed: str | None = None) -> str | None:
        """Why the caller may not make this node-to-node call (None: it may).
        The message names no internal counter: the caller is not trusted yet."""
        if not self.tls:
            return None
        who = peer_node_id(context)
        if who is None:
            return "node-to-node calls need a node certificate of this cluster"
        if claimed is not None and who != claimed:
            return f"the caller's certificate is node {who}, not {claimed!r}"
        if self.members is not None and who not in self.members():
            return (f"node {who} {NOT_MEMBER} (as this node's replica has it): add it with "
                    "`raftsched operator members add`")
        return None

    @classmethod
    def of(cls, cfg: ClusterConfig) -> NodeIdentity:
        """Certificates of the members in `cfg.nodes` (the replicated list, node/members.py)."""
        return cls(cfg.tls, lambda: {n.id for n in cfg.nodes})

    async def require(self, context: grpc.aio.ServicerContext, claimed: str | None = None) -> str | None:
        """Abort unless the caller holds a node certificate (naming `claimed` if given) of a
        current member."""
        why = self.problem(context, claimed)
        if why:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, why)
        return peer_node_id(context) if self.tls else claimed
