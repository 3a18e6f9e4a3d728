"""Service base: one asyncio loop, sockets drained in batches, periodic jobs.

ZeroMQ's FD is edge-triggered, so a reader drains its socket until EAGAIN;
any send may consume an edge, so every socket a service sends on is drained
again on the next loop turn.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import zmq

from zray.common import wire
from zray.common.errors import ProtocolError
from zray.common.heap import TRIM_INTERVAL_SECONDS, HeapTrimmer
from zray.common.messages.base import ErrorReply, Message
from zray.common.sockets import NOBLOCK, readable, recv_frames, send_frames

log = logging.getLogger(__name__)

Handler = Callable[[list[bytes], Message, list[Any]], None]
DRAIN_BATCH = 2000



def _fd(sock: zmq.Socket[Any]) -> int:
    return cast(int, sock.getsockopt(zmq.FD))


class Status(enum.Enum):
    init = "init"
    running = "running"
    closing = "closing"
    closed = "closed"


class Reader:
    """A socket, the protocol it speaks and its handler table."""

    def __init__(self, service: Service, sock: zmq.Socket[Any], protocol: wire.Protocol,
                 handlers: dict[type[Message], Handler], routed: bool) -> None:
        self.service = service
        self.sock = sock
        self.protocol = protocol
        self.handlers = handlers
        self.routed = routed
        self.bad_messages = 0
        # Messages handled per kind: [count, seconds in handlers] (seconds only
        # when the service sets time_handlers); read by metrics exporters.
        self.stats: dict[str, list[float]] = {}

    def drain(self) -> None:
        """Event-loop callback: handle what is waiting, then settle the service."""
        self.drain_batch()
        self.service.settle()

    def drain_batch(self) -> None:
        sock = self.sock
        try:
            for _ in range(DRAIN_BATCH):
                if not readable(sock):
                    return
                self.handle(recv_frames(sock, NOBLOCK))
        except zmq.ZMQError as exc:
            if self.service.status is Status.running:
                log.warning("%s: recv failed: %s", self.service.name, exc)
            return
        self.service.loop.call_soon(self.drain)  # more waiting: let other sockets have a turn

    def handle(self, frames: list[bytes]) -> None:
        start = wire.split_routing(frames) if self.routed else 0
        routing = frames[:start]
        try:
            msg, buffers = self.protocol.decode(frames, start)
        except ProtocolError as exc:
            self.bad_messages += 1
            log.warning("%s: dropped bad message: %s", self.service.name, exc)
            if routing:
                self.service.send(self.sock, routing, ErrorReply(error=str(exc)))
            return
        handler = self.handlers.get(type(msg))
        if handler is None:
            log.warning("%s: no handler for %s", self.service.name, msg.kind)
            return
        self.service.handled += 1
        stats = self.stats.get(msg.kind)
        if stats is None:
            stats = self.stats[msg.kind] = [0, 0.0]
        stats[0] += 1
        started = time.perf_counter() if self.service.time_handlers else 0.0
        try:
            handler(routing, msg, buffers)
            if started:
                stats[1] += time.perf_counter() - started
        except Exception as exc:
            log.exception("%s: handler for %s failed", self.service.name, msg.kind)
            req_id = getattr(msg, "req_id", 0)
            if routing:
                self.service.send(self.sock, routing,
                                  ErrorReply(req_id=req_id, error=f"{type(exc).__name__}: {exc}"))


class RawReader(Reader):
    """A socket whose messages are not envelopes (e.g. PUB/SUB publications)."""

    def __init__(self, service: Service, sock: zmq.Socket[Any],
                 handler: Callable[[list[bytes]], None]) -> None:
        super().__init__(service, sock, wire.Protocol("raw", []), {}, routed=False)
        self.raw_handler = handler

    def handle(self, frames: list[bytes]) -> None:
        try:
            self.raw_handler(frames)
        except Exception:
            self.bad_messages += 1
            log.exception("%s: handling a raw message failed", self.service.name)


class Service:
    """Base of every zray service process."""

    name = "service"
    time_handlers = False  # measure seconds per handled message (for latency metrics)

    def __init__(self) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context.instance()
        self.status = Status.init
        self.loop: asyncio.AbstractEventLoop = asyncio.new_event_loop()
        self._readers: dict[zmq.Socket[Any], Reader] = {}
        self._sockets: list[zmq.Socket[Any]] = []
        self._dirty: set[zmq.Socket[Any]] = set()
        self._after: list[Callable[[], None]] = []
        self._periodic: list[tuple[float, Callable[[], Any]]] = []
        self.handled = 0  # messages handled, all sockets
        self._heap = HeapTrimmer()
        self.every(TRIM_INTERVAL_SECONDS, lambda: self._heap.maybe_trim(self.handled))
        self._stopped = asyncio.Event()
        self._close_reason = ""
        self.started_at = time.time()

    # sockets -------------------------------------------------------------
    def socket(self, kind: int, identity: bytes | None = None) -> zmq.Socket[Any]:
        from zray.common.sockets import configure

        sock = configure(self.ctx.socket(kind), identity)
        self._sockets.append(sock)
        return sock

    def add_reader(self, sock: zmq.Socket[Any], protocol: wire.Protocol,
                   handlers: dict[type[Message], Handler], routed: bool) -> None:
        reader = self._readers[sock] = Reader(self, sock, protocol, handlers, routed)
        if self.status is Status.running:
            self.loop.add_reader(_fd(sock), reader.drain)
            self.loop.call_soon(reader.drain)

    def add_raw_reader(self, sock: zmq.Socket[Any], handler: Callable[[list[bytes]], None]) -> None:
        reader = self._readers[sock] = RawReader(self, sock, handler)
        if self.status is Status.running:
            self.loop.add_reader(_fd(sock), reader.drain)
            self.loop.call_soon(reader.drain)

    def remove_socket(self, sock: zmq.Socket[Any]) -> None:
        if self._readers.pop(sock, None) is not None:
            self.loop.remove_reader(_fd(sock))
        self._dirty.discard(sock)
        if sock in self._sockets:
            self._sockets.remove(sock)
        sock.close()

    def send(self, sock: zmq.Socket[Any], routing: list[bytes], msg: Message,
             buffers: list[Any] | tuple[Any, ...] = ()) -> None:
        try:
            send_frames(sock, [*routing, *wire.encode(msg, buffers)], NOBLOCK)
        except zmq.ZMQError as exc:
            log.warning("%s: send of %s failed: %s", self.name, msg.kind, exc)
        self._mark_dirty(sock)

    def _mark_dirty(self, sock: zmq.Socket[Any]) -> None:
        if sock in self._readers:
            self._dirty.add(sock)

    def after_batch(self, job: Callable[[], None]) -> None:
        """Run `job` once after the messages being handled now (coalesces work)."""
        self._after.append(job)

    def settle(self) -> None:
        """Run deferred jobs and re-drain sockets that were sent on, until quiet.

        Done in place rather than through call_soon: each loop turn costs an
        epoll call, and this is on every task's path.
        """
        for _ in range(100):
            while self._after:
                jobs, self._after = self._after, []
                for job in jobs:
                    try:
                        job()
                    except Exception:
                        log.exception("%s: deferred job failed", self.name)
            if not self._dirty:
                return
            dirty, self._dirty = self._dirty, set()
            for sock in dirty:
                self._readers[sock].drain_batch()
        self.loop.call_soon(self.settle)

    # periodic jobs -------------------------------------------------------
    def every(self, interval: float, job: Callable[[], Any]) -> None:
        self._periodic.append((interval, job))

    async def _run_periodic(self, interval: float, job: Callable[[], Any]) -> None:
        while self.status is Status.running:
            await asyncio.sleep(interval)
            try:
                result = job()
                if isinstance(result, Awaitable):
                    await result
            except Exception:
                log.exception("%s: periodic job %s failed", self.name, getattr(job, "__name__", job))
            self.settle()

    # lifecycle -----------------------------------------------------------
    def setup(self) -> None:
        """Bind and connect sockets; runs before the loop starts."""

    def on_close(self) -> None:
        """Release resources; runs once at close."""

    def run(self, handle_signals: bool = True) -> None:
        """Run in the foreground until SIGTERM/SIGINT or close().

        A service run in a thread other than the main one leaves the signals
        to its host (`handle_signals=False`) and is closed by it.
        """
        asyncio.set_event_loop(self.loop)
        self.setup()
        self.status = Status.running
        for sock, reader in self._readers.items():
            self.loop.add_reader(_fd(sock), reader.drain)
            self.loop.call_soon(reader.drain)
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.loop.add_signal_handler(sig, self.close, f"signal {sig.name}")
        tasks = [self.loop.create_task(self._run_periodic(i, j)) for i, j in self._periodic]
        try:
            self.loop.run_until_complete(self._stopped.wait())
        finally:
            for t in tasks:
                t.cancel()
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._teardown()

    def close(self, reason: str = "") -> None:
        """Idempotent: stop the loop; the caller of run() tears down."""
        if self.status in (Status.closing, Status.closed):
            return
        self._close_reason = reason
        log.info("%s: closing (%s)", self.name, reason or "requested")
        self.status = Status.closing
        self._stopped.set()

    def _teardown(self) -> None:
        for sock in self._readers:
            try:
                self.loop.remove_reader(_fd(sock))
            except (zmq.ZMQError, ValueError):
                pass
        try:
            self.on_close()
        finally:
            for sock in self._sockets:
                sock.close()
            self.status = Status.closed
            self.loop.close()
