"""What is unsafe about a node reachable from other machines (checked at node start:
a node on a non-loopback address needs TLS, ACLs and a strong Raft secret)."""

from __future__ import annotations

from raftsched.config import DEMO_SECRET, ClusterConfig, is_loopback

MIN_SECRET_BYTES = 32


def weak_secret(secret: str) -> str:
    """Why a Raft secret is too weak for a node reachable from other machines ("" if fine)."""
    if secret == DEMO_SECRET:
        return "it is the public demo secret"
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return f"it is shorter than {MIN_SECRET_BYTES} bytes"
    if len(set(secret)) < 10:
        return "it has fewer than 10 distinct characters"
    return ""


def exposure_problems(cfg: ClusterConfig, node_id: str) -> list[str]:
    """What is unsafe about running `node_id` of `cfg` where other machines reach it:
    empty on loopback, or with TLS, ACLs and a strong Raft secret."""
    me = cfg.node(node_id)
    exposed = [a for a in (me.raft, me.grpc, me.control, me.metrics) if a and not is_loopback(a)]
    if not exposed:
        return []
    problems = []
    if not cfg.tls:
        problems.append("tls = false: anyone on the network could call the API and the node-to-node service")
    if not cfg.acl:
        problems.append("acl = false: any client could run any command as this node's user")
    why = weak_secret(cfg.secret)
    if why:
        problems.append(f"the Raft secret is weak ({why}); use >= 32 random bytes, e.g. "
                        "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`")
    return [f"node {node_id} listens on {', '.join(exposed)} (not loopback) and {p}" for p in problems]
