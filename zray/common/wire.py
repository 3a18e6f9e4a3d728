"""Wire envelope: `[routing ids..., PROTOCOL_VERSION, header, body, *buffers]`.

The header is the message kind (ASCII), the body the model's JSON, and the
buffers are raw payload frames (pickled functions, arguments, objects) that
never pass through JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from zray.common.errors import ProtocolError
from zray.common.messages.base import Message

PROTOCOL_VERSION = b"ZRAY/1"
MAX_BODY_BYTES = 16 * 1024 * 1024

Frames = list[Any]


def encode(msg: Message, buffers: Iterable[Any] = ()) -> Frames:
    """Frames for one message (without routing ids)."""
    body = msg.__pydantic_serializer__.to_json(msg)
    return [PROTOCOL_VERSION, msg.kind.encode(), body, *buffers]


class Protocol:
    """The set of messages one socket accepts, decoded by their kind header."""

    def __init__(self, name: str, models: Sequence[type[Message]]) -> None:
        self.name = name
        self._by_kind: dict[bytes, type[Message]] = {}
        for model in models:
            kind = model.model_fields["kind"].default
            if not isinstance(kind, str):
                raise TypeError(f"{model.__name__} has no default kind")
            self._by_kind[kind.encode()] = model

    def kinds(self) -> list[str]:
        return sorted(k.decode() for k in self._by_kind)

    def decode(self, frames: Sequence[Any], start: int = 0) -> tuple[Message, list[Any]]:
        """(message, buffers) from frames[start:]; raises ProtocolError."""
        if len(frames) - start < 3:
            raise ProtocolError(f"{self.name}: truncated message ({len(frames) - start} frames)")
        version, header, body = frames[start], frames[start + 1], frames[start + 2]
        if bytes(version) != PROTOCOL_VERSION:
            raise ProtocolError(f"{self.name}: protocol version {bytes(version)[:16]!r}, "
                                f"expected {PROTOCOL_VERSION!r}")
        model = self._by_kind.get(bytes(header))
        if model is None:
            raise ProtocolError(f"{self.name}: unknown message kind {bytes(header)[:64]!r}")
        if len(body) > MAX_BODY_BYTES:
            raise ProtocolError(f"{self.name}: {bytes(header).decode()} body of {len(body)} bytes "
                                f"exceeds {MAX_BODY_BYTES}")
        try:
            msg = model.model_validate_json(body)
        except ValidationError as exc:
            raise ProtocolError(f"{self.name}: invalid {bytes(header).decode()}: "
                                f"{exc.error_count()} errors: {exc.errors()[0]['msg']}") from None
        return msg, list(frames[start + 3:])


def split_routing(frames: Sequence[Any]) -> int:
    """Index of the first frame after a ROUTER's routing id.

    zray's peers connect directly (no proxies), so a ROUTER sees exactly one
    routing frame; anything after it is the peer's message, however malformed.
    """
    return min(1, len(frames))


def pack_blobs(blobs: Sequence[Any]) -> bytes:
    """Several byte strings as one (for storing a message and its frames in one value)."""
    parts = [len(blobs).to_bytes(4, "big")]
    parts.extend(len(b).to_bytes(8, "big") for b in blobs)
    parts.extend(bytes(b) for b in blobs)
    return b"".join(parts)


def unpack_blobs(data: bytes) -> list[bytes]:
    count = int.from_bytes(data[:4], "big")
    sizes = [int.from_bytes(data[4 + 8 * i:12 + 8 * i], "big") for i in range(count)]
    out, pos = [], 4 + 8 * count
    for size in sizes:
        out.append(data[pos:pos + size])
        pos += size
    return out
