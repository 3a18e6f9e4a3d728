"""GCS clients: the only way other parts touch the GCS.

Both learn the shard map from shard 0 (the address they are given) and send
each key's request to the shard that holds it; a scan asks every shard and
merges. `GcsClient` is blocking (drivers, workers, CLI). `ServiceGcs` lives
inside a service's event loop: requests carry callbacks, writes issued in
one loop turn go out as one batch per shard, and unanswered requests are
resent with backoff (writes are idempotent puts and deletes), so a shard
restart costs time, not writes.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import zmq

from zray.common import wire
from zray.common.errors import ConnectionFailedError, ProtocolError, RequestError
from zray.common.messages.base import ErrorReply, Message
from zray.common.messages.gcs import (
    GCS_REPLIES,
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
    GcsShardMap,
    GcsShardMapReply,
    GcsWrite,
    ShardAddress,
    WriteOp,
)
from zray.common.security import CurveKeys
from zray.common.sockets import HandshakeWatch, configure, connect, normalize, silence_hint
from zray.services.gcs.sharding import group_by_shard, shard_of

if TYPE_CHECKING:
    from zray.common.service import Service

log = logging.getLogger(__name__)

_REPLIES = wire.Protocol("gcs-client", GCS_REPLIES)
ATTEMPT_TIMEOUT = 1.0
WRITE_BEHIND_SECONDS = 0.01
WRITE_BATCH_MAX = 2000


class GcsClient:
    """Blocking request/reply client with retry until a deadline.

    `token`: the cluster token for tcp:// shards (default: this process's)."""

    def __init__(self, address: str, timeout: float = 30.0, ctx: zmq.Context[Any] | None = None,
                 token: str | None = None) -> None:
        self.address = normalize(address)
        self.timeout = timeout
        self.keys = CurveKeys.from_token(token) if token is not None else None
        self._ctx = ctx or zmq.Context.instance()
        self._watches: dict[zmq.Socket[Any], HandshakeWatch] = {}
        self._pollers: dict[zmq.Socket[Any], zmq.Poller] = {}
        self._socks = [self._connect(self.address)]
        self._addresses = [self.address]
        self._num_shards = 0  # 0: map not fetched yet
        self._shards: list[ShardAddress] = []
        self._next_id = 0
        self._lock = threading.Lock()

    def _connect(self, address: str) -> zmq.Socket[Any]:
        sock = configure(self._ctx.socket(zmq.DEALER))
        try:
            if address.startswith("tcp://"):
                self._watches[sock] = HandshakeWatch(sock, address,
                                                     given_token=self.keys is not None)
            connect(sock, address, self.keys)
        except BaseException:
            sock.close(0)
            raise
        return sock

    def close(self) -> None:
        for watch in self._watches.values():
            watch.close()
        for sock in self._socks:
            sock.close(0)

    @property
    def num_shards(self) -> int:
        self._ensure_map()
        return self._num_shards

    def call(self, build: Callable[[int], Message], buffers: Sequence[Any] = (),
             timeout: float | None = None, shard: int = 0) -> tuple[Message, list[Any]]:
        with self._lock:  # threads of a concurrent actor share this client
            return self._call(build, buffers, timeout, shard)

    def _call(self, build: Callable[[int], Message], buffers: Sequence[Any],
              timeout: float | None, shard: int) -> tuple[Message, list[Any]]:
        sock, address = self._socks[shard], self._addresses[shard]
        watch = self._watches.get(sock)
        poller = self._pollers.get(sock)
        if poller is None:
            poller = self._pollers[sock] = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            if watch is not None:
                poller.register(watch.monitor, zmq.POLLIN)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        attempt_timeout = ATTEMPT_TIMEOUT
        while True:
            self._next_id += 1
            req_id = self._next_id
            request = build(req_id)
            sock.send_multipart(wire.encode(request, buffers))
            attempt_end = min(deadline, time.monotonic() + attempt_timeout)
            while (remaining := attempt_end - time.monotonic()) > 0:
                ready = dict(poller.poll(int(remaining * 1000) + 1))
                if watch is not None and watch.monitor in ready:
                    watch.check()
                if sock not in ready:
                    continue
                frames = sock.recv_multipart()
                try:
                    reply, bufs = _REPLIES.decode(frames)
                except ProtocolError as exc:
                    log.warning("GCS client: bad reply: %s", exc)
                    continue
                if getattr(reply, "req_id", None) != req_id:
                    continue  # late answer to an earlier attempt
                if isinstance(reply, ErrorReply):
                    raise RequestError(f"GCS at {address} refused {request.kind}: {reply.error}")
                return reply, bufs
            if time.monotonic() >= deadline:
                raise ConnectionFailedError(
                    f"GCS at {address} did not answer {request.kind} within "
                    f"{self.timeout if timeout is None else timeout:.1f}s; {silence_hint(address)}")
            attempt_timeout = min(attempt_timeout * 2, 5.0)

    def _ensure_map(self) -> None:
        if self._num_shards:
            return
        with self._lock:
            if self._num_shards:
                return
            shards = fetch_shard_map(lambda build, t: self._call(build, (), t, 0), self.timeout,
                                     self.address)
            for shard in shards[1:]:
                self._socks.append(self._connect(shard.address))
                self._addresses.append(shard.address)
            self._shards = shards
            self._num_shards = len(shards)

    def pub_addresses(self) -> list[str]:
        """Where each shard publishes its changes, in shard order."""
        self._ensure_map()
        return [s.pub_address for s in self._shards]

    def _shard(self, key: str) -> int:
        self._ensure_map()
        return shard_of(key, self._num_shards)

    def ping(self, timeout: float | None = None, shard: int = 0) -> GcsPong:
        if shard:
            self._ensure_map()
        reply, _ = self.call(lambda r: GcsPing(req_id=r), timeout=timeout, shard=shard)
        assert isinstance(reply, GcsPong)
        return reply

    def put_many(self, items: Sequence[tuple[str, str, bytes]]) -> None:
        self._ensure_map()
        for shard, positions in group_by_shard([k for _, k, _ in items], self._num_shards).items():
            part = [items[i] for i in positions]
            ops = [WriteOp(table=t, key=k, buf=i) for i, (t, k, _) in enumerate(part)]
            self.call(lambda r, ops=ops: GcsWrite(req_id=r, ops=ops),  # type: ignore[misc]
                      [v for _, _, v in part], shard=shard)

    def put(self, table: str, key: str, value: bytes) -> None:
        self.put_many([(table, key, value)])

    def delete(self, table: str, key: str) -> None:
        self.call(lambda r: GcsWrite(req_id=r, ops=[WriteOp(table=table, key=key, delete=True)]),
                  shard=self._shard(key))

    def get_many(self, table: str, keys: Sequence[str]) -> list[bytes | None]:
        self._ensure_map()
        out: list[bytes | None] = [None] * len(keys)
        for shard, positions in group_by_shard(list(keys), self._num_shards).items():
            part = [keys[i] for i in positions]
            reply, bufs = self.call(lambda r, part=part: GcsRead(  # type: ignore[misc]
                req_id=r, table=table, keys=part), shard=shard)
            assert isinstance(reply, GcsReadReply)
            it = iter(bufs)
            for i, found in zip(positions, reply.found, strict=True):
                out[i] = bytes(next(it)) if found else None
        return out

    def get(self, table: str, key: str) -> bytes | None:
        return self.get_many(table, [key])[0]

    def scan_shard(self, shard: int, table: str, prefix: str = "", limit: int = 0,
                   timeout: float | None = None) -> tuple[list[tuple[str, bytes]], int]:
        """One shard's rows and its table sequence at the time of the scan."""
        self._ensure_map()
        reply, bufs = self.call(lambda r: GcsScan(req_id=r, table=table, prefix=prefix, limit=limit),
                                timeout=timeout, shard=shard)
        assert isinstance(reply, GcsScanReply)
        return list(zip(reply.keys, (bytes(b) for b in bufs), strict=True)), reply.seq

    def scan(self, table: str, prefix: str = "", limit: int = 0) -> list[tuple[str, bytes]]:
        self._ensure_map()
        parts = [self.scan_shard(i, table, prefix, limit)[0] for i in range(self._num_shards)]
        return merge_scans(parts, limit)

    def put_if_absent(self, table: str, key: str, value: bytes,
                      expected: str | None = None) -> tuple[bool, bytes | None]:
        """(True, None) if stored; (False, the value it holds) if the key existed
        and did not hold `expected`."""
        reply, bufs = self.call(lambda r: GcsPutIfAbsent(req_id=r, table=table, key=key,
                                                         expected=expected), [value],
                                shard=self._shard(key))
        assert isinstance(reply, GcsPutIfAbsentReply)
        holder = bytes(bufs[0]) if bufs else None
        if not reply.stored and holder == value:
            # An earlier attempt of this very call was applied, its reply lost
            # (e.g. the shard restarted): the value is ours.
            return True, None
        return reply.stored, holder

    def increment(self, key: str) -> int:
        """Add one to a counter; after a lost reply the retry may skip a number,
        never repeat one."""
        reply, _ = self.call(lambda r: GcsIncrement(req_id=r, key=key), shard=self._shard(key))
        assert isinstance(reply, GcsIncrementReply)
        return reply.value


