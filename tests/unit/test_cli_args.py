"""The CLI's argument handling: global flags anywhere, usage errors exit 2, no node
answering exits 5 at once (subprocesses of the real entry point, no cluster needed)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from raftsched.cli.main import build_parser

pytestmark = pytest.mark.timeout(60)


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize("argv", [
    ["--config", "x.toml", "--node", "h:1", "--timeout", "3", "--json", "--token", "t",
     "--ca", "ca.pem", "--cert", "c.pem", "--key", "k.pem", "list"],
    ["list", "--config", "x.toml", "--node", "h:1", "--timeout", "3", "--json", "--token", "t",
     "--ca", "ca.pem", "--cert", "c.pem", "--key", "k.pem"],
])
def test_global_flags_before_or_after_the_command(argv: list[str]) -> None:
    a = parse(*argv)
    assert (a.config, a.node, a.rpc_timeout, a.json, a.token, a.ca, a.cert, a.key) == \
        ("x.toml", ["h:1"], 3.0, True, "t", "ca.pem", "c.pem", "k.pem")


def test_global_flags_in_nested_and_server_commands() -> None:
    a = parse("node", "--config", "cluster.toml", "--id", "n1")
    assert (a.config, a.id) == ("cluster.toml", "n1")
    a = parse("dlq", "list", "--node", "h:2", "--json")
    assert (a.node, a.json) == (["h:2"], True)
    a = parse("acl", "token", "list", "--token", "abc")
    assert a.token == "abc"
    # given after the command, a global flag overrides the one before it
    a = parse("--config", "a.toml", "status", "J", "--config", "b.toml")
    assert a.config == "b.toml"
    # absent after the command, the value before it (or the default) stays
    a = parse("--timeout", "7", "status", "J")
    assert a.rpc_timeout == 7.0
    assert parse("status", "J").rpc_timeout == 20.0


def test_a_command_flag_of_the_same_name_wins_after_the_command() -> None:
    a = parse("--timeout", "5", "submit", "--timeout", "60", "--", "sleep", "1")
    assert a.rpc_timeout == 5.0  # the call's deadline
    assert a.timeout == 60.0     # the job's timeout
    assert a.command == ["--", "sleep", "1"]


def run(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "raftsched", *argv], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("argv,fragment", [
    (["submit", "--count", "2", "--idempotency-key", "k", "--", "true"], "--idempotency-key"),
    (["submit"], "no command given"),
    (["submit", "--"], "no command given"),
    (["submit", "--count", "0", "--", "true"], "--count"),
    (["submit", "--env", "NOEQUALS", "--", "true"], "--env"),
    (["submit", "--constraint", "=x", "--", "true"], "--constraint"),
    (["plan", "--cpu", "100"], "no command given"),
    (["list", "--bogus"], "unrecognized"),
])
def test_usage_errors_exit_2(argv: list[str], fragment: str) -> None:
    # an address nothing listens on: a usage error must be found before any call
    r = run("--node", "127.0.0.1:1", *argv)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert fragment in r.stderr
    assert "Traceback" not in r.stderr


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_no_node_answering_exits_5_at_once() -> None:
    addrs = [f"127.0.0.1:{_closed_port()}" for _ in range(3)]
    t0 = time.monotonic()
    r = run(*[x for a in addrs for x in ("--node", a)], "--timeout", "25", "leader", timeout=60)
    elapsed = time.monotonic() - t0
    assert r.returncode == 5, (r.returncode, r.stderr)
    assert "no node answered" in r.stderr and "Connection refused" in r.stderr
    for a in addrs:
        assert a in r.stderr
    # not the --timeout of 25 s: every node refused, so nothing is worth waiting for
    assert elapsed < 25, elapsed


def test_help_documents_exit_codes() -> None:
    for argv in (["--help"], ["submit", "--help"], ["list", "--help"], ["watch", "--help"]):
        r = run(*argv)
        assert r.returncode == 0
        assert "exit codes:" in r.stdout and "5  cluster unavailable" in r.stdout, argv


def test_new_tokens_never_start_with_a_dash(monkeypatch) -> None:
    """`--token -x...` would be read as an option: such a draw is thrown away."""
    import secrets

    from raftsched.client.credentials import new_secret

    draws = iter(["-starts-with-a-dash", "fine-token"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n: next(draws))
    assert new_secret() == "fine-token"
