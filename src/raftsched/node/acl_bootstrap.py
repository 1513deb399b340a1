"""ACLs on by default for a local cluster: the first management token.

On the first start of a cluster whose nodes all listen on loopback (`cluster up`,
the demo, tests, one node per terminal), a random token is written to
`<data_dir>/acl/bootstrap.token` (0600 in a 0700 directory; the first writer
wins, atomically), and whichever node leads proposes its hash as the bootstrap
token. The CLI finds the file through the config. A cluster on other addresses
is bootstrapped explicitly with `raftsched acl bootstrap`, or from a token file
an operator put at that path before the first start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import structlog

from raftsched.client.credentials import bootstrap_token_path, new_secret, read_token
from raftsched.config import ClusterConfig
from raftsched.core import acl
from raftsched.core.commands import AclBootstrap
from raftsched.ports import Propose, RaftStatus, ReplicaView
from raftsched.replica.proposer import NotLeader, OutcomeUnknown

log = structlog.get_logger("raftsched.node.acl_bootstrap")


def ensure_local_token(data_dir: Path) -> Path:
    """The bootstrap token file of a local cluster, created if missing."""
    path = bootstrap_token_path(data_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if path.exists():
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new_secret() + "\n")
    try:
        os.link(tmp, path)  # fails if another process won: its token stays
    except FileExistsError:
        pass
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return path


def bootstrap_file(cfg: ClusterConfig) -> Path | None:
    """The token file this node bootstraps ACLs from: made for a local cluster; on other
    addresses only if an operator (or a test harness) placed one in the data dir."""
    if not cfg.acl:
        return None
    if cfg.is_local():
        return ensure_local_token(cfg.data_dir)
    path = bootstrap_token_path(cfg.data_dir)
    return path if path.exists() else None


async def bootstrap_from_file(path: Path, replica: ReplicaView, raft: RaftStatus,
                              proposer: Propose, interval: float = 0.2) -> None:
    """Until the state is bootstrapped: when this node leads, propose the file's token."""
    secret = read_token(path)
    if secret is None:
        return
    h = acl.hash_secret(secret)
    while not acl.acl_of(replica.state).bootstrapped:
        if raft.is_leader():
            try:
                res = await proposer.propose(
                    AclBootstrap(f"acl-bootstrap-{h[:16]}", time.time(), acl.BOOTSTRAP_NAME, h))
                log.info("acl bootstrapped from file", path=str(path), ok=res.ok)
            except (NotLeader, OutcomeUnknown):
                pass
        await asyncio.sleep(interval)
