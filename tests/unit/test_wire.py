"""Wire framing: encode/decode, and every kind of bad input raising ProtocolError."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import ValidationError

from zray.common import wire
from zray.common.errors import ProtocolError
from zray.common.messages.base import ErrorReply, Message
from zray.common.messages.gcs import GCS_REQUESTS, GcsPing, GcsWrite, WriteOp

pytestmark = pytest.mark.timeout(10)

PROTO = wire.Protocol("test", GCS_REQUESTS)


def test_round_trip_with_buffers() -> None:
    msg = GcsWrite(req_id=7, ops=[WriteOp(table="kv", key="a", buf=0),
                                  WriteOp(table="kv", key="b", delete=True)])
    payload = memoryview(b"\x00binary\xff")
    frames = wire.encode(msg, [payload, b"second"])
    assert frames[0] == wire.PROTOCOL_VERSION
    assert frames[1] == b"GcsWrite"
    decoded, buffers = PROTO.decode(frames)
    assert decoded == msg
    assert [bytes(b) for b in buffers] == [b"\x00binary\xff", b"second"]


def test_decode_after_routing_ids() -> None:
    frames = [b"client-identity", *wire.encode(GcsPing(req_id=3))]
    start = wire.split_routing(frames)
    assert start == 1
    decoded, buffers = PROTO.decode(frames, start)
    assert decoded == GcsPing(req_id=3)
    assert buffers == []


def test_split_routing_is_one_routing_frame() -> None:
    # Peers connect directly: a ROUTER message has exactly one routing frame,
    # so a message without a version frame still decodes to a clear error.
    assert wire.split_routing([b"a", b"b"]) == 1
    assert wire.split_routing([]) == 0


def test_kinds() -> None:
    assert "GcsPing" in PROTO.kinds()
    assert PROTO.kinds() == sorted(PROTO.kinds())


def test_bad_version() -> None:
    frames = wire.encode(GcsPing(req_id=1))
    frames[0] = b"ZRAY/0"
    with pytest.raises(ProtocolError, match="version"):
        PROTO.decode(frames)


def test_unknown_kind() -> None:
    frames = [wire.PROTOCOL_VERSION, b"NoSuchMessage", b"{}"]
    with pytest.raises(ProtocolError, match="unknown message kind"):
        PROTO.decode(frames)


def test_kind_of_another_protocol_is_unknown() -> None:
    with pytest.raises(ProtocolError, match="unknown"):
        PROTO.decode(wire.encode(ErrorReply(error="x")))


@pytest.mark.parametrize("n", [0, 1, 2])
def test_truncated(n: int) -> None:
    frames = wire.encode(GcsPing(req_id=1))[:n]
    with pytest.raises(ProtocolError, match="truncated"):
        PROTO.decode(frames)


@pytest.mark.parametrize("body", [
    b"{not json",
    b'{"kind": "GcsPing"}',                              # missing req_id
    b'{"kind": "GcsPing", "req_id": 1, "extra": 2}',     # extra fields are forbidden
    b'{"kind": "GcsPing", "req_id": "one"}',             # wrong type
    b'{"kind": "GcsRead", "req_id": 1, "table": "kv", "keys": []}',  # kind disagrees with header
    b"",
])
def test_invalid_body(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="invalid GcsPing"):
        PROTO.decode([wire.PROTOCOL_VERSION, b"GcsPing", body])


def test_oversize_body() -> None:
    body = b" " * (wire.MAX_BODY_BYTES + 1)
    with pytest.raises(ProtocolError, match="exceeds"):
        PROTO.decode([wire.PROTOCOL_VERSION, b"GcsRead", body])


def test_messages_are_frozen() -> None:
    msg = GcsPing(req_id=1)
    with pytest.raises(ValidationError):
        msg.req_id = 2  # type: ignore[misc]


def test_protocol_needs_a_kind_default() -> None:
    class NoKind(Message):
        kind: str

    with pytest.raises(TypeError):
        wire.Protocol("bad", [NoKind])


def test_protocol_with_a_custom_message() -> None:
    class Hello(Message):
        kind: Literal["Hello"] = "Hello"
        name: str

    proto = wire.Protocol("hello", [Hello])
    msg, bufs = proto.decode(wire.encode(Hello(name="zray"), [b"x"]))
    assert msg == Hello(name="zray") and bufs == [b"x"]


@pytest.mark.parametrize("blobs", [
    [],
    [b""],
    [b"a", b"", b"ccc"],
    [bytes(range(256)) * 1000, b"tail"],
])
def test_pack_unpack_blobs(blobs: list[bytes]) -> None:
    packed = wire.pack_blobs(blobs)
    assert isinstance(packed, bytes)
    assert wire.unpack_blobs(packed) == blobs


def test_pack_blobs_accepts_buffers() -> None:
    packed = wire.pack_blobs([memoryview(b"abc"), bytearray(b"de")])
    assert wire.unpack_blobs(packed) == [b"abc", b"de"]


def test_pack_blobs_stores_a_message_and_its_frames() -> None:
    frames = wire.encode(GcsWrite(req_id=1, ops=[WriteOp(table="kv", key="k", buf=0)]), [b"value"])
    restored = wire.unpack_blobs(wire.pack_blobs(frames))
    msg, bufs = PROTO.decode(restored)
    assert isinstance(msg, GcsWrite) and bufs == [b"value"]
