"""The raylet's heartbeat thread: it sends the newest heartbeat the loop handed
over to every replica, and falls silent once the loop stops handing them over
for longer than the stall limit (a stuck node must be declared dead)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import zmq

from tests.conftest import recv_within
from zray.common import wire
from zray.common.messages.sched import SCHED_REQUESTS, NodeHeartbeat
from zray.services.raylet.heartbeat import HeartbeatThread


def _beat(queue_len: int) -> NodeHeartbeat:
    return NodeHeartbeat(node_id="ab" * 16, address="tcp://127.0.0.1:1", resources_total={"CPU": 1.0},
                         resources_available={"CPU": 1.0}, queue_len=queue_len, store_used=0,
                         store_capacity=1)


def test_sends_the_newest_beat_and_stops_when_the_loop_stalls(tmp_path: Path) -> None:
    ctx: zmq.Context[Any] = zmq.Context.instance()
    replica = ctx.socket(zmq.ROUTER)
    address = f"ipc://{tmp_path}/sched"
    replica.bind(address)
    thread = HeartbeatThread(ctx, interval=0.05, stall_limit=5.0, name="raylet[test]")
    socks: dict[str, zmq.Socket[Any]] = {}
    try:
        thread.hand_over(_beat(1), [address])
        thread.hand_over(_beat(7), [address])
        thread._beat(socks)
        frames = recv_within(replica, 10, "a heartbeat")
        msg, _ = wire.Protocol("sched", SCHED_REQUESTS).decode(frames, 1)
        assert isinstance(msg, NodeHeartbeat) and msg.queue_len == 7
        # The loop has handed nothing over for longer than the stall limit: silence.
        thread._handed = time.monotonic() - 6.0
        thread._beat(socks)
        assert not replica.poll(200)
        # A replica that is gone is no longer sent to.
        thread.hand_over(_beat(2), [])
        thread._beat(socks)
        assert socks == {}
    finally:
        for sock in socks.values():
            sock.close()
        thread.close()
        replica.close()


def test_the_thread_beats_on_its_own(tmp_path: Path) -> None:
    ctx: zmq.Context[Any] = zmq.Context.instance()
    replica = ctx.socket(zmq.ROUTER)
    address = f"ipc://{tmp_path}/sched"
    replica.bind(address)
    thread = HeartbeatThread(ctx, interval=0.02, stall_limit=60.0, name="raylet[test]")
    thread.start()
    try:
        thread.hand_over(_beat(3), [address])
        for _ in range(3):  # several beats from one hand-over: the loop may be busy meanwhile
            recv_within(replica, 10, "a heartbeat")
    finally:
        thread.close()
        replica.close()
