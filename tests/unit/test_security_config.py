"""Loopback and secret checks, certificates, job environment, Raft transport limits."""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
import zlib
from pathlib import Path

import pytest

from raftsched import config as configmod
from raftsched.client.credentials import ClientTLS, discover
from raftsched.core.names import is_safe_path_component
from raftsched.node import certs, exposure, jobenv
from raftsched.node.runtime import prepare
from raftsched.replica import rafttransport as rt

STRONG = "Zq3v9XkP2mWb7Rt4Yc8Ld1Nf6Hs0Gj5Ua"  # 34 bytes, many distinct characters


def cfg_for(tmp: Path, host: str = "127.0.0.1", secret: str = STRONG, extra: str = "") -> configmod.ClusterConfig:
    text = f"""
[cluster]
secret = "{secret}"
data_dir = "{tmp}/data"
{extra}
[[nodes]]
id = "n1"
raft = "{host}:7101"
grpc = "{host}:7201"
cpu_millis = 1000
memory_mib = 100
"""
    p = tmp / "c.toml"
    p.write_text(text)
    return configmod.load(p)


def test_loopback_is_decided_on_addresses_not_text() -> None:
    assert configmod.is_loopback("127.0.0.1:1") and configmod.is_loopback("[::1]:1")
    assert configmod.is_loopback("localhost:1")
    assert not configmod.is_loopback("127.evil.example:1")  # a name, resolved (fails): not loopback
    assert not configmod.is_loopback("0.0.0.0:1") and not configmod.is_loopback("10.1.2.3:1")


def test_exposed_node_needs_tls_acl_and_a_strong_secret(tmp_path: Path) -> None:
    assert exposure.exposure_problems(cfg_for(tmp_path, secret="x", extra="tls = false"), "n1") == []
    weak = cfg_for(tmp_path, host="0.0.0.0", secret="x")
    probs = exposure.exposure_problems(weak, "n1")
    assert len(probs) == 1 and "shorter than 32 bytes" in probs[0]
    with pytest.raises(configmod.ConfigError, match="insecure_i_know"):
        prepare(weak, "n1")
    off = cfg_for(tmp_path, host="0.0.0.0", extra="tls = false\nacl = false")
    assert [p for p in exposure.exposure_problems(off, "n1") if "tls = false" in p or "acl = false" in p]
    assert exposure.exposure_problems(cfg_for(tmp_path, host="0.0.0.0"), "n1") == []
    assert exposure.weak_secret("a" * 40)  # long but not random
    with pytest.raises(configmod.ConfigError, match="tls must be true or false"):
        cfg_for(tmp_path, extra='tls = "no"')
    with pytest.raises(configmod.ConfigError, match="demo secret"):
        cfg_for(tmp_path, host="10.0.0.1", secret=configmod.DEMO_SECRET)


def test_insecure_i_know_lets_an_exposed_node_start_with_a_warning(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path, host="0.0.0.0", secret="short", extra="insecure_i_know = true")
    old = os.umask(0o022)
    try:
        prepare(cfg, "n1")  # no exception
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(cfg.data_dir).st_mode) == 0o700


