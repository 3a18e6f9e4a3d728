"""One request, one reply: how the `check` commands ask a service whether it serves."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar

import zmq

from zray.common import wire
from zray.common.errors import ConnectionFailedError, ProtocolError
from zray.common.messages.base import Message
from zray.common.sockets import configure, connect, silence_hint

M = TypeVar("M", bound=Message)


def ask(address: str, request: Message, expected: type[M], replies: Sequence[type[Message]],
        timeout: float, what: str) -> M:
    """Send `request` to the ROUTER at `address` and return its `expected` reply,
    or raise ConnectionFailedError naming `what` when none comes within `timeout`
    seconds or another kind comes back."""
    ctx: zmq.Context[Any] = zmq.Context.instance()
    sock = configure(ctx.socket(zmq.DEALER), identity=b"probe-" + os.urandom(6).hex().encode())
    try:
        connect(sock, address)  # tcp://: CURVE with this process's cluster token
        sock.send_multipart(wire.encode(request))
        if not sock.poll(int(timeout * 1000)):
            raise ConnectionFailedError(f"{what} at {address} did not answer within {timeout:g}s; "
                                        f"{silence_hint(address)}")
        try:
            msg, _ = wire.Protocol(f"probe of {what}", replies).decode(sock.recv_multipart())
        except ProtocolError as exc:
            raise ConnectionFailedError(f"{what} at {address} answered garbage: {exc}") from None
    finally:
        sock.close(0)
    if not isinstance(msg, expected):
        raise ConnectionFailedError(f"{what} at {address} answered {msg.kind}")
    return msg
