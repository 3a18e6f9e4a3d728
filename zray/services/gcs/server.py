"""A GCS shard: ROUTER for requests, PUB for change notifications.

Writes are group-committed: every write request drained in one loop turn is
applied in one LMDB transaction, then all are answered and published.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import zmq

from zray.common import wire
from zray.common.config import GcsSettings
from zray.common.messages.base import Message
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
    GcsScan,
    GcsScanReply,
    GcsWrite,
    GcsWriteReply,
)
from zray.common.service import Service
from zray.common.sockets import bind
from zray.services.gcs.storage import Change, ShardStorage

log = logging.getLogger(__name__)

_OP_PUT = b"put"
_OP_DEL = b"del"


class GcsShard(Service):
    name = "gcs"

    def __init__(self, settings: GcsSettings) -> None:
        super().__init__()
        self.settings = settings
        self.name = f"gcs[{settings.shard_index}]"
        data_dir = settings.data_dir or tempfile.mkdtemp(prefix="zray-gcs-")
        self.storage = ShardStorage(os.path.join(data_dir, f"shard-{settings.shard_index}"))
        self._pending: list[tuple[list[bytes], GcsWrite, list[Any]]] = []
        self._commit_scheduled = False
        self.address = ""
        self.pub_address = ""

    def setup(self) -> None:
        self.router = self.socket(zmq.ROUTER)
        self.pub = self.socket(zmq.PUB)
        self.address = bind(self.router, self.settings.address)
        self.pub_address = bind(self.pub, self.settings.pub_address or _pub_default(self.address))
        self.add_reader(self.router, wire.Protocol("gcs", GCS_REQUESTS), {
            GcsWrite: self.on_write,
            GcsRead: self.on_read,
            GcsScan: self.on_scan,
            GcsIncrement: self.on_increment,
            GcsPutIfAbsent: self.on_put_if_absent,
            GcsPing: self.on_ping,
        }, routed=True)
        self.every(1.0, self.storage.flush)
        log.info("%s: serving on %s, publishing on %s, data in %s, seq %d", self.name,
                 self.address, self.pub_address, self.storage.env.path(), self.storage.seq)

    def reply(self, routing: list[bytes], msg: Message, buffers: list[Any] | tuple[Any, ...] = ()) -> None:
        self.send(self.router, routing, msg, buffers)

    def on_write(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        assert isinstance(msg, GcsWrite)
        for op in msg.ops:
            if not op.delete and not 0 <= op.buf < len(buffers):
                raise ValueError(f"write of {op.table}/{op.key} names missing frame {op.buf}")
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
        pub = self.pub
        for ch in changes:
            frames = [ch.table.encode(), ch.seq.to_bytes(8, "big"), ch.key,
                      _OP_DEL if ch.value is None else _OP_PUT, ch.value or b""]
            try:
                pub.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                log.warning("%s: publication %d dropped at high-water mark", self.name, ch.seq)

    def on_read(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        assert isinstance(msg, GcsRead)
        values = self.storage.read(msg.table, [k.encode() for k in msg.keys])
        found = [v is not None for v in values]
        self.reply(routing, GcsReadReply(req_id=msg.req_id, found=found),
                   [v for v in values if v is not None])

    def on_scan(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        assert isinstance(msg, GcsScan)
        rows = self.storage.scan(msg.table, msg.prefix.encode(), msg.limit)
        self.reply(routing, GcsScanReply(req_id=msg.req_id, keys=[k.decode() for k, _ in rows]),
                   [v for _, v in rows])

    def on_increment(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        assert isinstance(msg, GcsIncrement)
        value = self.storage.increment(msg.key.encode())
        self.reply(routing, GcsIncrementReply(req_id=msg.req_id, value=value))

    def on_put_if_absent(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        assert isinstance(msg, GcsPutIfAbsent)
        if len(buffers) != 1:
            raise ValueError(f"put-if-absent of {msg.table}/{msg.key} needs 1 frame, got {len(buffers)}")
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
                                    num_shards=self.settings.num_shards, seq=self.storage.seq))

    def on_close(self) -> None:
        if self._pending:
            self._commit()
        self.storage.close()


def _pub_default(address: str) -> str:
    """The PUB socket's address next to the ROUTER's: ipc path + '.pub', or port + 1."""
    if address.startswith("ipc://"):
        return address + ".pub"
    host, port = address.rsplit(":", 1)
    return f"{host}:{int(port) + 1}"
