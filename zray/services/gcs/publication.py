"""The frames of a GCS shard's PUB socket.

The changes one commit made to one table go out as one message:
[topic, entries, keys, values] where `entries` holds per change its table
sequence (u64), shard sequence (u64) and op (1 byte: put or delete), and
keys and values are packed blobs (a delete's value is empty). The topic is
the table name and a NUL, so subscribing to one table never matches another
whose name it prefixes. A heartbeat: [HEARTBEAT_TOPIC, incarnation, JSON of
every table's sequence, shard seq].
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

from zray.common.wire import pack_blobs, unpack_blobs

HEARTBEAT_TOPIC = b"\x00hb"
OP_PUT = b"p"
OP_DEL = b"d"
_U64 = 8
_ENTRY = struct.Struct(">QQc")


def topic(table: str) -> bytes:
    return table.encode() + b"\x00"


def encode_changes(table: str, changes: Sequence[tuple[int, int, bytes, bytes | None]]) -> list[bytes]:
    """One table's changes of one commit: (table seq, shard seq, key, value or None) each."""
    entries = b"".join(_ENTRY.pack(tseq, seq, OP_DEL if value is None else OP_PUT)
                       for tseq, seq, _, value in changes)
    return [topic(table), entries, pack_blobs([key for _, _, key, _ in changes]),
            pack_blobs([value or b"" for _, _, _, value in changes])]


def encode_heartbeat(incarnation: str, table_seqs: dict[str, int], seq: int) -> list[bytes]:
    return [HEARTBEAT_TOPIC, incarnation.encode(), json.dumps(table_seqs).encode(),
            seq.to_bytes(_U64, "big")]


def decode_publication(frames: list[bytes]) -> tuple[str, list[tuple[int, str, bytes | None]]] | None:
    """(table, [(table seq, key, value or None), ...]) of a change message; None for a heartbeat."""
    if frames and frames[0] == HEARTBEAT_TOPIC:
        return None
    if len(frames) != 4 or not frames[0].endswith(b"\x00"):
        raise ValueError(f"not a GCS publication: {len(frames)} frames")
    entries = bytes(frames[1])
    if len(entries) % _ENTRY.size:
        raise ValueError("GCS publication with a truncated entry table")
    keys, values = unpack_blobs(bytes(frames[2])), unpack_blobs(bytes(frames[3]))
    count = len(entries) // _ENTRY.size
    if len(keys) != count or len(values) != count:
        raise ValueError(f"GCS publication of {count} entries with {len(keys)} keys, {len(values)} values")
    table = bytes(frames[0])[:-1].decode()
    out = []
    for i, (tseq, _seq, op) in enumerate(_ENTRY.iter_unpack(entries)):
        out.append((tseq, keys[i].decode(), None if op == OP_DEL else values[i]))
    return table, out


def decode_heartbeat(frames: list[bytes]) -> tuple[str, dict[str, int]]:
    if len(frames) != 4:
        raise ValueError(f"not a GCS heartbeat: {len(frames)} frames")
    seqs = json.loads(frames[2])
    if not isinstance(seqs, dict):
        raise ValueError("GCS heartbeat without table sequences")
    return bytes(frames[1]).decode(), {str(k): int(v) for k, v in seqs.items()}
