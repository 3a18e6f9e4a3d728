"""Node-local links between clients, over Unix stream sockets.

Calls sent straight to an actor's or a leased worker, and results sent
straight to their owners, go from one client to another on the same node,
never through a service. A ZeroMQ hop wakes three threads (the sender's I/O
thread, the receiver's I/O thread, the receiver); a Unix socket wakes only
the receiver. On a 2-CPU host a small round trip costs about 55 us this way
against 110-150 us over ipc:// ZeroMQ sockets, and these hops are the whole
path of a direct call. The links carry the same wire frames (see wire.py)
and live in the session's private sockets folder, like its ipc:// sockets.

A record is `u32 size of the rest | u32 frame count | u32 size per frame |
the frames`. Sends never block: what the kernel does not take waits in the
outlet until the socket drains (the client flushes outlets on each poll and
from its flusher thread while any is backed up).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from zray.common.errors import ProtocolError

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")
MAX_RECORD = 1 << 30
MAX_FRAMES = 1 << 20
SEND_BUFFER = 4 << 20  # asked for; the kernel caps it (net.core.wmem_max) for non-root
READ_CHUNK = 1 << 18
_MAX_PARTS = 512  # iovecs per sendmsg (the kernel allows 1024)


def peer_path(session_dir: str, worker_id_hex: str) -> str:
    """Where a driver or worker receives calls and results from its peers."""
    return os.path.join(session_dir, "sockets", f"peer-{worker_id_hex[:16]}")


def _nbytes(frame: Any) -> int:
    return len(frame) if isinstance(frame, bytes) else memoryview(frame).nbytes


def encode_record(frames: Sequence[Any]) -> list[Any]:
    """The buffers of one record, for sendmsg (no copy of the frames)."""
    sizes = [_nbytes(f) for f in frames]
    head = _HEADER.pack(4 * len(sizes) + sum(sizes), len(sizes)) + \
        struct.pack(f"<{len(sizes)}I", *sizes)
    return [head, *frames]


def decode_records(data: memoryview) -> tuple[list[list[bytes]], int]:
    """The whole records at the start of `data`, and how many bytes they took.

    Raises ProtocolError on a record that cannot be one of ours."""
    out: list[list[bytes]] = []
    pos, end = 0, len(data)
    while end - pos >= _HEADER.size:
        size, count = _HEADER.unpack_from(data, pos)
        if size > MAX_RECORD or count > MAX_FRAMES or 4 * count > size:
            raise ProtocolError(f"peer record of {size} bytes in {count} frames is malformed "
                                f"(at most {MAX_RECORD} bytes)")
        stop = pos + _HEADER.size + size
        if stop > end:
            break
        sizes = struct.unpack_from(f"<{count}I", data, pos + _HEADER.size)
        if sum(sizes) != size - 4 * count:
            raise ProtocolError(f"peer record's frame sizes add up to {sum(sizes)}, "
                                f"its header says {size - 4 * count}")
        at = pos + _HEADER.size + 4 * count
        frames = []
        for n in sizes:
            frames.append(bytes(data[at:at + n]))
            at += n
        out.append(frames)
        pos = stop
    return out, pos


class PeerOutlet:
    """A connection to one peer's inbox; `alive` is False once it failed."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.fd = self.sock.fileno()
        self._backlog: deque[memoryview] = deque()
        self.alive = True
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            pass
        self.sock.setblocking(False)
        try:
            self.sock.connect(path)
        except OSError:  # no such peer (gone, or not listening yet), or its backlog is full
            self.alive = False

    @property
    def backed_up(self) -> bool:
        return bool(self._backlog)

    def send(self, frames: Sequence[Any]) -> bool:
        """Send one message; False if the peer is gone. What the kernel does
        not take now waits for flush()."""
        if not self.alive:
            return False
        parts = encode_record(frames)
        if self._backlog:
            self._backlog.extend(memoryview(p).cast("B") for p in parts)
            return True
        if len(parts) > _MAX_PARTS:
            parts = [b"".join(parts)]
        try:
            sent = self.sock.sendmsg(parts)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._fail()
            return False
        for part in parts:
            view = memoryview(part).cast("B")
            if sent >= len(view):
                sent -= len(view)
                continue
            self._backlog.append(view[sent:])
            sent = 0
        return True

    def flush(self) -> bool:
        """Write what waits; True once nothing does."""
        backlog = self._backlog
        while backlog and self.alive:
            parts = [backlog[i] for i in range(min(len(backlog), _MAX_PARTS))]
            try:
                sent = self.sock.sendmsg(parts)
            except BlockingIOError:
                return False
            except OSError:
                self._fail()
                break
            while sent:
                head = backlog[0]
                if sent >= len(head):
                    sent -= len(head)
                    backlog.popleft()
                else:
                    backlog[0] = head[sent:]
                    sent = 0
        return not backlog

    def _fail(self) -> None:
        self.alive = False
        self._backlog.clear()

    def close(self, linger: float = 0.0) -> None:
        """Close; with `linger`, first wait that long at most for what waits to go."""
        deadline = time.monotonic() + linger
        waiter = select.poll()
        waiter.register(self.fd, select.POLLOUT)
        while linger and not self.flush():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            waiter.poll(left * 1000)
        self.sock.close()


