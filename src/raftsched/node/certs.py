"""Certificates for a cluster (`raftsched tls init`, and a local cluster's first start).

One CA per cluster; per node a certificate whose common name is `node:<id>` (the
node identity NodeAgent checks) with the node's gRPC host as subject alternative
name; one client certificate (common name `client:<name>`, no node identity). All
under `<data_dir>/tls/`: `ca.pem`, `ca-key.pem`, `<node>.pem`, `<node>-key.pem`,
`client.pem`, `client-key.pem`. Private keys are written 0600, the directory 0700.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from raftsched.config import ClusterConfig, host_of
from raftsched.rpc.identity import NODE_PREFIX
from raftsched.rpc.identity import node_tls_files as node_files

__all__ = ["ensure_local", "init", "make_private", "node_files", "private_dir", "write_private"]
CLIENT_PREFIX = "client:"
VALID_DAYS = 3650


def tls_dir(cfg: ClusterConfig) -> Path:
    return cfg.data_dir / "tls"


def client_files(cfg: ClusterConfig, name: str = "client") -> tuple[Path, Path, Path]:
    d = tls_dir(cfg)
    return d / "ca.pem", d / f"{name}.pem", d / f"{name}-key.pem"


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (0600), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def make_private(root: Path) -> None:
    """Directories 0700 and files 0600 under `root` (data written by an older version)."""
    private_dir(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "scratch"]  # the jobs' own files: theirs
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):  # chmod would follow it out of the data dir
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(path, 0o700 if name in dirnames else 0o600)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _san(hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h.strip("[]"))))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


def _issue(ca_key: ec.EllipticCurvePrivateKey, ca_name: x509.Name, cn: str, hosts: list[str],
           usages: list[x509.ObjectIdentifier]) -> tuple[bytes, bytes]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
         .issuer_name(ca_name)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
    if hosts:
        b = b.add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def _load_or_make_ca(d: Path, cluster: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Name]:
    ca_pem, ca_key_pem = d / "ca.pem", d / "ca-key.pem"
    if ca_pem.exists() and ca_key_pem.exists():
        key = serialization.load_pem_private_key(ca_key_pem.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key, x509.load_pem_x509_certificate(ca_pem.read_bytes()).subject
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"raftsched CA {cluster}")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    write_private(ca_key_pem, _pem_key(key))
    write_private(ca_pem, cert.public_bytes(serialization.Encoding.PEM))
    return key, name


def init(cfg: ClusterConfig, *, clients: tuple[str, ...] = ("client",), force: bool = False) -> list[Path]:
    """Create the CA (unless present) and every missing node and client certificate.
    `force` re-issues node and client certificates (the CA is kept). Returns new files."""
    d = private_dir(tls_dir(cfg))
    ca_key, ca_name = _load_or_make_ca(d, cfg.name)
    made: list[Path] = []
    for n in cfg.nodes:
        made += _node_cert(cfg, ca_key, ca_name, n.id, [host_of(n.grpc)], force)
    for name in clients:
        _, cert, key = client_files(cfg, name)
        if force or not (cert.exists() and key.exists()):
            pem, kpem = _issue(ca_key, ca_name, CLIENT_PREFIX + name, [],
                               [ExtendedKeyUsageOID.CLIENT_AUTH])
            write_private(key, kpem)
            write_private(cert, pem)
            made += [cert, key]
    return made


def _node_cert(cfg: ClusterConfig, ca_key: ec.EllipticCurvePrivateKey, ca_name: x509.Name,
               node_id: str, hosts: list[str], force: bool) -> list[Path]:
    _, cert, key = node_files(cfg, node_id)
    if not force and cert.exists() and key.exists():
        return []
    server = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    pem, kpem = _issue(ca_key, ca_name, NODE_PREFIX + node_id, [*hosts, "127.0.0.1", "localhost"],
                       server)
    write_private(key, kpem)
    write_private(cert, pem)
    return [cert, key]


def issue_node(cfg: ClusterConfig, node_id: str, hosts: list[str], force: bool = False) -> list[Path]:
    """A certificate for a node that is not in the config (one to add with `raftsched
    operator members add`), from the cluster's CA (which must exist: `tls init` first)."""
    d = tls_dir(cfg)
    if not ((d / "ca.pem").exists() and (d / "ca-key.pem").exists()):
        raise FileNotFoundError(f"{d}/ca.pem and ca-key.pem: run `raftsched tls init` first (the "
                                "new node's certificate must come from the cluster's CA)")
    ca_key, ca_name = _load_or_make_ca(private_dir(d), cfg.name)
    return _node_cert(cfg, ca_key, ca_name, node_id, hosts, force)


@contextlib.contextmanager
def _locked(d: Path) -> Iterator[None]:
    fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_local(cfg: ClusterConfig) -> list[Path]:
    """First start of a local cluster: generate what is missing, under a lock so that
    nodes started together agree on one CA. Refused for a cluster on other machines,
    whose nodes would each make their own CA: run `raftsched tls init` and copy."""
    if not cfg.tls:
        return []
    if not cfg.all_loopback():
        return []
    d = private_dir(tls_dir(cfg))
    with _locked(d):
        return init(cfg)


def common_name(pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(pem)
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""