def test_tls_init_makes_private_files_with_node_identities(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path)
    made = certs.init(cfg)
    d = cfg.data_dir / "tls"
    assert {p.name for p in made} == {"n1.pem", "n1-key.pem", "client.pem", "client-key.pem"}
    assert certs.common_name((d / "n1.pem").read_bytes()) == "node:n1"
    assert not certs.common_name((d / "client.pem").read_bytes()).startswith("node:")
    for p in d.glob("*.pem"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert certs.init(cfg) == []  # idempotent; the CA is kept
    assert discover(data_dir=cfg.data_dir) == ClientTLS(d / "ca.pem", d / "client.pem", d / "client-key.pem")
    with pytest.raises(ValueError, match="go together"):
        discover(ca="a", cert="b")


def test_job_env_is_the_spec_plus_the_documented_base(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RAFTSCHED_SECRET", "nope")
    env = jobenv.job_env({"A": "1", "RAFTSCHED_JOB_ID": "spoof", "PATH": "/opt/bin"}, "j1", 2, 7, "n1",
                         tmp_path)
    assert env == {"PATH": "/opt/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", "TMPDIR": str(tmp_path),
                   "A": "1", "RAFTSCHED_JOB_ID": "j1", "RAFTSCHED_ATTEMPT": "2",
                   "RAFTSCHED_FENCING_TOKEN": "7", "RAFTSCHED_NODE_ID": "n1"}


def test_job_ids_reaching_paths_are_checked_and_scratch_is_swept(tmp_path: Path) -> None:
    for bad in ("../../../x", "..", ".", "a/b", "", "-rf", "a\x00b", "x" * 300):
        assert not is_safe_path_component(bad), bad
    assert is_safe_path_component("5617327160340000") and is_safe_path_component("nightly-1700000000")
    assert is_safe_path_component("wf-1a2b-build..x")  # a workflow job name may hold dots
    assert not is_safe_path_component("abc\n")
    s = jobenv.Scratch(tmp_path, retention=10.0)
    with pytest.raises(ValueError):
        s.make("../../etc", 1)
    d = s.make("j1", 1)
    assert d.parent == tmp_path / "scratch" and stat.S_IMODE(d.stat().st_mode) == 0o700
    (d / "f").write_text("x")
    assert s.sweep(now=d.stat().st_mtime + 5) == 0 and d.exists()
    assert s.sweep(now=d.stat().st_mtime + 11) == 1 and not d.exists()


class FakePoller:
    def __init__(self) -> None:
        self.subs: dict[int, object] = {}

    def subscribe(self, fd, cb, events) -> None:
        self.subs[fd] = cb

    def unsubscribe(self, fd) -> None:
        self.subs.pop(fd, None)


class Conf:
    sendBufferSize = recvBufferSize = 1 << 16
    connectionTimeout = 60.0
    tcp_keepalive = None


def test_accept_failing_with_emfile_pauses_then_resumes(monkeypatch) -> None:
    poller = FakePoller()
    got = []
    srv = rt.BoundedServer(poller, "127.0.0.1", 0, got.append, Conf())
    srv.bind()
    fd = srv.sock.fileno()
    assert fd in poller.subs

    class Failing:
        def __init__(self, real) -> None:
            self.real = real

        def accept(self):
            raise OSError(errno.EMFILE, "Too many open files")

        def fileno(self):
            return self.real.fileno()

        def close(self):
            self.real.close()

    real = srv.sock
    srv.sock = Failing(real)
    srv._on_event(fd, rt.POLL_EVENT_TYPE.READ)
    assert fd not in poller.subs and srv.paused_until  # paused, not closed
    monkeypatch.setattr(rt, "monotonic", lambda: srv.paused_until + 1)
    srv.sock = real
    srv.on_tick()
    assert fd in poller.subs  # accepting again
    c = socket.create_connection(real.getsockname())
    srv._on_event(fd, rt.POLL_EVENT_TYPE.READ)
    assert len(got) == 1 and isinstance(got[0], rt.BoundedConnection)
    got[0].disconnect()
    c.close()
    srv.unbind()


def test_connection_parses_frames_linearly_and_refuses_oversized_ones() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    conn = rt.BoundedConnection(poller=FakePoller(), socket=a, max_frame=1 << 20)
    msgs = []
    conn.setOnMessageReceivedCallback(msgs.append)
    import pysyncobj.pickle as pk

    frame = zlib.compress(pk.dumps({"x": "y" * 300_000}), 3)
    payload = struct.pack("i", len(frame)) + frame
    for i in range(0, len(payload), 1000):
        b.sendall(payload[i:i + 1000])
        conn._TcpConnection__processConnection(a.fileno(), rt.POLL_EVENT_TYPE.READ)
    assert msgs == [{"x": "y" * 300_000}]
    b.sendall(struct.pack("i", (1 << 20) + 1))
    conn._TcpConnection__processConnection(a.fileno(), rt.POLL_EVENT_TYPE.READ)
    assert conn.fileno() is None  # disconnected before any of the frame arrived
    b.close()


def test_cli_tls_init(tmp_path: Path, capsys) -> None:
    from raftsched.cli.main import main

    cfg = cfg_for(tmp_path)
    assert main(["--config", str(cfg.path), "tls", "init", "--client", "alice"]) == 0
    d = cfg.data_dir / "tls"
    assert {"ca.pem", "ca-key.pem", "n1.pem", "n1-key.pem", "alice.pem", "alice-key.pem"} <= \
        {p.name for p in d.iterdir()}
    assert certs.common_name((d / "alice.pem").read_bytes()) == "client:alice"


def test_fsync_defaults_to_always_and_refuses_unknown_modes(tmp_path: Path) -> None:
    assert cfg_for(tmp_path).fsync == "always"  # acknowledged jobs survive power loss on a majority
    assert cfg_for(tmp_path, extra='fsync = "never"').fsync == "never"
    with pytest.raises(configmod.ConfigError, match="fsync must be one of always, batch, never"):
        cfg_for(tmp_path, extra='fsync = "sometimes"')