class _Reader:
    __slots__ = ("sock", "partial")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.partial = bytearray()


class PeerInbox:
    """A client's listening socket for its peers; its fds are on `poller`."""

    def __init__(self, path: str, poller: zmq.Poller) -> None:
        self.path = path
        self.poller = poller
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        if os.path.exists(path):
            os.unlink(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1024)
        self.listener.setblocking(False)
        self.listen_fd = self.listener.fileno()
        self.readers: dict[int, _Reader] = {}
        self._chunk = bytearray(READ_CHUNK)
        poller.register(self.listen_fd, zmq.POLLIN)

    def owns(self, fd: Any) -> bool:
        return fd == self.listen_fd or fd in self.readers

    def receive(self, fd: int) -> list[list[bytes]]:
        """Messages (frame lists) that arrived on `fd`; accepts new peers on the listener."""
        if fd == self.listen_fd:
            self._accept()
            return []
        reader = self.readers.get(fd)
        if reader is None:
            return []
        try:
            n = reader.sock.recv_into(self._chunk)
        except BlockingIOError:  # another thread took it since the poll
            return []
        except OSError:
            n = 0
        if n == 0:
            self._drop(fd)
            return []
        partial = reader.partial
        if partial:  # a record begun in an earlier read
            partial += memoryview(self._chunk)[:n]
        data = memoryview(partial) if partial else memoryview(self._chunk)[:n]
        try:
            records, used = decode_records(data)
        except ProtocolError as exc:
            log.warning("dropping a peer link of %s: %s", self.path, exc)
            self._drop(fd)
            return []
        finally:
            data.release()
        if partial:
            del partial[:used]  # no copy of a long record's rest on every read
        elif used < n:
            reader.partial = bytearray(memoryview(self._chunk)[used:n])
        return records

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # out of descriptors: the peer sees its link fail
                log.warning("%s cannot accept a peer: %s", self.path, exc)
                return
            sock.setblocking(False)
            self.readers[sock.fileno()] = _Reader(sock)
            self.poller.register(sock.fileno(), zmq.POLLIN)

    def _drop(self, fd: int) -> None:
        reader = self.readers.pop(fd, None)
        if reader is not None:
            self.poller.unregister(fd)
            reader.sock.close()

    def close(self) -> None:
        for fd in list(self.readers):
            self._drop(fd)
        self.poller.unregister(self.listen_fd)
        self.listener.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class PeerOutlets:
    """A client's links to its peers' inboxes, by peer (worker id, hex).

    Backed-up links are on `poller` for POLLOUT until they drain; at most
    `limit` links stay open (the least recently used closes first)."""

    def __init__(self, poller: zmq.Poller, limit: int = 0, linger: float = 0.0,
                 on_backed_up: Callable[[], None] | None = None) -> None:
        self.session_dir = ""  # set once the client has registered
        self.poller = poller
        self.limit = limit
        self.linger = linger
        self.on_backed_up = on_backed_up
        self.links: OrderedDict[str, PeerOutlet] = OrderedDict()
        self.backed_up: dict[int, PeerOutlet] = {}

    def link(self, peer: str) -> PeerOutlet | None:
        """The open link to `peer` (made now if need be), or None if it cannot be reached."""
        outlet = self.links.get(peer)
        if outlet is not None and outlet.alive:
            self.links.move_to_end(peer)
            return outlet
        if outlet is not None:
            self.close(peer)
        if not self.session_dir:
            return None
        outlet = PeerOutlet(peer_path(self.session_dir, peer))
        if not outlet.alive:
            outlet.close()
            return None
        self.links[peer] = outlet
        if self.limit and len(self.links) > self.limit:
            self.close(next(iter(self.links)))
        return outlet

    def ready(self, peer: str) -> bool:
        """A send to `peer` now goes straight into the kernel (not behind a backlog)."""
        outlet = self.link(peer)
        return outlet is not None and not outlet.backed_up

    def send(self, peer: str, frames: Sequence[Any]) -> bool:
        """Send one message to `peer`; False if it is gone."""
        outlet = self.link(peer)
        if outlet is None or not outlet.send(frames):
            return False
        if outlet.backed_up and outlet.fd not in self.backed_up:
            self.backed_up[outlet.fd] = outlet
            self.poller.register(outlet.fd, zmq.POLLOUT)
            if self.on_backed_up is not None:
                self.on_backed_up()
        return True

    def flush(self) -> bool:
        """Write what waits on backed-up links; True once none is."""
        for fd, outlet in list(self.backed_up.items()):
            if outlet.flush() or not outlet.alive:
                self._drained(fd)
        return not self.backed_up

    def _drained(self, fd: int) -> None:
        if self.backed_up.pop(fd, None) is not None:
            self.poller.unregister(fd)

    def close(self, peer: str, linger: float | None = None) -> None:
        outlet = self.links.pop(peer, None)
        if outlet is not None:
            self._drained(outlet.fd)
            outlet.close(self.linger if linger is None else linger)

    def close_all(self) -> None:
        for peer in list(self.links):
            self.close(peer)
