"""Client credentials: where they are found, and channels that carry them.

A token is sent on every call as the metadata `authorization: Bearer <token>`.
For a local cluster (`cluster up`, the demo, the first start of a node on
loopback) the first management token is written to `<data_dir>/acl/bootstrap.token`
(mode 0600); the CLI uses it when neither --token nor RAFTSCHED_TOKEN is given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

TOKEN_ENV = "RAFTSCHED_TOKEN"
OPTIONS = [
    ("grpc.max_receive_message_length", 16 << 20),
    ("grpc.max_send_message_length", 16 << 20),  # what a node accepts (rpc/bounds.py)
    # a node cut off by a partition is noticed in ~3 s and the call moves on to the
    # next address instead of waiting for its whole deadline (nodes accept the pings)
    ("grpc.keepalive_time_ms", 1000),
    ("grpc.keepalive_timeout_ms", 2000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_time_between_pings_ms", 1000),
]


def bootstrap_token_path(data_dir: Path) -> Path:
    return data_dir / "acl" / "bootstrap.token"


def read_token(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def discover_token(flag: str | None, data_dir: Path | None) -> str | None:
    """--token, else $RAFTSCHED_TOKEN, else the local cluster's bootstrap token."""
    if flag:
        return flag
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env
    return read_token(bootstrap_token_path(data_dir)) if data_dir is not None else None


def token_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


class _Details(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, d: Any, metadata: Sequence[tuple[str, str]]) -> None:
        self.method = d.method
        self.timeout = d.timeout
        self.metadata = metadata
        self.credentials = d.credentials
        self.wait_for_ready = getattr(d, "wait_for_ready", None)
        self.compression = getattr(d, "compression", None)


class _TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self.md = token_metadata(token)

    def _details(self, d: Any) -> _Details:
        return _Details(d, [*(d.metadata or ()), *self.md])

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


def open_token_channel(addr: str, token: str | None, options: Any = None) -> grpc.Channel:
    """A channel to `addr` whose every call carries the token."""
    ch = grpc.insecure_channel(addr, options=options or OPTIONS)
    return grpc.intercept_channel(ch, _TokenInterceptor(token)) if token else ch
