"""Following a GCS table from a service loop or a thread (Clone pattern).

Both keep a `TableReplica` (clone.py) per table and one SUB socket per shard
(publications do not name their shard, the socket does). A snapshot is a scan
of one shard, answered with the table sequence it reflects.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

from zray.common.errors import ZrayError
from zray.common.messages.base import Message
from zray.common.messages.gcs import GcsScan, GcsScanReply
from zray.common.sockets import configure, connect
from zray.services.gcs.clone import RowChange, TableReplica
from zray.services.gcs.publication import HEARTBEAT_TOPIC, decode_heartbeat, decode_publication, topic

if TYPE_CHECKING:
    from zray.common.service import Service
    from zray.services.gcs.client import GcsClient, ServiceGcs

log = logging.getLogger(__name__)

OnChanges = Callable[[list[RowChange]], None]


class _Feed:
    """Publications and heartbeats of one shard, into the replicas they concern."""

    def __init__(self, replicas: dict[str, TableReplica], shard: int,
                 on_changes: dict[str, OnChanges], resync: Callable[[str, int], None]) -> None:
        self.replicas = replicas
        self.shard = shard
        self.on_changes = on_changes
        self.resync = resync

    def handle(self, frames: list[bytes]) -> None:
        pub = decode_publication(frames)
        if pub is None:
            incarnation, seqs = decode_heartbeat(frames)
            for table, replica in self.replicas.items():
                if replica.on_heartbeat(self.shard, incarnation, seqs.get(table, 0)):
                    log.info("GCS subscriber: %s on shard %d out of date, resyncing", table, self.shard)
                    self.resync(table, self.shard)
            return
        table, entries = pub
        followed = self.replicas.get(table)
        if followed is None:
            return
        changes: list[RowChange] = []
        resync = False
        for seq, key, value in entries:
            more, resync = followed.on_publication(self.shard, seq, key, value)
            changes.extend(more)
            if resync:
                break  # the rest comes with the snapshot
        if changes:
            self.on_changes[table](changes)
        if resync:
            log.info("GCS subscriber: gap in %s on shard %d, resyncing", table, self.shard)
            self.resync(table, self.shard)


class ServiceSubscriber:
    """Tables followed inside a service loop; snapshots through its ServiceGcs."""

    def __init__(self, service: Service, gcs: ServiceGcs) -> None:
        self.service = service
        self.gcs = gcs
        self.replicas: dict[str, TableReplica] = {}
        self.on_changes: dict[str, OnChanges] = {}
        self._in_flight: set[tuple[str, int]] = set()
        self._socks: list[zmq.Socket[Any]] = []
        for shard, address in enumerate(gcs.pub_addresses):
            sock = service.socket(zmq.SUB)
            sock.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC)
            connect(sock, address)
            feed = _Feed(self.replicas, shard, self.on_changes, self.resync)
            service.add_raw_reader(sock, feed.handle)
            self._socks.append(sock)

    def follow(self, table: str, on_changes: OnChanges) -> TableReplica:
        replica = self.replicas[table] = TableReplica(table, self.gcs.num_shards)
        self.on_changes[table] = on_changes
        for shard, sock in enumerate(self._socks):
            sock.setsockopt(zmq.SUBSCRIBE, topic(table))  # subscribe first, then snapshot
            self.resync(table, shard)
        return replica

    def resync(self, table: str, shard: int) -> None:
        if (table, shard) in self._in_flight:
            return
        self._in_flight.add((table, shard))

        def snapshot(reply: Message, bufs: list[Any]) -> None:
            self._in_flight.discard((table, shard))
            assert isinstance(reply, GcsScanReply)
            rows = list(zip(reply.keys, (bytes(b) for b in bufs), strict=True))
            changes, again = self.replicas[table].on_snapshot(shard, rows, reply.seq)
            if changes:
                self.on_changes[table](changes)
            if again:
                self.resync(table, shard)

        self.gcs.request(lambda r: GcsScan(req_id=r, table=table), (), snapshot, shard=shard)


class ThreadSubscriber:
    """Tables followed by a background thread, for drivers and tools.

    `on_changes` runs on that thread; `rows(table)` returns a copy of the replica.
    `queue_limit` bounds the publications waiting per shard.
    """

    POLL_MS = 100

    def __init__(self, gcs: GcsClient, tables: dict[str, OnChanges | None],
                 ctx: zmq.Context[Any] | None = None, queue_limit: int | None = None) -> None:
        self.gcs = gcs
        self._ctx = ctx or zmq.Context.instance()
        num_shards = gcs.num_shards
        self.replicas = {t: TableReplica(t, num_shards) for t in tables}
        self.on_changes: dict[str, OnChanges] = {t: cb or (lambda _c: None) for t, cb in tables.items()}
        self._lock = threading.Lock()
        self._pending: set[tuple[str, int]] = {(t, s) for t in tables for s in range(num_shards)}
        self._stop = threading.Event()
        self._socks: list[zmq.Socket[Any]] = []
        pubs = gcs.pub_addresses()
        for address in pubs:
            sock = configure(self._ctx.socket(zmq.SUB))
            if queue_limit is not None:  # publications beyond it are dropped: resync
                sock.setsockopt(zmq.RCVHWM, queue_limit)
            sock.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC)
            for table in tables:
                sock.setsockopt(zmq.SUBSCRIBE, topic(table))
            connect(sock, address, gcs.keys)
            self._socks.append(sock)
        self._feeds = [_Feed(self.replicas, shard, self.on_changes, self._mark)
                       for shard in range(num_shards)]
        self._thread = threading.Thread(target=self._run, name="zray-gcs-subscriber", daemon=True)
        self._thread.start()

    def _mark(self, table: str, shard: int) -> None:
        self._pending.add((table, shard))

    def rows(self, table: str) -> dict[str, bytes]:
        with self._lock:
            return dict(self.replicas[table].rows)

    def synced(self) -> bool:
        with self._lock:
            return all(r.synced() for r in self.replicas.values())

    def _run(self) -> None:
        poller = zmq.Poller()
        for sock in self._socks:
            poller.register(sock, zmq.POLLIN)
        while not self._stop.is_set():
            for table, shard in sorted(self._pending):
                self._snapshot(table, shard)
            events = dict(poller.poll(self.POLL_MS))
            for shard, sock in enumerate(self._socks):
                while sock in events and sock.poll(0):
                    frames = sock.recv_multipart()
                    with self._lock:
                        try:
                            self._feeds[shard].handle(frames)
                        except (ValueError, KeyError) as exc:
                            log.warning("GCS subscriber: dropped a bad publication: %s", exc)

    def _snapshot(self, table: str, shard: int) -> None:
        try:
            rows, seq = self.gcs.scan_shard(shard, table, timeout=2.0)
        except ZrayError as exc:
            log.info("GCS subscriber: snapshot of %s from shard %d failed (%s); retrying", table,
                     shard, exc)
            return
        self._pending.discard((table, shard))
        with self._lock:
            changes, again = self.replicas[table].on_snapshot(shard, rows, seq)
        if changes:
            self.on_changes[table](changes)
        if again:
            self._pending.add((table, shard))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self._socks:
            sock.close(0)
