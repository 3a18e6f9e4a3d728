"""The frames of a GCS shard's PUB socket.

A change: [topic, table seq, shard seq, key, b"put"|b"del", value]; the topic
is the table name and a NUL, so subscribing to one table never matches
another whose name it prefixes. A heartbeat: [HEARTBEAT_TOPIC, incarnation,
JSON of every table's sequence, shard seq].
"""

from __future__ import annotations

import json

HEARTBEAT_TOPIC = b"\x00hb"
OP_PUT = b"put"
OP_DEL = b"del"
_U64 = 8


def topic(table: str) -> bytes:
    return table.encode() + b"\x00"


def encode_change(table: str, table_seq: int, seq: int, key: bytes, value: bytes | None) -> list[bytes]:
    return [topic(table), table_seq.to_bytes(_U64, "big"), seq.to_bytes(_U64, "big"), key,
            OP_DEL if value is None else OP_PUT, value or b""]


def encode_heartbeat(incarnation: str, table_seqs: dict[str, int], seq: int) -> list[bytes]:
    return [HEARTBEAT_TOPIC, incarnation.encode(), json.dumps(table_seqs).encode(),
            seq.to_bytes(_U64, "big")]


def decode_publication(frames: list[bytes]) -> tuple[str, int, str, bytes | None] | None:
    """(table, table seq, key, value or None) of a change; None for a heartbeat."""
    if frames and frames[0] == HEARTBEAT_TOPIC:
        return None
    if len(frames) != 6 or frames[4] not in (OP_PUT, OP_DEL):
        raise ValueError(f"not a GCS publication: {len(frames)} frames")
    table = bytes(frames[0]).rstrip(b"\x00").decode()
    value = None if frames[4] == OP_DEL else bytes(frames[5])
    return table, int.from_bytes(frames[1], "big"), bytes(frames[3]).decode(), value


def decode_heartbeat(frames: list[bytes]) -> tuple[str, dict[str, int]]:
    if len(frames) != 4:
        raise ValueError(f"not a GCS heartbeat: {len(frames)} frames")
    seqs = json.loads(frames[2])
    if not isinstance(seqs, dict):
        raise ValueError("GCS heartbeat without table sequences")
    return bytes(frames[1]).decode(), {str(k): int(v) for k, v in seqs.items()}
