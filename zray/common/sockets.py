"""Socket set-up shared by services and clients."""

from __future__ import annotations

import os
import socket
from typing import Any, cast

import zmq

HWM = 1_000_000


def configure(sock: zmq.Socket[Any], identity: bytes | None = None) -> zmq.Socket[Any]:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    return sock


def bind(sock: zmq.Socket[Any], address: str) -> str:
    """Bind and return the concrete address (a port of 0 picks a free one)."""
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
        sock.send(frame, more if i < last else flags)


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
