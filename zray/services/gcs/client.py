"""GCS clients: the only way other parts touch the GCS.

`GcsClient` is blocking (drivers, workers, CLI). `ServiceGcs` lives inside a
service's event loop: requests carry callbacks, writes issued in one loop
turn go out as one batch, and unanswered requests are resent with backoff
(writes are idempotent puts and deletes).
"""

from __future__ import annotations

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
    GcsWrite,
    WriteOp,
)
from zray.common.sockets import configure, normalize

if TYPE_CHECKING:
    from zray.common.service import Service

log = logging.getLogger(__name__)

_REPLIES = wire.Protocol("gcs-client", GCS_REPLIES)
ATTEMPT_TIMEOUT = 1.0
WRITE_BEHIND_SECONDS = 0.01
WRITE_BATCH_MAX = 2000


class GcsClient:
    """Blocking request/reply client with retry until a deadline."""

    def __init__(self, address: str, timeout: float = 30.0, ctx: zmq.Context[Any] | None = None) -> None:
        self.address = normalize(address)
        self.timeout = timeout
        self._ctx = ctx or zmq.Context.instance()
        self._sock = configure(self._ctx.socket(zmq.DEALER))
        self._sock.connect(self.address)
        self._next_id = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self._sock.close(0)

    def call(self, build: Callable[[int], Message], buffers: Sequence[Any] = (),
             timeout: float | None = None) -> tuple[Message, list[Any]]:
        with self._lock:  # threads of a concurrent actor share this client
            return self._call(build, buffers, timeout)

    def _call(self, build: Callable[[int], Message], buffers: Sequence[Any],
              timeout: float | None) -> tuple[Message, list[Any]]:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        attempt_timeout = ATTEMPT_TIMEOUT
        while True:
            self._next_id += 1
            req_id = self._next_id
            request = build(req_id)
            self._sock.send_multipart(wire.encode(request, buffers))
            attempt_end = min(deadline, time.monotonic() + attempt_timeout)
            while (remaining := attempt_end - time.monotonic()) > 0:
                if not self._sock.poll(int(remaining * 1000) + 1):
                    continue
                frames = self._sock.recv_multipart()
                try:
                    reply, bufs = _REPLIES.decode(frames)
                except ProtocolError as exc:
                    log.warning("GCS client: bad reply: %s", exc)
                    continue
                if getattr(reply, "req_id", None) != req_id:
                    continue  # late answer to an earlier attempt
                if isinstance(reply, ErrorReply):
                    raise RequestError(f"GCS at {self.address} refused {request.kind}: {reply.error}")
                return reply, bufs
            if time.monotonic() >= deadline:
                raise ConnectionFailedError(
                    f"GCS at {self.address} did not answer {request.kind} within "
                    f"{self.timeout if timeout is None else timeout:.1f}s; is it running?")
            attempt_timeout = min(attempt_timeout * 2, 5.0)

    def ping(self, timeout: float | None = None) -> GcsPong:
        reply, _ = self.call(lambda r: GcsPing(req_id=r), timeout=timeout)
        assert isinstance(reply, GcsPong)
        return reply

    def put_many(self, items: Sequence[tuple[str, str, bytes]]) -> None:
        ops = [WriteOp(table=t, key=k, buf=i) for i, (t, k, _) in enumerate(items)]
        self.call(lambda r: GcsWrite(req_id=r, ops=ops), [v for _, _, v in items])

    def put(self, table: str, key: str, value: bytes) -> None:
        self.put_many([(table, key, value)])

    def delete(self, table: str, key: str) -> None:
        self.call(lambda r: GcsWrite(req_id=r, ops=[WriteOp(table=table, key=key, delete=True)]))

    def get_many(self, table: str, keys: Sequence[str]) -> list[bytes | None]:
        reply, bufs = self.call(lambda r: GcsRead(req_id=r, table=table, keys=list(keys)))
        assert isinstance(reply, GcsReadReply)
        it = iter(bufs)
        return [next(it) if found else None for found in reply.found]

    def get(self, table: str, key: str) -> bytes | None:
        return self.get_many(table, [key])[0]

    def scan(self, table: str, prefix: str = "", limit: int = 0) -> list[tuple[str, bytes]]:
        reply, bufs = self.call(lambda r: GcsScan(req_id=r, table=table, prefix=prefix, limit=limit))
        assert isinstance(reply, GcsScanReply)
        return list(zip(reply.keys, bufs, strict=True))

    def put_if_absent(self, table: str, key: str, value: bytes,
                      expected: str | None = None) -> tuple[bool, bytes | None]:
        """(True, None) if stored; (False, the value it holds) if the key existed
        and did not hold `expected`."""
        reply, bufs = self.call(lambda r: GcsPutIfAbsent(req_id=r, table=table, key=key,
                                                         expected=expected), [value])
        assert isinstance(reply, GcsPutIfAbsentReply)
        return reply.stored, (bytes(bufs[0]) if bufs else None)

    def increment(self, key: str) -> int:
        reply, _ = self.call(lambda r: GcsIncrement(req_id=r, key=key))
        assert isinstance(reply, GcsIncrementReply)
        return reply.value


