"""A cluster of `zray start --head` refuses whoever lacks its token: raw sockets,
drivers and joining raylets; with the token, everything works and the bytes
on the wire are encrypted.

Parties "without the token" run under their own empty ZRAY_SESSION_ROOT (like
another host: no token file) and with ZRAY_TOKEN empty.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import zmq

from tests.conftest import (
    REPO_ROOT,
    describe,
    poll_for,
    run_driver,
    short_tmpdir,
    zray_processes,
)
from tests.system.test_actors_cli import Head, free_port_pair
from tests.system.test_cli import alive_nodes
from zray.common import security, wire
from zray.common.errors import AuthenticationError
from zray.common.messages.gcs import GcsWrite, WriteOp
from zray.common.messages.tables import KV
from zray.services.gcs.client import GcsClient

pytestmark = pytest.mark.timeout(150)

NO_TOKEN = {"ZRAY_TOKEN": ""}


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    port = free_port_pair()
    h = Head(root=short_tmpdir("zk-"), address=f"127.0.0.1:{port}")
    try:
        started = h.cli("start", "--head", "--port", str(port), "--num-cpus", "2", "--no-dashboard")
        assert started.returncode == 0, f"zray start failed:\n{started.stdout}\n{started.stderr}"
        assert f"--address {h.address} --token {h.token()}" in started.stdout, started.stdout
        yield h
    finally:
        stopped = h.cli("stop")
        try:
            poll_for(lambda: not zray_processes(session_dir=h.root), 15, interval=0.1,
                     what="the cluster's processes to exit after zray stop",
                     on_timeout=lambda: stopped.stdout + stopped.stderr
                     + describe(zray_processes(session_dir=h.root)))
        finally:
            shutil.rmtree(h.root, ignore_errors=True)


@pytest.fixture
def elsewhere() -> Iterator[Head]:
    """Another "host" joining `head`: its own session root, no token."""
    root = short_tmpdir("zj-")
    yield Head(root=root, address="")
    Head(root=root, address="").cli("stop")
    poll_for(lambda: not zray_processes(session_dir=root), 15, interval=0.1,
             what="the joined node's processes to exit", on_timeout=lambda: describe(
                 zray_processes(session_dir=root)))
    shutil.rmtree(root, ignore_errors=True)


def test_token_file_is_readable_by_its_owner_only(head: Head) -> None:
    path = os.path.join(head.root, security.TOKEN_FILE_NAME)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert head.cli("token").stdout.strip() == head.token()


def _raw_write(address: str, key: str, keys: security.CurveKeys | None,
               wait: float) -> list[bytes] | None:
    """A GcsWrite sent by a bare DEALER (CURVE only if `keys`); its reply or None."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.client_public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.client_secret)
    try:
        sock.connect(address)
        sock.send_multipart(wire.encode(GcsWrite(req_id=1, ops=[WriteOp(table=KV, key=key, buf=0)]),
                                        [b"written by " + key.encode()]))
        return sock.recv_multipart() if sock.poll(int(wait * 1000)) else None
    finally:
        sock.close(0)


def test_raw_sockets_without_the_token_get_nothing_processed(head: Head) -> None:
    address = f"tcp://{head.address}"
    wrong = security.CurveKeys.from_token(security.new_token())
    assert _raw_write(address, "plain", None, wait=3.0) is None
    assert _raw_write(address, "wrong-key", wrong, wait=3.0) is None
    # The same bytes with the cluster's keys are a valid request: the control.
    assert _raw_write(address, "allowed", security.CurveKeys.from_token(head.token()),
                      wait=10.0) is not None
    gcs = GcsClient(address, timeout=10.0, token=head.token())
    try:
        assert gcs.get(KV, "allowed") == b"written by allowed"
        assert gcs.get(KV, "plain") is None and gcs.get(KV, "wrong-key") is None
    finally:
        gcs.close()


