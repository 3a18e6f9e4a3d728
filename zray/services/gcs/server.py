"""A GCS shard: ROUTER for requests, PUB for change notifications.

Writes are group-committed: the write requests drained in one loop turn are
applied together (in LMDB transactions of up to storage.TXN_OPS ops), then
all are answered and published.

Publications are framed in publication.py. A periodic heartbeat carries the
shard's incarnation and every table's sequence, so a subscriber that missed
the last change of a quiet table, or a whole shard restart, notices within
one heartbeat.

Shard 0 is the entry point: it serves the shard map; shards > 0 register
their addresses with it until it acknowledges.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from typing import Any

import psutil
import zmq

from zray.common import wire
from zray.common.config import GcsSettings
from zray.common.messages.base import ErrorReply, Message
from zray.common.messages.gcs import (
    GCS_REQUESTS,
    GcsIncrement,
    GcsIncrementReply,
    GcsPing,
    GcsPong,
    GcsPutIfAbsent,
    GcsPutIfAbsentReply,
    GcsRead,
    GcsReadReply,
    GcsRegisterShard,
    GcsRegisterShardReply,
    GcsScan,
    GcsScanReply,
    GcsShardMap,
    GcsShardMapReply,
    GcsWrite,
    GcsWriteReply,
    ShardAddress,
)
from zray.common.service import Service
from zray.common.sockets import bind, connect
from zray.services.gcs.publication import encode_changes, encode_heartbeat
from zray.services.gcs.storage import Change, ShardStorage

log = logging.getLogger(__name__)

_SHARD_META = b"shard:"
_REGISTER_INTERVAL = 1.0
_REPLIES = wire.Protocol("gcs-register", [GcsRegisterShardReply, ErrorReply])


class GcsShard(Service):
    name = "gcs"

    def __init__(self, settings: GcsSettings) -> None:
        super().__init__()
        self.settings = settings
        self.name = f"gcs[{settings.shard_index}]"
        if not 0 <= settings.shard_index < settings.num_shards:
            raise ValueError(f"shard index {settings.shard_index} is outside 0..{settings.num_shards - 1}")
        if settings.shard_index > 0 and not settings.head_address:
            raise ValueError(f"shard {settings.shard_index} needs the address of shard 0 to register with")
        data_dir = settings.data_dir or tempfile.mkdtemp(prefix="zray-gcs-")
        self.storage = ShardStorage(os.path.join(data_dir, f"shard-{settings.shard_index}"),
                                    fsync=settings.fsync)
        # A new value per process start: subscribers resync when it changes.
        self.incarnation = uuid.uuid4().hex
        self._pending: list[tuple[list[bytes], GcsWrite, list[Any]]] = []
        self._commit_scheduled = False
        self.address = ""
        self.pub_address = ""
        self.shards: dict[int, ShardAddress] = {}
        self._registered = False
        self._process = psutil.Process()

    def setup(self) -> None:
        self.router = self.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.MAXMSGSIZE, 4 * self.settings.max_value_bytes)
        self.pub = self.socket(zmq.PUB)
        self.pub.setsockopt(zmq.SNDHWM, self.settings.pub_hwm)
        self.address = bind(self.router, self.settings.address)
        self.pub_address = bind(self.pub, self.settings.pub_address or _pub_default(self.address))
        self.add_reader(self.router, wire.Protocol("gcs", GCS_REQUESTS), {
            GcsWrite: self.on_write,
            GcsRead: self.on_read,
            GcsScan: self.on_scan,
            GcsIncrement: self.on_increment,
            GcsPutIfAbsent: self.on_put_if_absent,
            GcsPing: self.on_ping,
            GcsShardMap: self.on_shard_map,
            GcsRegisterShard: self.on_register_shard,
        }, routed=True)
        me = self.me()
        if self.settings.shard_index == 0:
            for _, raw in self.storage.meta_scan(_SHARD_META):
                shard = ShardAddress.model_validate_json(raw)
                if shard.index < self.settings.num_shards:
                    self.shards[shard.index] = shard
            self.shards[0] = me
        else:
            self.head = self.socket(zmq.DEALER)
            connect(self.head, self.settings.head_address)
            self.add_reader(self.head, _REPLIES, {GcsRegisterShardReply: self.on_registered,
                                                  ErrorReply: self.on_register_refused},
                            routed=False)
            self.loop.call_soon(self.register)
            self.every(_REGISTER_INTERVAL, self.register)
        self.every(1.0, self.storage.flush)
        self.every(self.settings.heartbeat_interval, self.heartbeat)
        log.info("%s: serving on %s (advertised %s), publishing on %s, data in %s, seq %d",
                 self.name, self.address, me.address, me.pub_address, self.storage.env.path(),
                 self.storage.seq)

    def me(self) -> ShardAddress:
        address = self.settings.advertise_address or self.address
        return ShardAddress(index=self.settings.shard_index, address=address,
                            pub_address=_advertised_pub(address, self.pub_address))

    # shard map -----------------------------------------------------------
    def register(self) -> None:
        if self._registered:
            return
        msg = GcsRegisterShard(req_id=1, shard=self.me(), num_shards=self.settings.num_shards)
        self.send(self.head, [], msg)

    def on_registered(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        if not self._registered:
            log.info("%s: registered with shard 0 at %s", self.name, self.settings.head_address)
        self._registered = True

    def on_register_refused(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        assert isinstance(msg, ErrorReply)
        log.error("%s: shard 0 refused the registration: %s", self.name, msg.error)

    def on_register_shard(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        assert isinstance(msg, GcsRegisterShard)
        if self.settings.shard_index != 0:
            raise ValueError(f"shard {self.settings.shard_index} is not shard 0; register with shard 0")
        if msg.num_shards != self.settings.num_shards:
            raise ValueError(f"shard {msg.shard.index} believes in {msg.num_shards} shards, "
                             f"shard 0 in {self.settings.num_shards}; start all with the same --shards")
        if not 0 < msg.shard.index < self.settings.num_shards:
            raise ValueError(f"shard index {msg.shard.index} is outside 1..{self.settings.num_shards - 1}")
        if self.shards.get(msg.shard.index) != msg.shard:
            self.storage.meta_put(_SHARD_META + str(msg.shard.index).encode(),
                                  msg.shard.model_dump_json().encode())
            self.shards[msg.shard.index] = msg.shard
            log.info("%s: shard %d serves on %s", self.name, msg.shard.index, msg.shard.address)
        self.reply(routing, GcsRegisterShardReply(req_id=msg.req_id))

    def on_shard_map(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        assert isinstance(msg, GcsShardMap)
        if self.settings.shard_index != 0:
            raise ValueError(f"shard {self.settings.shard_index} does not serve the shard map; ask shard 0")
        self.reply(routing, GcsShardMapReply(req_id=msg.req_id, num_shards=self.settings.num_shards,
                                             shards=[self.shards[i] for i in sorted(self.shards)]))

    def heartbeat(self) -> None:
        frames = encode_heartbeat(self.incarnation, self.storage.table_seqs, self.storage.seq)
        try:
            self.pub.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            pass

    def reply(self, routing: list[bytes], msg: Message, buffers: list[Any] | tuple[Any, ...] = ()) -> None:
        self.send(self.router, routing, msg, buffers)

    def on_write(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        assert isinstance(msg, GcsWrite)
        limit = self.settings.max_value_bytes
        for op in msg.ops:
            if not op.delete and not 0 <= op.buf < len(buffers):
                raise ValueError(f"write of {op.table}/{op.key} names missing frame {op.buf}")
            if not op.delete and len(buffers[op.buf]) > limit:
                raise ValueError(f"value of {op.table}/{op.key} has {len(buffers[op.buf])} bytes; "
                                 f"the GCS stores values up to {limit} bytes")
            self.storage.db(op.table)  # unknown tables fail this request only
        self._pending.append((routing, msg, buffers))
        if not self._commit_scheduled:
            self._commit_scheduled = True
            self.after_batch(self._commit)

    def _commit(self) -> None:
        self._commit_scheduled = False
        pending, self._pending = self._pending, []
        ops = [(op.table, op.key.encode(), None if op.delete else bytes(bufs[op.buf]))
               for _, msg, bufs in pending for op in msg.ops]
        changes = self.storage.write(ops)
        seq = self.storage.seq
        for routing, msg, _ in pending:
            self.reply(routing, GcsWriteReply(req_id=msg.req_id, seq=seq))
        self._publish(changes)

    def _publish(self, changes: list[Change]) -> None:
        by_table: dict[str, list[tuple[int, int, bytes, bytes | None]]] = {}
        for ch in changes:
            by_table.setdefault(ch.table, []).append((ch.table_seq, ch.seq, ch.key, ch.value))
        for table, entries in by_table.items():
            try:
                self.pub.send_multipart(encode_changes(table, entries), zmq.NOBLOCK)
            except zmq.Again:
                log.warning("%s: publication of %d %s changes dropped at the high-water mark",
                            self.name, len(entries), table)

    def on_read(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        assert isinstance(msg, GcsRead)
        values = self.storage.read(msg.table, [k.encode() for k in msg.keys])
        found = [v is not None for v in values]
        self.reply(routing, GcsReadReply(req_id=msg.req_id, found=found),
                   [v for v in values if v is not None])

    def on_scan(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        assert isinstance(msg, GcsScan)
        rows = self.storage.scan(msg.table, msg.prefix.encode(), msg.limit)
        self.reply(routing, GcsScanReply(req_id=msg.req_id, keys=[k.decode() for k, _ in rows],
                                         seq=self.storage.table_seqs[msg.table]),
                   [v for _, v in rows])

    def on_increment(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        assert isinstance(msg, GcsIncrement)
        value = self.storage.increment(msg.key.encode())
        self.reply(routing, GcsIncrementReply(req_id=msg.req_id, value=value))

    def on_put_if_absent(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        assert isinstance(msg, GcsPutIfAbsent)
        if len(buffers) != 1:
            raise ValueError(f"put-if-absent of {msg.table}/{msg.key} needs 1 frame, got {len(buffers)}")
        if len(buffers[0]) > self.settings.max_value_bytes:
            raise ValueError(f"value of {msg.table}/{msg.key} has {len(buffers[0])} bytes; the GCS "
                             f"stores values up to {self.settings.max_value_bytes} bytes")
        if self._pending:  # keep the order of writes already accepted
            self._commit()
        expected = None if msg.expected is None else msg.expected.encode()
        stored, existing, changes = self.storage.put_if_absent(msg.table, msg.key.encode(),
                                                               bytes(buffers[0]), expected)
        self.reply(routing, GcsPutIfAbsentReply(req_id=msg.req_id, stored=stored),
                   [] if existing is None else [existing])
        self._publish(changes)

    def on_ping(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        assert isinstance(msg, GcsPing)
        self.reply(routing, GcsPong(req_id=msg.req_id, shard_index=self.settings.shard_index,
                                    num_shards=self.settings.num_shards, seq=self.storage.seq,
                                    incarnation=self.incarnation, entries=self.storage.counts(),
                                    data_bytes=self.storage.data_bytes(),
                                    rss=self._process.memory_info().rss))

    def on_close(self) -> None:
        if self._pending:
            self._commit()
        self.storage.close()


def _advertised_pub(address: str, bound_pub: str) -> str:
    """The PUB address others use: the bound one, on the advertised host."""
    if bound_pub.startswith("ipc://") or not address.startswith("tcp://"):
        return bound_pub
    host = address.rsplit(":", 1)[0]
    return f"{host}:{bound_pub.rsplit(':', 1)[1]}"


def _pub_default(address: str) -> str:
    """The PUB socket's address next to the ROUTER's: ipc path + '.pub', or port + 1."""
    if address.startswith("ipc://"):
        return address + ".pub"
    host, port = address.rsplit(":", 1)
    return f"{host}:{int(port) + 1}"