def merge_scans(parts: list[list[tuple[str, bytes]]], limit: int = 0) -> list[tuple[str, bytes]]:
    """Shards' key-ordered rows as one key-ordered list."""
    rows = parts[0] if len(parts) == 1 else list(heapq.merge(*parts, key=lambda row: row[0]))
    return rows[:limit] if limit else rows


MAP_POLL_INTERVAL = 0.2


def fetch_shard_map(call: Callable[[Callable[[int], Message], float], tuple[Message, list[Any]]],
                    timeout: float, address: str) -> list[ShardAddress]:
    """Ask shard 0 until every shard has registered; the shards in index order."""
    deadline = time.monotonic() + timeout
    while True:
        reply, _ = call(lambda r: GcsShardMap(req_id=r), max(0.1, deadline - time.monotonic()))
        assert isinstance(reply, GcsShardMapReply)
        if len(reply.shards) == reply.num_shards:
            return reply.shards
        if time.monotonic() >= deadline:
            missing = sorted(set(range(reply.num_shards)) - {s.index for s in reply.shards})
            raise ConnectionFailedError(
                f"GCS at {address} has {reply.num_shards} shards but shards {missing} have not "
                f"registered within {timeout:.1f}s; are they running?")
        time.sleep(MAP_POLL_INTERVAL)


