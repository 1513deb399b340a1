"""How a client reaches a node: TLS files, channels, and where the CLI finds them.

Every node listener speaks mutual TLS: a client verifies the node against the
cluster CA and presents its own certificate. `discover` finds the files the
CLI uses: explicit `--ca/--cert/--key`, else `RAFTSCHED_CA/CERT/KEY`, else the
files a local cluster generated under `<data_dir>/tls/` of the config.
"""

from __future__ import annotations

import os
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