def test_a_client_with_a_wrong_token_is_refused_with_a_clear_error(head: Head) -> None:
    # The refusal is told apart from silence: the error comes from the
    # handshake, not from the (long) deadline.
    gcs = GcsClient(head.address, timeout=120.0, token=security.new_token())
    try:
        with pytest.raises(AuthenticationError, match="another cluster token than the one given"):
            gcs.ping()
    finally:
        gcs.close()


def test_a_driver_without_the_token_is_refused(head: Head, elsewhere: Head) -> None:
    out = run_driver(f"import zray\nzray.init({head.address!r})",
                     env={**elsewhere.env, **NO_TOKEN}, timeout=60)
    assert out.returncode != 0
    assert "ConfigError" in out.stderr and "needs the cluster token" in out.stderr, out.stderr


def test_a_driver_with_another_token_is_refused_by_the_handshake(head: Head,
                                                                elsewhere: Head) -> None:
    out = run_driver(f"import zray\nzray.init({head.address!r})",
                     env={**elsewhere.env, "ZRAY_TOKEN": security.new_token()}, timeout=60)
    assert out.returncode != 0
    assert "AuthenticationError" in out.stderr and "refused the encrypted handshake" in out.stderr, \
        out.stderr
    assert "from ZRAY_TOKEN" in out.stderr, out.stderr


def test_a_driver_with_zray_token_runs_tasks(head: Head, elsewhere: Head) -> None:
    out = run_driver(f"""
import zray
zray.init({head.address!r})

@zray.remote
def square(x):
    return x * x

print(sum(zray.get([square.remote(i) for i in range(10)], timeout=60)))
zray.shutdown()
""", env={**elsewhere.env, "ZRAY_TOKEN": head.token()})
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "285"


def test_joining_needs_the_token(head: Head, elsewhere: Head) -> None:
    env = dict(os.environ, **elsewhere.env, **NO_TOKEN)
    refused = _cli(env, "start", "--address", head.address, "--num-cpus", "1")
    assert refused.returncode == 1
    assert "needs its token" in refused.stderr and "--token" in refused.stderr, refused.stderr
    assert alive_nodes(head) == 1

    wrong = _cli(env, "start", "--address", head.address, "--num-cpus", "1",
                 "--token", security.new_token())
    assert wrong.returncode == 1 and "another cluster token" in wrong.stderr, wrong.stderr

    joined = _cli(env, "start", "--address", head.address, "--num-cpus", "1",
                  "--node-name", "joined", "--token", head.token())
    assert joined.returncode == 0, joined.stdout + joined.stderr
    poll_for(lambda: alive_nodes(head) == 2, 30, what="the joined raylet to register")
    path = os.path.join(elsewhere.root, security.TOKEN_FILE_NAME)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for proc in zray_processes(session_dir=elsewhere.root):  # the token is never an argument
        assert head.token() not in " ".join(proc.cmdline())


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", "from zray.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_traffic_is_encrypted(head: Head) -> None:
    """A relay between a client and the GCS sees none of a value written through it."""
    host, port = head.address.rsplit(":", 1)
    seen = bytearray()
    relay = socket.create_server(("127.0.0.1", 0))
    relay_port = relay.getsockname()[1]

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        while data := _recv(src):
            seen.extend(data)
            dst.sendall(data)
        dst.close()

    def serve() -> None:
        conn, _ = relay.accept()
        upstream = socket.create_connection((host, int(port)))
        threading.Thread(target=pipe, args=(upstream, conn), daemon=True).start()
        pipe(conn, upstream)

    threading.Thread(target=serve, daemon=True).start()
    marker = b"secret-" + os.urandom(8).hex().encode()
    gcs = GcsClient(f"127.0.0.1:{relay_port}", timeout=10.0, token=head.token())
    try:
        gcs.put(KV, "encrypted", marker * 4)  # a put is answered after the round trip
        assert gcs.get(KV, "encrypted") == marker * 4
    finally:
        gcs.close()
        relay.close()
    assert len(seen) > 4 * len(marker) and marker not in seen


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""
