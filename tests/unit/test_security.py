"""Cluster tokens: format, key derivation, the owner-only token file, lookup order."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from zray.common import security
from zray.common.errors import ConfigError
from zray.common.sockets import bind, connect


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("ZRAY_SESSION_ROOT", str(tmp_path))
    monkeypatch.delenv(security.TOKEN_ENV, raising=False)
    monkeypatch.delenv(security.INSECURE_ENV, raising=False)
    security.use_token(None)
    yield
    security.use_token(None)


def test_tokens_are_checked_and_keys_derive_from_them() -> None:
    token = security.new_token()
    assert security.check_token(f" {token}\n") == token
    for bad in ("", "short", token + "x", token[:-1] + "!"):
        with pytest.raises(ConfigError, match="not a zray cluster token"):
            security.check_token(bad)
    keys = security.CurveKeys.from_token(token)
    assert keys == security.CurveKeys.from_token(token)
    assert keys.server_public == zmq.curve_public(keys.server_secret)
    assert len({keys.server_public, keys.client_public, keys.server_secret, keys.client_secret}) == 4
    assert security.CurveKeys.from_token(security.new_token()).server_public != keys.server_public


def test_token_file_is_owner_only_and_refused_otherwise() -> None:
    token = security.new_token()
    path = security.write_token_file(token)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert security.read_token_file() == token
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        security.read_token_file()
    security.remove_token_file()
    assert security.read_token_file() is None


def test_lookup_order_explicit_then_env_then_file(monkeypatch: pytest.MonkeyPatch) -> None:
    in_file, in_env, explicit = (security.new_token() for _ in range(3))
    assert security.find_token() is None
    security.write_token_file(in_file)
    security.use_token(None)
    assert security.find_token() == (in_file, security.token_file())
    monkeypatch.setenv(security.TOKEN_ENV, in_env)
    security.use_token(None)
    assert security.find_token() == (in_env, security.TOKEN_ENV)
    security.use_token(explicit)
    assert security.find_token() == (explicit, "an explicit token")


def test_tcp_needs_a_token_ipc_does_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    try:
        with pytest.raises(ConfigError, match="connecting to tcp://127.0.0.1:9 needs the cluster token"):
            connect(sock, "tcp://127.0.0.1:9")
        with pytest.raises(ConfigError, match="serving tcp://127.0.0.1:0 needs the cluster token"):
            bind(sock, "tcp://127.0.0.1:0")
        connect(sock, f"ipc://{tmp_path}/plain")
        assert sock.getsockopt(zmq.MECHANISM) == zmq.NULL
        monkeypatch.setenv(security.INSECURE_ENV, "1")
        connect(sock, "tcp://127.0.0.1:9")  # the operator's explicit choice
        assert sock.getsockopt(zmq.MECHANISM) == zmq.NULL
    finally:
        sock.close(0)
        ctx.term()


def test_tcp_sockets_use_curve_with_a_token() -> None:
    security.use_token(security.new_token())
    ctx = zmq.Context()
    server, client = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    try:
        address = bind(server, "tcp://127.0.0.1:0")
        connect(client, address)
        assert server.getsockopt(zmq.CURVE_SERVER) == 1
        assert client.getsockopt(zmq.MECHANISM) == zmq.CURVE
        client.send(b"hello")
        assert server.poll(5000), "a client with the token reaches the server"
        assert server.recv_multipart()[1] == b"hello"
    finally:
        server.close(0)
        client.close(0)
        ctx.term()
