"""Socket set-up shared by services and clients.

Every socket of zray binds with `bind()` and connects with `connect()`: on a
`tcp://` address they apply the cluster's CURVE keys (see security.py), so a
socket that uses them is authenticated and encrypted without more code;
`ipc://` addresses stay plain (local, in 0700 folders).
"""

from __future__ import annotations

import os
import socket
from typing import Any, cast

import zmq

from zray.common import security
from zray.common.errors import AuthenticationError, ConfigError

HWM = 1_000_000


def configure(sock: zmq.Socket[Any], identity: bytes | None = None) -> zmq.Socket[Any]:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    return sock


def bind(sock: zmq.Socket[Any], address: str) -> str:
    """Bind and return the concrete address (a port of 0 picks a free one).

    A tcp:// socket serves CURVE with the cluster's server key."""
    if address.startswith("tcp://"):
        keys = _keys_for(address, serving=True)
        if keys is not None:
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_SECRETKEY, keys.server_secret)
    if address.startswith("ipc://"):
        path = address[len("ipc://"):]
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        if os.path.exists(path):
            os.unlink(path)
    if address.startswith("tcp://") and address.endswith(":0"):
        port = sock.bind_to_random_port(address[:-2])
        return f"{address[:-2]}:{port}"
    sock.bind(address)
    return address


IPC_RECONNECT_MS = 5
# Backing off by doubling, a connect made while the peer starts would land
# on 5, 15, 35, 75, 155, 315, 635 ms...: a peer bound at 320 ms is reached
# only at 635. A failed connect to a missing socket file costs one syscall.
IPC_RECONNECT_MAX_MS = 40


def connect(sock: zmq.Socket[Any], address: str,
            keys: security.CurveKeys | None = None) -> None:
    """Connect; to a tcp:// address as a CURVE client of the cluster (`keys`,
    or this process's, see security.process_keys)."""
    if address.startswith("tcp://"):
        keys = keys or _keys_for(address, serving=False)
        if keys is not None:
            sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.client_public)
            sock.setsockopt(zmq.CURVE_SECRETKEY, keys.client_secret)
    elif address.startswith("ipc://"):
        # Services on one host start together: a peer's socket file may appear
        # a moment after this connect. Retry soon (ZeroMQ waits 100 ms by
        # default), and at most IPC_RECONNECT_MAX_MS apart.
        sock.setsockopt(zmq.RECONNECT_IVL, IPC_RECONNECT_MS)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, IPC_RECONNECT_MAX_MS)
    sock.connect(address)


def _keys_for(address: str, serving: bool) -> security.CurveKeys | None:
    keys = security.process_keys()
    if keys is not None or security.insecure():
        return keys
    plain = f"{security.INSECURE_ENV}=1 instead turns authentication off"
    if serving:
        raise ConfigError(
            f"serving {address} needs the cluster token: set {security.TOKEN_ENV} (`zray token "
            f"--new` makes one; `zray start` sets it for its services); {plain}")
    raise ConfigError(
        f"connecting to {address} needs the cluster token: pass --token (zray start) or "
        f"zray.init(address, _token=...), or set {security.TOKEN_ENV}; `zray start --head` "
        f"printed it and keeps it in {security.token_file()} on the head "
        f"({security.INSECURE_ENV}=1 instead only for a cluster started with --insecure)")


class HandshakeWatch:
    """Tells a refused CURVE handshake from a peer that is slow or down.

    ZeroMQ retries a failed handshake forever without telling the sender, so
    a client with the wrong token would only time out. The socket's monitor
    sees each failure; several in a row with none succeeding is a refusal."""

    REFUSALS = 3
    _FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
               | zmq.EVENT_HANDSHAKE_FAILED_AUTH)

    def __init__(self, sock: zmq.Socket[Any], address: str, given_token: bool = False) -> None:
        self.address = address
        self.given_token = given_token
        self.monitor = sock.get_monitor_socket(self._FAILED | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self.failures = 0

    def check(self) -> None:
        """Read the pending events; raise AuthenticationError on a refusal."""
        while self.monitor.poll(0):
            frames = self.monitor.recv_multipart()
            event = int.from_bytes(frames[0][:2], "little")
            self.failures = 0 if event == zmq.EVENT_HANDSHAKE_SUCCEEDED else self.failures + 1
        if self.failures >= self.REFUSALS:
            raise AuthenticationError(
                f"{self.address} refused the encrypted handshake {self.failures} times: it uses "
                f"another cluster token than "
                f"{'the one given' if self.given_token else _token_source()}; use the token `zray start "
                "--head` printed (--token or ZRAY_TOKEN)")

    def close(self) -> None:
        self.monitor.close(0)


def _token_source() -> str:
    try:
        found = security.find_token()
    except ConfigError as exc:
        return f"this process's ({exc})"
    return f"this process's (from {found[1]})" if found else "none (this process has no token)"


def silence_hint(address: str) -> str:
    """Why a service at `address` may not answer, for a timeout's message."""
    if not address.startswith("tcp://"):
        return "is it running?"
    host, _, port = address[len("tcp://"):].rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=0.5):
            pass
    except (OSError, ValueError):
        return "nothing accepts connections there; is it running?"
    return (f"something accepts connections there but does not answer: if it is a zray cluster, "
            f"it uses another cluster token than {_token_source()}; use the token `zray start "
            "--head` printed (--token or ZRAY_TOKEN)")


def normalize(address: str) -> str:
    """`host:port` -> `tcp://host:port`; other schemes pass through."""
    if "://" in address:
        return address
    if ":" not in address:
        raise ValueError(f"address {address!r} needs host:port")
    return f"tcp://{address}"


def host_ip() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


# Plain ints: pyzmq's enum flags cost microseconds per frame on the hot path.
NOBLOCK = int(zmq.NOBLOCK)
SNDMORE = int(zmq.SNDMORE)
RCVMORE = int(zmq.RCVMORE)
EVENTS = int(zmq.EVENTS)
POLLIN = int(zmq.POLLIN)


def send_frames(sock: zmq.Socket[Any], frames: list[Any], flags: int = 0) -> None:
    """send_multipart without its per-frame flag arithmetic."""
    last = len(frames) - 1
    more = flags | SNDMORE
    for i, frame in enumerate(frames):
        try:
            sock.send(frame, more if i < last else flags)
        except TypeError:
            if i:  # end the message begun: left open, it would swallow the next one
                sock.send(b"", flags)
            raise


def recv_frames(sock: zmq.Socket[Any], flags: int = 0) -> list[bytes]:
    """recv_multipart without its per-frame flag arithmetic."""
    frames = [sock.recv(flags)]
    while sock.getsockopt(RCVMORE):
        frames.append(sock.recv())
    return frames


def readable(sock: zmq.Socket[Any]) -> bool:
    return bool(cast(int, sock.getsockopt(EVENTS)) & POLLIN)


def local_ip_towards(host: str) -> str:
    """This host's address on the route to `host` (loopback for a local host)."""
    try:
        target = socket.gethostbyname(host)
    except OSError:
        return host_ip()
    if target.startswith("127."):
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((target, 9))  # no packet is sent for a UDP connect
            return str(probe.getsockname()[0])
        except OSError:
            return host_ip()
