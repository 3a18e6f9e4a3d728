"""A GCS of several shard processes: routing, durability across kill -9,
subscribers that resync after lost publications and after shard restarts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
import pytest

from tests.conftest import poll_for, service_log_tail, short_tmpdir, stop_popen
from zray.common.errors import ZrayError
from zray.services.gcs.client import GcsClient
from zray.services.gcs.sharding import shard_of
from zray.services.gcs.subscriber import ThreadSubscriber

pytestmark = pytest.mark.timeout(120)

SHARDS = 3


@dataclass
class Group:
    proc: subprocess.Popen[bytes]
    address: str
    folder: str
    log_path: str

    def log(self) -> str:
        return service_log_tail(self.log_path, 40)

    def pids(self) -> list[int]:
        parent = psutil.Process(self.proc.pid)
        return [self.proc.pid] + [c.pid for c in parent.children()]


def start_group(folder: str, shards: int = SHARDS, env: dict[str, str] | None = None) -> Group:
    address = f"ipc://{folder}/gcs"
    log_path = os.path.join(folder, "gcs.log")
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "zray.services.gcs", "start", "--address", address,
             "--shards", str(shards), "--data-dir", os.path.join(folder, "data")],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=dict(os.environ, **(env or {})))
    group = Group(proc, address, folder, log_path)
    client = GcsClient(address, timeout=2.0)

    def all_shards_answer() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"GCS exited with {proc.returncode}:\n{group.log()}")
        try:
            return all(client.ping(shard=i, timeout=0.5) for i in range(client.num_shards))
        except ZrayError:
            return False

    try:
        poll_for(all_shards_answer, 30, what="every GCS shard to answer", on_timeout=group.log)
    except BaseException:
        stop_popen(proc)
        raise
    finally:
        client.close()
    return group


def kill_hard(group: Group) -> None:
    """SIGKILL every process of the group at once: nothing gets to flush or say goodbye."""
    procs = [psutil.Process(pid) for pid in group.pids()]
    for proc in procs:
        proc.kill()
    psutil.wait_procs(procs, timeout=10)
    group.proc.wait(10)


@pytest.fixture
def folder() -> Iterator[str]:
    path = short_tmpdir("zg-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def group(folder: str) -> Iterator[Group]:
    g = start_group(folder)
    yield g
    stop_popen(g.proc)


def test_keys_spread_over_the_shards_and_read_back(group: Group) -> None:
    client = GcsClient(group.address, timeout=10.0)
    try:
        assert client.num_shards == SHARDS
        items = [("kv", f"key-{i}", f"value-{i}".encode()) for i in range(600)]
        client.put_many(items)
        per_shard = [len(client.scan_shard(i, "kv")[0]) for i in range(SHARDS)]
        assert sum(per_shard) == 600 and min(per_shard) > 100, per_shard
        for i in range(SHARDS):
            keys = [k for k, _ in client.scan_shard(i, "kv")[0]]
            assert all(shard_of(k, SHARDS) == i for k in keys)
        assert client.scan("kv") == sorted((k, v) for _, k, v in items)
        assert [k for k, _ in client.scan("kv", "key-1", limit=3)] == ["key-1", "key-10", "key-100"]
        assert client.get_many("kv", ["key-5", "nope", "key-599"]) == [b"value-5", None, b"value-599"]
        assert client.put_if_absent("kv", "key-5", b"other") == (False, b"value-5")
        assert client.put_if_absent("kv", "fresh", b"mine") == (True, None)
        assert [client.increment("ctr") for _ in range(3)] == [1, 2, 3]
    finally:
        client.close()


def test_acknowledged_writes_and_sequences_survive_kill_9(folder: str) -> None:
    group = start_group(folder)
    client = GcsClient(group.address, timeout=10.0)
    try:
        for batch in range(20):
            client.put_many([("tasks", f"t{batch}-{i}", b"x" * 50) for i in range(100)])
        client.delete("tasks", "t0-0")
        seqs = [client.ping(shard=i).seq for i in range(SHARDS)]
    finally:
        client.close()
        kill_hard(group)

    group = start_group(folder)
    client = GcsClient(group.address, timeout=10.0)
    try:
        # A restarted shard resumes its sequence where the killed one left it.
        assert [client.ping(shard=i).seq for i in range(SHARDS)] == seqs
        rows = dict(client.scan("tasks"))
        assert len(rows) == 1999 and "t0-0" not in rows
        client.put("tasks", "after", b"1")
        after = [client.ping(shard=i).seq for i in range(SHARDS)]
        assert sum(after) == sum(seqs) + 1
    finally:
        client.close()
        stop_popen(group.proc)


def test_subscriber_resyncs_after_publications_are_dropped(folder: str) -> None:
    # Tiny publication queues: a stalled subscriber loses publications for real.
    group = start_group(folder, env={"ZRAY_GCS_PUB_HWM": "10"})
    client = GcsClient(group.address, timeout=10.0)
    follower = GcsClient(group.address, timeout=10.0)
    sub = ThreadSubscriber(follower, {"objects": None}, queue_limit=10)
    try:
        poll_for(sub.synced, 20, what="the first snapshot")
        with sub._lock:  # stall the subscriber thread while a burst of commits goes out
            for batch in range(10):
                for i in range(300):  # one commit, so one publication, each
                    client.put("objects", f"o{batch}-{i}", os.urandom(2000))
        client.delete("objects", "o3-7")
        expected = dict(client.scan("objects"))

        def caught_up() -> bool:
            return sub.synced() and sub.rows("objects") == expected

        poll_for(caught_up, 60, interval=0.1, what="the subscriber to catch up",
                 on_timeout=lambda: f"{len(sub.rows('objects'))} of {len(expected)} rows")
        assert sub.replicas["objects"].resyncs() >= 1, "the burst should have overflowed the queue"
    finally:
        sub.close()
        follower.close()
        client.close()
        stop_popen(group.proc)


def test_subscriber_follows_a_restarted_gcs(folder: str) -> None:
    group = start_group(folder)
    client = GcsClient(group.address, timeout=30.0)
    follower = GcsClient(group.address, timeout=30.0)
    seen: list[str] = []
    lock = threading.Lock()

    def record(changes: list) -> None:  # type: ignore[type-arg]
        with lock:
            seen.extend(c.key for c in changes)

    sub = ThreadSubscriber(follower, {"nodes": record})
    try:
        client.put_many([("nodes", f"n{i}", b"alive") for i in range(30)])
        poll_for(lambda: len(sub.rows("nodes")) == 30, 20, what="the first 30 rows")
        kill_hard(group)
        group = start_group(folder)
        client.put_many([("nodes", f"m{i}", b"alive") for i in range(30)])
        client.delete("nodes", "n0")
        poll_for(lambda: len(sub.rows("nodes")) == 59 and "n0" not in sub.rows("nodes"), 30,
                 what="the subscriber to see the writes made after the restart")
        assert sub.rows("nodes") == dict(client.scan("nodes"))
        with lock:
            assert {"m0", "m29", "n0"} <= set(seen)
    finally:
        sub.close()
        follower.close()
        client.close()
        stop_popen(group.proc)


def test_a_child_shard_refuses_garbage_and_keeps_serving(group: Group) -> None:
    import zmq

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(group.address + "-2")
    client = GcsClient(group.address, timeout=10.0)
    try:
        for i in range(500):
            sock.send_multipart([os.urandom(i % 50)] * (1 + i % 4))
        sock.send_multipart([b"ZRAY/1", b"GcsShardMap", b'{"kind": "GcsShardMap", "req_id": 3}'])
        key = next(k for k in (f"probe-{i}" for i in range(100)) if shard_of(k, SHARDS) == 2)
        client.put("kv", key, b"fine")
        assert client.get("kv", key) == b"fine"
        assert group.proc.poll() is None
    finally:
        sock.close(0)
        client.close()
