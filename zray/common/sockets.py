"""Socket set-up shared by services and clients."""

from __future__ import annotations

import os
import socket
from typing import Any

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
