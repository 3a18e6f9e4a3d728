"""A driver's watch on its raylet: when the raylet process dies, whatever the
driver waits for (a `get`, a `wait`, a request) fails at once with
RayletDiedError instead of running into its timeout.

The raylet is on the driver's host (it is reached over ipc), so its pid says
whether it lives. A monitor on the raylet socket reports the moment the
connection drops; a pid check every CHECK_SECONDS covers a missed event.
Workers need no watch: they die with their raylet.
"""

from __future__ import annotations

import time
from typing import Any

import psutil
import zmq

from zray.common.errors import RayletDiedError

CHECK_SECONDS = 1.0


def pid_alive(pid: int) -> bool:
    """False once the process has exited (a zombie not yet reaped has exited too)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def death_message(pid: int, node_id: str, address: str) -> str:
    return (f"the raylet this driver is attached to (pid {pid}, node {node_id[:12]}, {address}) "
            "died: the results of tasks it ran or was to deliver, and the objects in its store, "
            "are lost to this driver; call zray.shutdown(), then zray.init(...) again to attach "
            "to a live raylet")


class RayletWatch:
    def __init__(self, sock: zmq.Socket[Any], pid: int, node_id: str, address: str) -> None:
        self.pid = pid
        self.node_id = node_id
        self.address = address
        self.lost = ""
        self.monitor: zmq.Socket[Any] = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._sock = sock
        self._next_check = time.monotonic() + CHECK_SECONDS

    def on_event(self) -> None:
        """The connection dropped (or another monitor event): is the raylet gone?"""
        while self.monitor.poll(0):
            self.monitor.recv_multipart()
        self.check(force=True)

    def check(self, force: bool = False) -> None:
        """Raise RayletDiedError if the raylet is dead (checked at most every CHECK_SECONDS
        unless forced)."""
        if not self.lost:
            now = time.monotonic()
            if not force and now < self._next_check:
                return
            self._next_check = now + CHECK_SECONDS
            if self.pid <= 0 or pid_alive(self.pid):
                return
            self.lost = death_message(self.pid, self.node_id, self.address)
        raise RayletDiedError(self.lost)

    def close(self) -> None:
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(0)
