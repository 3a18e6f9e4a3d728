"""A real GCS shard process driven by GcsClient and by a raw zmq socket."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator

import pytest
import zmq

from tests.conftest import poll_for, recv_within, stop_popen
from tests.integration.conftest import ServiceProc, start_gcs
from zray.common import wire
from zray.common.errors import ConnectionFailedError, RequestError
from zray.common.messages.base import ErrorReply
from zray.common.messages.gcs import GCS_REPLIES, GcsPing, GcsPong
from zray.services.gcs.client import GcsClient
from zray.services.gcs.publication import HEARTBEAT_TOPIC, decode_heartbeat, decode_publication, topic

pytestmark = pytest.mark.timeout(60)

REPLIES = wire.Protocol("test-client", GCS_REPLIES)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_ping(gcs_client: GcsClient) -> None:
    pong = gcs_client.ping()
    assert isinstance(pong, GcsPong)
    assert pong.shard_index == 0 and pong.num_shards == 1


def test_put_get_delete(gcs_client: GcsClient) -> None:
    key = unique("k")
    assert gcs_client.get("kv", key) is None
    gcs_client.put("kv", key, b"\x00value\xff")
    assert gcs_client.get("kv", key) == b"\x00value\xff"
    gcs_client.put("kv", key, b"second")
    assert gcs_client.get("kv", key) == b"second"
    gcs_client.delete("kv", key)
    assert gcs_client.get("kv", key) is None
    gcs_client.delete("kv", key)  # deleting twice is fine


def test_put_many_and_get_many(gcs_client: GcsClient) -> None:
    keys = [unique("m") for _ in range(50)]
    gcs_client.put_many([("kv", k, k.encode() * 3) for k in keys])
    gcs_client.put_many([("tasks", keys[0], b"task")])
    values = gcs_client.get_many("kv", [*keys, "absent"])
    assert values == [k.encode() * 3 for k in keys] + [None]
    assert gcs_client.get("tasks", keys[0]) == b"task"


def test_large_value(gcs_client: GcsClient) -> None:
    key = unique("big")
    value = os.urandom(8 * 1024 * 1024)
    gcs_client.put("objects", key, value)
    assert gcs_client.get("objects", key) == value


def test_scan(gcs_client: GcsClient) -> None:
    prefix = unique("scan") + ":"
    for i in range(5):
        gcs_client.put("kv", f"{prefix}{i}", str(i).encode())
    rows = gcs_client.scan("kv", prefix)
    assert rows == [(f"{prefix}{i}", str(i).encode()) for i in range(5)]
    assert len(gcs_client.scan("kv", prefix, limit=2)) == 2
    assert gcs_client.scan("kv", unique("none")) == []


def test_increment(gcs_client: GcsClient) -> None:
    key = unique("counter")
    assert [gcs_client.increment(key) for _ in range(3)] == [1, 2, 3]


def test_sequence_grows_with_writes(gcs_client: GcsClient) -> None:
    before = gcs_client.ping().seq
    gcs_client.put_many([("kv", unique("s"), b"1"), ("kv", unique("s"), b"2")])
    assert gcs_client.ping().seq == before + 2


def test_unknown_table_is_refused(gcs_client: GcsClient) -> None:
    with pytest.raises(RequestError, match="unknown GCS table"):
        gcs_client.put("no_such_table", "k", b"v")
    with pytest.raises(RequestError, match="unknown GCS table"):
        gcs_client.get("no_such_table", "k")
    assert gcs_client.ping()


def test_changes_are_published(gcs: ServiceProc, gcs_client: GcsClient) -> None:
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, topic("kv"))
    sub.connect(gcs.address + ".pub")
    key = unique("pub")
    try:
        received: list[tuple[int, str, bytes | None]] = []

        def receive(timeout_ms: int) -> bool:
            if not sub.poll(timeout_ms):
                return False
            pub = decode_publication(sub.recv_multipart())
            assert pub is not None and pub[0] == "kv"
            received.extend(pub[1])
            return True

        def got_it() -> bool:
            # PUB/SUB joins asynchronously: keep writing until a publication arrives.
            gcs_client.put("kv", key, b"v1")
            while receive(50):
                pass
            return any(k == key for _, k, _ in received)

        poll_for(got_it, 20, interval=0.05, what="a publication of the write")
        seq, _, value = next(p for p in received if p[1] == key)
        assert value == b"v1"
        assert seq <= gcs_client.scan_shard(0, "kv", limit=1)[1]
        # One commit of several keys: one message, consecutive table sequences.
        received.clear()
        gcs_client.put_many([("kv", key + "-a", b"a"), ("kv", key + "-b", b"b")])
        gcs_client.delete("kv", key)
        while len(received) < 3:
            assert receive(10_000), "the batch and the delete"
        assert [k for _, k, _ in received] == [key + "-a", key + "-b", key]
        assert [v for _, _, v in received] == [b"a", b"b", None]
        seqs = [s for s, _, _ in received]
        assert seqs == list(range(seqs[0], seqs[0] + 3)) and seqs[0] > seq
    finally:
        sub.close(0)


def test_table_topics_do_not_overlap(gcs: ServiceProc, gcs_client: GcsClient) -> None:
    """A subscriber of one table never sees another's changes, even with a shared name prefix."""
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, topic("kv"))  # "kv" prefixes "kv..." names, not "user_kv"
    sub.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC)
    sub.connect(gcs.address + ".pub")
    try:
        frames = recv_within(sub, 10, "a heartbeat")
        while frames[0] != HEARTBEAT_TOPIC:
            frames = recv_within(sub, 10, "a heartbeat")
        incarnation, seqs = decode_heartbeat(frames)
        assert incarnation == gcs_client.ping().incarnation
        assert set(seqs) >= {"kv", "user_kv", "nodes"}
        gcs_client.put("user_kv", unique("other"), b"x")
        gcs_client.put("kv", unique("mine"), b"y")
        seen = []
        while len(seen) < 1:
            pub = decode_publication(recv_within(sub, 10, "the kv change"))
            if pub is not None:
                seen.append(pub[0])
        assert seen == ["kv"]
    finally:
        sub.close(0)


