"""TableReplica: the Clone pattern's rules, fed by hand."""

from __future__ import annotations

from zray.services.gcs.clone import RowChange, TableReplica
from zray.services.gcs.sharding import group_by_shard, shard_address, shard_of


def keys_on(shard: int, num_shards: int, count: int) -> list[str]:
    return [k for k in (f"k{i}" for i in range(1000)) if shard_of(k, num_shards) == shard][:count]


def test_updates_before_the_snapshot_are_buffered_and_stale_ones_dropped() -> None:
    r = TableReplica("kv", 1)
    assert r.on_publication(0, 4, "a", b"old")[0] == []  # before the snapshot: buffered
    assert r.on_publication(0, 5, "b", b"new") == ([], False)
    changes, again = r.on_snapshot(0, [("a", b"old")], seq=4)
    assert not again
    assert changes == [RowChange("a", None, b"old"), RowChange("b", None, b"new")]
    assert r.rows == {"a": b"old", "b": b"new"}
    assert r.shards[0].seq == 5
    assert r.on_publication(0, 5, "b", b"replayed") == ([], False)  # stale


def test_live_updates_apply_in_order_and_deletes_remove() -> None:
    r = TableReplica("kv", 1)
    r.on_snapshot(0, [], seq=0)
    assert r.on_publication(0, 1, "a", b"1") == ([RowChange("a", None, b"1")], False)
    assert r.on_publication(0, 2, "a", None) == ([RowChange("a", b"1", None)], False)
    assert r.rows == {}


def test_a_gap_asks_for_a_resync_and_the_snapshot_reports_missed_deletes() -> None:
    r = TableReplica("kv", 1)
    r.on_snapshot(0, [("a", b"1"), ("b", b"2")], seq=10)
    changes, resync = r.on_publication(0, 12, "c", b"3")  # 11 was lost
    assert (changes, resync) == ([], True)
    assert r.needs_snapshot(0)
    # While the snapshot is on its way, publications wait in the buffer.
    r.on_publication(0, 13, "d", b"4")
    changes, again = r.on_snapshot(0, [("a", b"1"), ("c", b"3")], seq=12)
    assert not again
    assert set(changes) == {RowChange("b", b"2", None), RowChange("c", None, b"3"),
                            RowChange("d", None, b"4")}
    assert r.rows == {"a": b"1", "c": b"3", "d": b"4"}
    assert r.resyncs() == 1


def test_a_gap_inside_the_buffer_asks_for_another_snapshot() -> None:
    r = TableReplica("kv", 1)
    r.on_publication(0, 3, "x", b"1")
    r.on_publication(0, 5, "y", b"1")
    changes, again = r.on_snapshot(0, [], seq=2)
    assert changes == [RowChange("x", None, b"1")]
    assert again and r.needs_snapshot(0)


def test_heartbeat_reveals_a_lost_last_change_and_a_restart() -> None:
    r = TableReplica("kv", 1)
    r.on_snapshot(0, [], seq=3)
    assert not r.on_heartbeat(0, "inc-1", 3)
    assert r.on_heartbeat(0, "inc-1", 4)  # the change numbered 4 never arrived
    r.on_snapshot(0, [("a", b"1")], seq=4)
    assert not r.on_heartbeat(0, "inc-1", 4)
    assert r.on_heartbeat(0, "inc-2", 4)  # the shard restarted
    assert r.needs_snapshot(0)


def test_shards_are_tracked_apart() -> None:
    a0, a1 = keys_on(0, 2, 1)[0], keys_on(1, 2, 1)[0]
    r = TableReplica("kv", 2)
    r.on_snapshot(0, [(a0, b"0")], seq=1)
    assert not r.synced()
    r.on_snapshot(1, [(a1, b"1")], seq=7)
    assert r.synced()
    # A new snapshot of shard 1 that lacks a1 deletes it, and leaves shard 0's row alone.
    changes, _ = r.on_snapshot(1, [], seq=8)
    assert changes == [RowChange(a1, b"1", None)]
    assert r.rows == {a0: b"0"}
    assert r.on_publication(0, 2, a0, b"00")[0] == [RowChange(a0, b"0", b"00")]


def test_sharding_is_stable_and_spreads_keys() -> None:
    assert shard_of("anything", 1) == 0
    assert shard_of("task:42", 4) == shard_of("task:42", 4)
    counts = [len(v) for v in group_by_shard([f"key-{i}" for i in range(4000)], 4).values()]
    assert len(counts) == 4 and min(counts) > 800
    assert group_by_shard(["a", "b", "a"], 1) == {0: [0, 1, 2]}


def test_shard_addresses() -> None:
    assert shard_address("tcp://h:6379", 0) == "tcp://h:6379"
    assert shard_address("tcp://h:6379", 2) == "tcp://h:6383"
    assert shard_address("ipc:///tmp/x/gcs", 1) == "ipc:///tmp/x/gcs-1"


def test_publication_frames_round_trip() -> None:
    import pytest

    from zray.services.gcs.publication import decode_publication, encode_changes, encode_heartbeat

    frames = encode_changes("kv", [(7, 70, b"a", b"1"), (8, 71, b"b", None), (9, 72, b"c", b"")])
    assert decode_publication(frames) == ("kv", [(7, "a", b"1"), (8, "b", None), (9, "c", b"")])
    assert decode_publication(encode_heartbeat("inc", {"kv": 9}, 72)) is None
    with pytest.raises(ValueError):
        decode_publication(frames[:3])
    with pytest.raises(ValueError):
        decode_publication([frames[0], frames[1][:-3], frames[2], frames[3]])
