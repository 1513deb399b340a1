"""How a client reaches a node: TLS files, tokens, channels carrying both, and where
the CLI finds them.

Every node listener speaks mutual TLS: a client verifies the node against the
cluster CA and presents its own certificate. `discover` finds the files the
CLI uses: explicit `--ca/--cert/--key`, else `RAFTSCHED_CA/CERT/KEY`, else the
files a local cluster generated under `<data_dir>/tls/` of the config.

A token is sent on every call as the metadata `authorization: Bearer <token>`.
For a local cluster (`cluster up`, the demo, the first start of a node on
loopback) the first management token is written to `<data_dir>/acl/bootstrap.token`
(mode 0600); the CLI uses it when neither --token nor RAFTSCHED_TOKEN is given.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

Options = Sequence[tuple[str, Any]]


@dataclass(frozen=True)
class ClientTLS:
    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        try:
            return grpc.ssl_channel_credentials(
                root_certificates=Path(self.ca).read_bytes(),
                private_key=Path(self.key).read_bytes() if self.key else None,
                certificate_chain=Path(self.cert).read_bytes() if self.cert else None,
            )
        except OSError as e:
            raise ValueError(f"cannot read TLS file: {e}") from None


def open_channel(addr: str, tls: ClientTLS | None, options: Options = ()) -> grpc.Channel:
    """A channel to `addr`: TLS with `tls`, plaintext (refused by a TLS node) without."""
    if tls is None:
        return grpc.insecure_channel(addr, options=list(options))
    return grpc.secure_channel(addr, tls.credentials(), options=list(options))


def open_aio_channel(addr: str, tls: ClientTLS | None, options: Options = ()) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(addr, options=list(options))
    return grpc.aio.secure_channel(addr, tls.credentials(), options=list(options))


def local_files(data_dir: Path) -> ClientTLS | None:
    """The client certificate a local cluster generated into its data dir, if present."""
    d = Path(data_dir) / "tls"
    ca, cert, key = d / "ca.pem", d / "client.pem", d / "client-key.pem"
    if ca.exists() and cert.exists() and key.exists():
        return ClientTLS(ca, cert, key)
    return None


def discover(ca: str | None = None, cert: str | None = None, key: str | None = None,
             data_dir: Path | None = None, tls_enabled: bool = True) -> ClientTLS | None:
    """Flags, then environment, then the config's data dir. None: plaintext."""
    ca = ca or os.environ.get("RAFTSCHED_CA")
    cert = cert or os.environ.get("RAFTSCHED_CERT")
    key = key or os.environ.get("RAFTSCHED_KEY")
    if ca or cert or key:
        if not ca:
            raise ValueError("--cert/--key need --ca (the cluster CA certificate)")
        if bool(cert) != bool(key):
            raise ValueError("--cert and --key go together")
        return ClientTLS(Path(ca), Path(cert) if cert else None, Path(key) if key else None)
    if data_dir is not None and tls_enabled:
        return local_files(data_dir)
    return None

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


def open_token_channel(addr: str, token: str | None, options: Any = None,
                       tls: ClientTLS | None = None) -> grpc.Channel:
    """A channel to `addr` (TLS with `tls`) whose every call carries the token."""
    ch = open_channel(addr, tls, options or OPTIONS)
    return grpc.intercept_channel(ch, _TokenInterceptor(token)) if token else ch


def new_secret() -> str:
    """A fresh token: 32 random bytes, URL-safe base64, never starting with "-" (a
    command line would take `--token -x...` for an option: 1 token in 64 did)."""
    while True:
        token = secrets.token_urlsafe(32)
        if not token.startswith("-"):
            return token

