"""Messages on a GCS shard's ROUTER socket."""

from __future__ import annotations

from typing import Literal

from pydantic.dataclasses import dataclass

from zray.common.messages.base import ErrorReply, Message
from zray.common.messages.task import COMPACT, CompactRecord, Record


@dataclass(config=COMPACT, frozen=True, slots=True)
class WriteOp(CompactRecord):
    """Put (value in payload frame `buf`) or delete one key of one table.

    A slotted dataclass: a write carries up to thousands of them."""

    table: str
    key: str
    delete: bool = False
    buf: int = -1


class GcsWrite(Message):
    kind: Literal["GcsWrite"] = "GcsWrite"
    req_id: int
    ops: list[WriteOp]


class GcsWriteReply(Message):
    kind: Literal["GcsWriteReply"] = "GcsWriteReply"
    req_id: int
    seq: int


class GcsRead(Message):
    kind: Literal["GcsRead"] = "GcsRead"
    req_id: int
    table: str
    keys: list[str]


class GcsReadReply(Message):
    """`found[i]` tells whether keys[i] exists; found values follow as frames, in order."""

    kind: Literal["GcsReadReply"] = "GcsReadReply"
    req_id: int
    found: list[bool]


class GcsScan(Message):
    kind: Literal["GcsScan"] = "GcsScan"
    req_id: int
    table: str
    prefix: str = ""
    limit: int = 0


class GcsScanReply(Message):
    """`seq`: the table's sequence number on this shard when the scan was taken,
    so a subscriber can tell which publications the snapshot already holds."""

    kind: Literal["GcsScanReply"] = "GcsScanReply"
    req_id: int
    keys: list[str]
    seq: int = 0


class GcsIncrement(Message):
    """Atomically add one to a counter and return the new value."""

    kind: Literal["GcsIncrement"] = "GcsIncrement"
    req_id: int
    key: str


class GcsIncrementReply(Message):
    kind: Literal["GcsIncrementReply"] = "GcsIncrementReply"
    req_id: int
    value: int


class GcsPutIfAbsent(Message):
    """Store the value (one payload frame) if the key is absent, or if it holds
    `expected` (compare-and-swap); atomic."""

    kind: Literal["GcsPutIfAbsent"] = "GcsPutIfAbsent"
    req_id: int
    table: str
    key: str
    expected: str | None = None


class GcsPutIfAbsentReply(Message):
    """`stored` False: the existing value follows as a payload frame."""

    kind: Literal["GcsPutIfAbsentReply"] = "GcsPutIfAbsentReply"
    req_id: int
    stored: bool


class GcsPing(Message):
    kind: Literal["GcsPing"] = "GcsPing"
    req_id: int


class GcsPong(Message):
    kind: Literal["GcsPong"] = "GcsPong"
    req_id: int
    shard_index: int
    num_shards: int
    seq: int
    incarnation: str = ""
    # How much the shard holds: rows per table, LMDB pages in use, process RSS.
    entries: dict[str, int] = {}
    data_bytes: int = 0
    rss: int = 0


class ShardAddress(Record):
    index: int
    address: str
    pub_address: str


class GcsShardMap(Message):
    """Ask shard 0 where every shard serves."""

    kind: Literal["GcsShardMap"] = "GcsShardMap"
    req_id: int


class GcsShardMapReply(Message):
    """`shards` holds the shards registered so far; the map is complete when
    it has `num_shards` entries."""

    kind: Literal["GcsShardMapReply"] = "GcsShardMapReply"
    req_id: int
    num_shards: int
    shards: list[ShardAddress]


class GcsRegisterShard(Message):
    """Shard i (> 0) tells shard 0 its addresses."""

    kind: Literal["GcsRegisterShard"] = "GcsRegisterShard"
    req_id: int
    shard: ShardAddress
    num_shards: int


class GcsRegisterShardReply(Message):
    kind: Literal["GcsRegisterShardReply"] = "GcsRegisterShardReply"
    req_id: int


GCS_REQUESTS: list[type[Message]] = [GcsWrite, GcsRead, GcsScan, GcsIncrement, GcsPutIfAbsent,
                                     GcsPing, GcsShardMap, GcsRegisterShard]
GCS_REPLIES: list[type[Message]] = [
    GcsWriteReply, GcsReadReply, GcsScanReply, GcsIncrementReply, GcsPutIfAbsentReply, GcsPong,
    GcsShardMapReply, GcsRegisterShardReply, ErrorReply,
]
