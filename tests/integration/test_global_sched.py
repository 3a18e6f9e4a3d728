"""A real global scheduler process (with its GCS shard): heartbeats in, placements out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import zmq

from tests.conftest import poll_for, recv_within, service_log_tail, short_tmpdir, stop_popen
from tests.integration.conftest import ServiceProc, start_gcs
from zray.common import wire
from zray.common.messages.base import ErrorReply, Message
from zray.common.messages.sched import (
    SCHED_REPLIES,
    NodeHeartbeat,
    PlaceTask,
    SchedPing,
    SchedPong,
    TaskPlaced,
)
from zray.common.messages.tables import KV, NODE_DEAD_PREFIX, NODES, NodeInfo
from zray.services.gcs.client import GcsClient

pytestmark = pytest.mark.timeout(60)

REPLIES = wire.Protocol("test-raylet", SCHED_REPLIES)


@dataclass
class Sched:
    gcs: ServiceProc
    proc: subprocess.Popen[bytes]
    address: str
    log_path: str


def registered_schedulers(gcs_address: str) -> dict[str, dict[str, object]]:
    client = GcsClient(gcs_address, timeout=5.0)
    try:
        return {k: json.loads(v) for k, v in client.scan("kv", "scheduler:")}
    finally:
        client.close()


def start_registered_sched(folder: str, gcs_address: str, name: str,
                           env: dict[str, str] | None = None
                           ) -> tuple[str, subprocess.Popen[bytes], str]:
    """A global scheduler process, once it has registered in the GCS: (address, process, log)."""
    address = f"ipc://{folder}/{name}"
    log_path = os.path.join(folder, f"{name}.log")
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "zray.services.global_sched", "start", "--gcs-address",
             gcs_address, "--address", address],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})})
    try:
        poll_for(lambda: any(v.get("address") == address
                             for v in registered_schedulers(gcs_address).values()),
                 30, what="the scheduler to register in the GCS",
                 on_timeout=lambda: service_log_tail(log_path))
    except BaseException:
        stop_popen(proc)
        raise
    return address, proc, log_path


@pytest.fixture(scope="module")
def sched() -> Iterator[Sched]:
    folder = short_tmpdir()
    gcs = start_gcs(folder)
    address, proc, log_path = start_registered_sched(folder, gcs.address, "sched")
    try:
        yield Sched(gcs, proc, address, log_path)
    finally:
        stop_popen(proc)
        stop_popen(gcs.proc)
        shutil.rmtree(folder, ignore_errors=True)


class Raylet:
    """A fake raylet: a DEALER that speaks the scheduler protocol."""

    def __init__(self, address: str) -> None:
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(address)
        self.next_id = 0

    def send(self, msg: Message) -> None:
        self.sock.send_multipart(wire.encode(msg))

    def recv(self, timeout: float = 10.0) -> Message:
        return REPLIES.decode(recv_within(self.sock, timeout, "a reply from the scheduler"))[0]

    def nothing_within(self, ms: int) -> bool:
        return not self.sock.poll(ms)

    def ping(self) -> SchedPong:
        self.next_id += 1
        self.send(SchedPing(req_id=self.next_id))
        reply = self.recv()
        while getattr(reply, "req_id", None) != self.next_id:
            reply = self.recv()
        assert isinstance(reply, SchedPong)
        return reply

    def heartbeat(self, node_id: str, total: dict[str, float], available: dict[str, float] | None = None,
                  queue_len: int = 0) -> None:
        self.send(NodeHeartbeat(node_id=node_id, address=f"ipc://node-{node_id}", resources_total=total,
                                resources_available=total if available is None else available,
                                queue_len=queue_len, store_used=0, store_capacity=1 << 30))

    def close(self) -> None:
        self.sock.close(0)


@pytest.fixture
def raylet(sched: Sched) -> Iterator[Raylet]:
    r = Raylet(sched.address)
    yield r
    r.close()


def test_ping(raylet: Raylet) -> None:
    assert isinstance(raylet.ping(), SchedPong)


def test_places_on_a_node_with_the_resources(raylet: Raylet) -> None:
    raylet.heartbeat("cpu-node", {"CPU": 4.0})
    raylet.heartbeat("disk-node", {"CPU": 1.0, "disk": 1.0})
    poll_for(lambda: raylet.ping().nodes >= 2, 10, what="both heartbeats")
    raylet.send(PlaceTask(req_id=1, task_id="t1", resources={"CPU": 1.0, "disk": 1.0}))
    placed = raylet.recv()
    assert isinstance(placed, TaskPlaced)
    assert (placed.req_id, placed.task_id, placed.node_id) == (1, "t1", "disk-node")
    assert placed.address == "ipc://node-disk-node"


def test_prefers_idle_node(raylet: Raylet) -> None:
    raylet.heartbeat("busy", {"CPU": 2.0, "pool": 1.0}, {"CPU": 0.0, "pool": 1.0}, queue_len=10)
    raylet.heartbeat("idle", {"CPU": 2.0, "pool": 1.0}, {"CPU": 2.0, "pool": 1.0})
    poll_for(lambda: raylet.ping().nodes >= 2, 10, what="both heartbeats")
    raylet.send(PlaceTask(req_id=2, task_id="t2", resources={"CPU": 1.0, "pool": 1.0}))
    placed = raylet.recv()
    assert isinstance(placed, TaskPlaced) and placed.node_id == "idle"


def test_infeasible_task_waits_for_a_node_that_fits(raylet: Raylet) -> None:
    raylet.send(PlaceTask(req_id=3, task_id="needs-gpu", resources={"GPU": 1.0}))
    assert raylet.nothing_within(300)  # no node can run it yet: no answer, no error
    raylet.heartbeat("gpu-node", {"CPU": 1.0, "GPU": 1.0})
    placed = raylet.recv()
    assert isinstance(placed, TaskPlaced)
    assert (placed.task_id, placed.node_id) == ("needs-gpu", "gpu-node")


def test_a_registered_node_is_placed_on_before_its_first_heartbeat(sched: Sched,
                                                                  raylet: Raylet) -> None:
    # A node that just joined has a fresh record in the GCS; its first heartbeat
    # comes an interval later, and a task spilled meanwhile must still find it,
    # also when the task reaches the scheduler before the record does.
    client = GcsClient(sched.gcs.address, timeout=5.0)
    try:
        raylet.send(PlaceTask(req_id=4, task_id="t4", resources={"fresh": 1.0}))
        assert raylet.nothing_within(200)
        info = NodeInfo(node_id="joined", node_name="joined", host="h", address="tcp://h:7",
                        local_address="", store_dir="", session_dir="", pid=1,
                        start_time=time.time(), heartbeat_time=time.time(),
                        resources_total={"CPU": 1.0, "fresh": 1.0},
                        resources_available={"CPU": 1.0, "fresh": 1.0})
        client.put(NODES, info.node_id, info.model_dump_json().encode())
        placed = raylet.recv()
        assert isinstance(placed, TaskPlaced)
        assert (placed.task_id, placed.node_id, placed.address) == ("t4", "joined", "tcp://h:7")
    finally:
        client.close()


def test_bad_frames_do_not_stop_the_scheduler(sched: Sched, raylet: Raylet) -> None:
    raylet.sock.send_multipart([wire.PROTOCOL_VERSION, b"PlaceTask", b"{oops"])
    reply = raylet.recv()
    assert isinstance(reply, ErrorReply)
    raylet.sock.send_multipart([wire.PROTOCOL_VERSION, b"Shutdown", b"{}"])
    assert isinstance(raylet.recv(), ErrorReply)
    assert isinstance(raylet.ping(), SchedPong)
    assert sched.proc.poll() is None


def test_stopped_scheduler_unregisters() -> None:
    folder = short_tmpdir()
    gcs = start_gcs(folder)
    address, proc, log_path = start_registered_sched(folder, gcs.address, "sched2")
    try:
        stop_popen(proc)
        assert proc.returncode == 0, service_log_tail(log_path)
        # Raylets discover schedulers from these entries: a stopped one must not stay listed.
        poll_for(lambda: not any(v.get("address") == address
                                 for v in registered_schedulers(gcs.address).values()),
                 10, what="the scheduler's GCS entry to go",
                 on_timeout=lambda: service_log_tail(log_path))
    finally:
        stop_popen(proc)
        stop_popen(gcs.proc)
        shutil.rmtree(folder, ignore_errors=True)


def test_only_the_newest_dead_nodes_stay_recorded() -> None:
    folder = short_tmpdir()
    gcs = start_gcs(folder)
    env = {"ZRAY_SCHED_NODE_TIMEOUT": "0.3", "ZRAY_SCHED_DEAD_NODES_KEPT": "2"}
    _, proc, log_path = start_registered_sched(folder, gcs.address, "sched3", env)
    client = GcsClient(gcs.address, timeout=5.0)
    try:
        # Four registered nodes that never heartbeat: each is declared dead.
        for i in range(4):
            info = NodeInfo(node_id=f"node{i}", node_name=f"n{i}", host="h", address=f"tcp://h:{i + 1}",
                            local_address="", store_dir="", session_dir="", pid=1, start_time=i,
                            heartbeat_time=float(i), resources_total={"CPU": 1.0},
                            resources_available={"CPU": 1.0})
            client.put(NODES, info.node_id, info.model_dump_json().encode())
            # the newest death is never the one forgotten
            poll_for(lambda i=i: client.get(KV, NODE_DEAD_PREFIX + f"node{i}") is not None, 20,
                     what=f"node{i} to be declared dead", on_timeout=lambda: service_log_tail(log_path))

        def recorded() -> tuple[list[str], list[str]]:
            return ([k for k, _ in client.scan(NODES)],
                    [k[len(NODE_DEAD_PREFIX):] for k, _ in client.scan(KV, NODE_DEAD_PREFIX)])
        poll_for(lambda: recorded() == (["node2", "node3"], ["node2", "node3"]), 20,
                 what="the two oldest dead nodes to be forgotten", on_timeout=recorded)
        assert all(not NodeInfo.model_validate_json(v).alive for _, v in client.scan(NODES))
    finally:
        client.close()
        stop_popen(proc)
        stop_popen(gcs.proc)
        shutil.rmtree(folder, ignore_errors=True)
