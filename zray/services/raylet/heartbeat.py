"""The raylet's heartbeat, sent from a thread of its own.

A global scheduler declares a node dead after a few seconds without its
heartbeat, and a node declared dead stops for good (it is fenced). Sent from
the event loop, a heartbeat waits behind whatever the loop is doing: a long
batch of messages, a large transfer, spilling, or simply a loaded machine.
So the loop only hands over each new heartbeat (its load figures) and the
replicas' addresses; this thread sends the latest one every interval, on
sockets of its own.

It beats only while the loop keeps turning: once the loop has handed over
nothing for `stall_limit` seconds, the thread falls silent, and a node whose
loop is stuck is declared dead as it should be.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import zmq

from zray.common import wire
from zray.common.messages.sched import NodeHeartbeat
from zray.common.sockets import configure, connect

log = logging.getLogger(__name__)


class HeartbeatThread:
    def __init__(self, ctx: zmq.Context[Any], interval: float, stall_limit: float, name: str) -> None:
        self.ctx = ctx
        self.interval = interval
        self.stall_limit = stall_limit
        self.name = name
        self._lock = threading.Lock()
        self._frames: list[Any] | None = None
        self._addresses: tuple[str, ...] = ()
        self._handed = time.monotonic()
        self._silent = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def hand_over(self, beat: NodeHeartbeat, addresses: list[str]) -> None:
        """From the loop: the newest heartbeat and where it goes."""
        frames = wire.encode(beat)
        with self._lock:
            self._frames, self._addresses = frames, tuple(sorted(addresses))
            self._handed = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        socks: dict[str, zmq.Socket[Any]] = {}
        try:
            while not self._stop.wait(self.interval):
                self._beat(socks)
        except Exception:
            log.exception("%s: the heartbeat thread failed; heartbeats go silent", self.name)
        finally:
            for sock in socks.values():
                sock.close()

    def _beat(self, socks: dict[str, zmq.Socket[Any]]) -> None:
        with self._lock:
            frames, addresses, handed = self._frames, self._addresses, self._handed
        if frames is None:
            return
        stalled = time.monotonic() - handed
        if stalled > self.stall_limit:
            if not self._silent:
                log.error("%s: the event loop has not turned for %.1fs; heartbeats stop, so this "
                          "node will be declared dead", self.name, stalled)
            self._silent = True
            return
        self._silent = False
        for address in [a for a in socks if a not in addresses]:
            socks.pop(address).close()
        for address in addresses:
            sock = socks.get(address)
            if sock is None:
                sock = socks[address] = configure(self.ctx.socket(zmq.DEALER))
                connect(sock, address)
            try:
                sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                pass  # that replica is not keeping up; the next beat tries again