Callback = Callable[[Message, list[Any]], None]


class _Pending:
    __slots__ = ("frames", "callback", "sent_at", "attempts", "kind")

    def __init__(self, frames: list[Any], callback: Callback | None, kind: str) -> None:
        self.frames = frames
        self.callback = callback
        self.sent_at = time.monotonic()
        self.attempts = 1
        self.kind = kind


class ServiceGcs:
    """GCS access from inside a service loop: callbacks, batched writes, resends."""

    def __init__(self, service: Service, address: str) -> None:
        self.service = service
        self.address = normalize(address)
        self.sock = service.socket(zmq.DEALER)
        self.sock.connect(self.address)
        service.add_reader(self.sock, _REPLIES, dict.fromkeys(GCS_REPLIES, self._on_reply),
                           routed=False)
        self._pending: dict[int, _Pending] = {}
        self._next_id = 0
        self._batch: list[tuple[str, str, bytes | None]] = []
        self._batch_callbacks: list[Callable[[], None]] = []
        service.every(0.25, self._resend_overdue)

    def request(self, build: Callable[[int], Message], buffers: Sequence[Any] = (),
                callback: Callback | None = None) -> None:
        self._next_id += 1
        req_id = self._next_id
        msg = build(req_id)
        frames = wire.encode(msg, buffers)
        self._pending[req_id] = _Pending(frames, callback, msg.kind)
        self._send(frames)

    def _send(self, frames: list[Any]) -> None:
        try:
            self.sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            pass  # resent by _resend_overdue
        self.service._mark_dirty(self.sock)

    def write(self, table: str, key: str, value: bytes | None,
              on_done: Callable[[], None] | None = None) -> None:
        """Queue a put (or delete when value is None).

        Writes go out together a moment later (write-behind), so a burst of
        tasks costs the GCS one transaction and the task path no extra wake-up.
        """
        if not self._batch:
            self.service.loop.call_later(WRITE_BEHIND_SECONDS, self.flush)
        self._batch.append((table, key, value))
        if on_done is not None:
            self._batch_callbacks.append(on_done)
        if len(self._batch) >= WRITE_BATCH_MAX:
            self.service.after_batch(self.flush)

    def flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        callbacks, self._batch_callbacks = self._batch_callbacks, []
        ops: list[WriteOp] = []
        bufs: list[bytes] = []
        for table, key, value in batch:
            if value is None:
                ops.append(WriteOp(table=table, key=key, delete=True))
            else:
                ops.append(WriteOp(table=table, key=key, buf=len(bufs)))
                bufs.append(value)

        def done(reply: Message, _: list[Any]) -> None:
            for cb in callbacks:
                cb()

        self.request(lambda r: GcsWrite(req_id=r, ops=ops), bufs, done if callbacks else None)
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
                    log.warning("%s: GCS at %s has not answered %s (attempt %d)", self.service.name,
                                self.address, pending.kind, pending.attempts)
                self._send(pending.frames)

    @property
    def outstanding(self) -> int:
        return len(self._pending)