# bad input over a raw socket ---------------------------------------------------

BAD_MESSAGES = {
    "bad version": [b"ZRAY/0", b"GcsPing", b'{"kind": "GcsPing", "req_id": 1}'],
    "no version frame": [b"garbage"],
    "empty frame": [b""],
    "unknown kind": [wire.PROTOCOL_VERSION, b"DropTables", b"{}"],
    "truncated": [wire.PROTOCOL_VERSION, b"GcsPing"],
    "version only": [wire.PROTOCOL_VERSION],
    "invalid json": [wire.PROTOCOL_VERSION, b"GcsPing", b'{"req_id": '],
    "extra field": [wire.PROTOCOL_VERSION, b"GcsPing", b'{"kind": "GcsPing", "req_id": 1, "x": 1}'],
    "wrong type": [wire.PROTOCOL_VERSION, b"GcsRead",
                   b'{"kind": "GcsRead", "req_id": 1, "table": 5, "keys": "k"}'],
    "write names missing frame": [
        wire.PROTOCOL_VERSION, b"GcsWrite",
        json.dumps({"kind": "GcsWrite", "req_id": 9,
                    "ops": [{"table": "kv", "key": "k", "buf": 4}]}).encode()],
    "write to unknown table": [
        wire.PROTOCOL_VERSION, b"GcsWrite",
        json.dumps({"kind": "GcsWrite", "req_id": 10,
                    "ops": [{"table": "zz", "key": "k", "buf": 0}]}).encode(),
        b"value"],
    "oversize body": [wire.PROTOCOL_VERSION, b"GcsScan", b" " * (wire.MAX_BODY_BYTES + 10)],
}


@pytest.fixture
def raw(gcs: ServiceProc) -> Iterator[zmq.Socket]:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(gcs.address)
    yield sock
    sock.close(0)


@pytest.mark.parametrize("name", list(BAD_MESSAGES))
def test_bad_frames_get_an_error_reply_or_are_dropped(name: str, gcs: ServiceProc, raw: zmq.Socket,
                                                      gcs_client: GcsClient) -> None:
    raw.send_multipart(BAD_MESSAGES[name])
    if raw.poll(2000):
        frames = raw.recv_multipart()
        # Whatever comes back must be a well-formed ErrorReply a client can decode.
        try:
            reply, _ = REPLIES.decode(frames)
        except Exception as exc:
            pytest.fail(f"{name}: the shard answered with frames a client cannot decode "
                        f"({exc}): {[bytes(f)[:60] for f in frames]}")
        assert isinstance(reply, ErrorReply), reply
        assert reply.error
    # The shard keeps serving, on the same raw socket and on others.
    raw.send_multipart(wire.encode(GcsPing(req_id=4242)))
    reply, _ = REPLIES.decode(recv_within(raw, 10, "a pong"))
    while getattr(reply, "req_id", None) != 4242:
        reply, _ = REPLIES.decode(recv_within(raw, 10, "a pong"))
    assert isinstance(reply, GcsPong)
    assert gcs_client.ping()
    assert gcs.proc.poll() is None