Callback = Callable[[Message, list[Any]], None]


class _Pending:
    __slots__ = ("frames", "callback", "sent_at", "attempts", "kind", "shard")

    def __init__(self, frames: list[Any], callback: Callback | None, kind: str, shard: int) -> None:
        self.frames = frames
        self.callback = callback
        self.sent_at = time.monotonic()
        self.attempts = 1
        self.kind = kind
        self.shard = shard


class ServiceGcs:
    """GCS access from inside a service loop: callbacks, batched writes, resends."""

    def __init__(self, service: Service, address: str, map_timeout: float = 120.0) -> None:
        self.service = service
        self.address = normalize(address)
        # The shard map first, blocking: a service cannot do anything useful
        # before it can reach the GCS.
        probe = GcsClient(self.address, timeout=map_timeout)
        try:
            shards = fetch_shard_map(lambda build, t: probe.call(build, (), t), map_timeout,
                                     self.address)
        finally:
            probe.close()
        self.addresses = [self.address] + [s.address for s in shards[1:]]
        self.pub_addresses = [s.pub_address for s in shards]
        self.socks: list[zmq.Socket[Any]] = []
        for addr in self.addresses:
            sock = service.socket(zmq.DEALER)
            connect(sock, addr)
            service.add_reader(sock, _REPLIES, dict.fromkeys(GCS_REPLIES, self._on_reply),
                               routed=False)
            self.socks.append(sock)
        self._pending: dict[int, _Pending] = {}
        self._next_id = 0
        self._batch: list[tuple[str, str, bytes | None]] = []
        self._batch_slots: dict[tuple[str, str], int] = {}
        self._batch_callbacks: list[Callable[[], None]] = []
        service.every(0.25, self._resend_overdue)

    @property
    def num_shards(self) -> int:
        return len(self.socks)

    def shard_of(self, key: str) -> int:
        return shard_of(key, len(self.socks))

    def request(self, build: Callable[[int], Message], buffers: Sequence[Any] = (),
                callback: Callback | None = None, shard: int = 0) -> None:
        self._next_id += 1
        req_id = self._next_id
        msg = build(req_id)
        frames = wire.encode(msg, buffers)
        self._pending[req_id] = _Pending(frames, callback, msg.kind, shard)
        self._send(shard, frames)

    def _send(self, shard: int, frames: list[Any]) -> None:
        sock = self.socks[shard]
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            pass  # resent by _resend_overdue
        self.service._mark_dirty(sock)

    def scan(self, table: str, prefix: str,
             callback: Callable[[list[tuple[str, bytes]]], None]) -> None:
        """Every shard's rows, merged in key order, to `callback` once all answered."""
        parts: dict[int, list[tuple[str, bytes]]] = {}

        def part_done(shard: int, reply: Message, bufs: list[Any]) -> None:
            assert isinstance(reply, GcsScanReply)
            parts[shard] = list(zip(reply.keys, (bytes(b) for b in bufs), strict=True))
            if len(parts) == self.num_shards:
                callback(merge_scans([parts[i] for i in range(self.num_shards)]))

        for shard in range(self.num_shards):
            self.request(lambda r: GcsScan(req_id=r, table=table, prefix=prefix), (),
                         lambda reply, bufs, shard=shard: part_done(shard, reply, bufs),  # type: ignore[misc]
                         shard=shard)

    def write(self, table: str, key: str, value: bytes | None,
              on_done: Callable[[], None] | None = None) -> None:
        """Queue a put (or delete when value is None).

        Writes go out together a moment later (write-behind), so a burst of
        tasks costs the GCS one request and the task path no extra wake-up.
        A later write of a key still waiting replaces the earlier one (puts
        overwrite, so only the last counts): the spec of a task that finished
        within the window costs the GCS a no-op delete, not a put and a delete.
        """
        if not self._batch:
            self.service.loop.call_later(WRITE_BEHIND_SECONDS, self.flush)
        slot = self._batch_slots.get((table, key))
        if slot is not None:
            self._batch[slot] = (table, key, value)
        else:
            self._batch_slots[(table, key)] = len(self._batch)
            self._batch.append((table, key, value))
        if on_done is not None:
            self._batch_callbacks.append(on_done)
        if len(self._batch) >= WRITE_BATCH_MAX:
            self.service.after_batch(self.flush)

    def flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        self._batch_slots.clear()
        callbacks, self._batch_callbacks = self._batch_callbacks, []
        groups = group_by_shard([key for _, key, _ in batch], self.num_shards)
        remaining = [len(groups)]

        def done(reply: Message, _: list[Any]) -> None:
            remaining[0] -= 1
            if remaining[0] == 0:
                for cb in callbacks:
                    cb()

        for shard, positions in groups.items():
            ops: list[WriteOp] = []
            bufs: list[bytes] = []
            for i in positions:
                table, key, value = batch[i]
                if value is None:
                    ops.append(WriteOp(table=table, key=key, delete=True))
                else:
                    ops.append(WriteOp(table=table, key=key, buf=len(bufs)))
                    bufs.append(value)
            self.request(lambda r, ops=ops: GcsWrite(req_id=r, ops=ops),  # type: ignore[misc]
                         bufs, done if callbacks else None, shard=shard)
        self.service.settle()

    def _on_reply(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        pending = self._pending.pop(getattr(msg, "req_id", -1), None)
        if pending is None:
            return
        if isinstance(msg, ErrorReply):
            log.error("%s: GCS refused %s: %s", self.service.name, pending.kind, msg.error)
            return
        if pending.callback is not None:
            pending.callback(msg, buffers)

    def _resend_overdue(self) -> None:
        now = time.monotonic()
        for pending in self._pending.values():
            if now - pending.sent_at > min(ATTEMPT_TIMEOUT * (2 ** (pending.attempts - 1)), 5.0):
                pending.attempts += 1
                pending.sent_at = now
                if pending.attempts in (3, 10) or pending.attempts % 50 == 0:
                    log.warning("%s: GCS shard %d at %s has not answered %s (attempt %d)",
                                self.service.name, pending.shard, self.addresses[pending.shard],
                                pending.kind, pending.attempts)
                self._send(pending.shard, pending.frames)

    @property
    def outstanding(self) -> int:
        return len(self._pending)

    def linger(self, seconds: float) -> None:
        """Let queued writes leave at close for up to `seconds`."""
        for sock in self.socks:
            sock.setsockopt(zmq.LINGER, int(seconds * 1000))