def test_error_reply_names_the_cause(raw: zmq.Socket) -> None:
    raw.send_multipart(BAD_MESSAGES["unknown kind"])
    reply, _ = REPLIES.decode(recv_within(raw, 10, "an error reply"))
    assert isinstance(reply, ErrorReply)
    assert "DropTables" in reply.error
    raw.send_multipart(BAD_MESSAGES["write names missing frame"])
    reply, _ = REPLIES.decode(recv_within(raw, 10, "an error reply"))
    assert isinstance(reply, ErrorReply)
    assert reply.req_id == 9
    assert "frame" in reply.error


def test_bad_version_reply_names_the_version(raw: zmq.Socket) -> None:
    raw.send_multipart(BAD_MESSAGES["bad version"])
    if raw.poll(2000):
        frames = raw.recv_multipart()
        reply, _ = REPLIES.decode(frames)  # a DEALER receives no routing frames
        assert isinstance(reply, ErrorReply)
        assert "version" in reply.error, reply.error


def test_a_flood_of_garbage_does_not_stop_the_shard(gcs: ServiceProc, raw: zmq.Socket,
                                                    gcs_client: GcsClient) -> None:
    for i in range(2000):
        raw.send_multipart([os.urandom(i % 40)] * (1 + i % 5))
    key = unique("after-flood")
    gcs_client.put("kv", key, b"ok")
    assert gcs_client.get("kv", key) == b"ok"
    assert gcs.proc.poll() is None


# restarts -----------------------------------------------------------------------------

def test_committed_writes_and_sequence_survive_a_restart(tmp_folder: str) -> None:
    service = start_gcs(tmp_folder)
    client = GcsClient(service.address, timeout=10.0)
    try:
        client.put_many([("kv", "a", b"1"), ("jobs", "j", b"job")])
        client.put("kv", "b", b"2")
        client.delete("kv", "a")
        assert client.increment("job") == 1
        seq = client.ping().seq
        assert seq == 4
    finally:
        client.close()
        stop_popen(service.proc)
    assert service.proc.returncode == 0, service.log()

    service = start_gcs(tmp_folder)
    client = GcsClient(service.address, timeout=10.0)
    try:
        assert client.ping().seq == seq  # a restarted shard resumes its sequence
        assert client.get_many("kv", ["a", "b"]) == [None, b"2"]
        assert client.get("jobs", "j") == b"job"
        assert client.increment("job") == 2
        client.put("kv", "c", b"3")
        assert client.ping().seq == seq + 1
    finally:
        client.close()
        stop_popen(service.proc)


def test_writes_survive_a_killed_shard(tmp_folder: str) -> None:
    service = start_gcs(tmp_folder)
    client = GcsClient(service.address, timeout=10.0)
    try:
        client.put("kv", "durable", b"yes")  # answered only once committed
    finally:
        client.close()
        service.proc.kill()
        service.proc.wait(10)
    service = start_gcs(tmp_folder)
    client = GcsClient(service.address, timeout=10.0)
    try:
        assert client.get("kv", "durable") == b"yes"
    finally:
        client.close()
        stop_popen(service.proc)


def test_client_times_out_without_a_shard(tmp_folder: str) -> None:
    client = GcsClient(f"ipc://{tmp_folder}/nobody", timeout=0.5)
    try:
        with pytest.raises(ConnectionFailedError, match="did not answer"):
            client.ping()
    finally:
        client.close()


def test_client_retries_until_the_shard_starts(tmp_folder: str) -> None:
    client = GcsClient(f"ipc://{tmp_folder}/gcs", timeout=30.0)
    outcome: list[object] = []

    def put() -> None:
        try:
            client.put("kv", "late", b"1")
            outcome.append("done")
        except Exception as exc:  # reported by the assertion below
            outcome.append(exc)

    writer = threading.Thread(target=put)
    writer.start()  # the request is in flight before the shard exists
    service = start_gcs(tmp_folder)
    try:
        writer.join(30)
        assert outcome == ["done"]
        check = GcsClient(service.address, timeout=10.0)
        try:
            assert check.get("kv", "late") == b"1"
        finally:
            check.close()
    finally:
        writer.join(30)
        client.close()
        stop_popen(service.proc)
