"""ShardStorage: LMDB tables, batched writes, sequence numbers that survive a reopen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from zray.services.gcs.storage import ShardStorage

pytestmark = pytest.mark.timeout(20)

MAP_SIZE = 1 << 26


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[ShardStorage]:
    s = ShardStorage(str(tmp_path / "shard"), map_size=MAP_SIZE)
    yield s
    s.close()


def test_write_read(storage: ShardStorage) -> None:
    changes = storage.write([("kv", b"a", b"1"), ("kv", b"b", b"2"), ("nodes", b"a", b"node")])
    assert [(c.table, c.key, c.value) for c in changes] == \
        [("kv", b"a", b"1"), ("kv", b"b", b"2"), ("nodes", b"a", b"node")]
    assert [c.seq for c in changes] == [1, 2, 3]
    assert storage.seq == 3
    assert storage.read("kv", [b"a", b"b", b"missing"]) == [b"1", b"2", None]
    assert storage.read("nodes", [b"a"]) == [b"node"]  # tables are separate


def test_overwrite_and_delete(storage: ShardStorage) -> None:
    storage.write([("kv", b"a", b"1")])
    storage.write([("kv", b"a", b"2")])
    assert storage.read("kv", [b"a"]) == [b"2"]
    changes = storage.write([("kv", b"a", None)])
    assert len(changes) == 1 and changes[0].value is None and changes[0].seq == 3
    assert storage.read("kv", [b"a"]) == [None]


def test_deleting_a_missing_key_is_not_a_change(storage: ShardStorage) -> None:
    storage.write([("kv", b"a", b"1")])
    assert storage.write([("kv", b"nothing", None)]) == []
    assert storage.seq == 1


def test_scan_prefix_and_limit(storage: ShardStorage) -> None:
    storage.write([("kv", k.encode(), k.upper().encode())
                   for k in ("app:1", "app:2", "app:3", "b", "apple", "zzz")])
    assert [k for k, _ in storage.scan("kv", b"app:")] == [b"app:1", b"app:2", b"app:3"]
    assert storage.scan("kv", b"app:", limit=2) == [(b"app:1", b"APP:1"), (b"app:2", b"APP:2")]
    assert len(storage.scan("kv")) == 6
    assert storage.scan("kv", b"zzzz") == []
    assert storage.scan("tasks") == []


def test_unknown_table(storage: ShardStorage) -> None:
    with pytest.raises(KeyError, match="unknown GCS table"):
        storage.write([("nope", b"k", b"v")])
    with pytest.raises(KeyError):
        storage.read("nope", [b"k"])
    assert storage.seq == 0


def test_failed_batch_writes_nothing(storage: ShardStorage) -> None:
    with pytest.raises(KeyError):
        storage.write([("kv", b"a", b"1"), ("nope", b"k", b"v")])
    assert storage.read("kv", [b"a"]) == [None]
    assert storage.seq == 0


def test_increment(storage: ShardStorage) -> None:
    assert [storage.increment(b"job") for _ in range(3)] == [1, 2, 3]
    assert storage.increment(b"other") == 1


def test_data_survives_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "shard")
    s = ShardStorage(path, map_size=MAP_SIZE)
    s.write([("kv", b"a", b"1"), ("tasks", b"t", b"spec")])
    s.write([("kv", b"b", b"2"), ("kv", b"a", None)])
    s.increment(b"job")
    s.increment(b"job")
    assert s.seq == 4
    s.close()

    reopened = ShardStorage(path, map_size=MAP_SIZE)
    try:
        assert reopened.seq == 4  # the sequence resumes where it stopped
        assert reopened.read("kv", [b"a", b"b"]) == [None, b"2"]
        assert reopened.read("tasks", [b"t"]) == [b"spec"]
        assert reopened.increment(b"job") == 3
        assert [c.seq for c in reopened.write([("kv", b"c", b"3")])] == [5]
    finally:
        reopened.close()


def test_flush_and_size(storage: ShardStorage) -> None:
    storage.write([("kv", b"k%d" % i, b"x" * 1000) for i in range(100)])
    storage.flush()
    assert storage.data_bytes() > 100 * 1000


@pytest.mark.parametrize("size", [0, 1, 1_900, 2_100, 10_000, 1_000_003])
def test_values_of_every_size_round_trip(storage: ShardStorage, size: int) -> None:
    value = bytes(i % 251 for i in range(size))
    storage.write([("task_events", b"batch", value)])
    assert storage.read("task_events", [b"batch"]) == [value]
    assert storage.scan("task_events") == [(b"batch", value)]
    assert storage.put_if_absent("task_events", b"batch", b"other") == (False, value, [])
    assert storage.counts()["task_events"] == 1


def test_big_values_leave_no_parts_behind(storage: ShardStorage) -> None:
    big, bigger, small = b"a" * 50_000, b"b" * 90_000, b"small"
    storage.write([("kv", b"k", big), ("kv", b"j", big)])
    storage.write([("kv", b"k", bigger)])  # replaced by more parts
    storage.write([("kv", b"j", small)])  # replaced by an inline value
    assert storage.read("kv", [b"k", b"j"]) == [bigger, small]
    storage.write([("kv", b"k", None), ("kv", b"j", None)])
    with storage.env.begin() as txn:
        assert txn.stat(storage._parts)["entries"] == 0
        assert txn.stat(storage.env.open_db(txn=txn))["overflow_pages"] == 0


def test_no_overflow_pages_so_churn_reuses_the_file(storage: ShardStorage) -> None:
    """Small rows churning among big values that come and go: the file stops
    growing once it holds the live data, because every page is reusable."""
    import random
    rng = random.Random(7)
    live: list[bytes] = []
    batches: list[bytes] = []
    sizes = []
    row = b"r" * 700
    for step in range(400):
        ops: list[tuple[str, bytes, bytes | None]] = []
        for _ in range(50):
            key = rng.randbytes(16).hex().encode()
            live.append(key)
            ops.append(("tasks", key, row))
        while len(live) > 1_500:
            ops.append(("tasks", live.pop(0), None))
        if step % 10 == 0:
            key = b"n:%06d" % step
            batches.append(key)
            ops.append(("task_events", key, b"e" * rng.randint(50_000, 300_000)))
            while len(batches) > 8:
                ops.append(("task_events", batches.pop(0), None))
        storage.write(ops)
        sizes.append(storage.data_bytes())
    with storage.env.begin() as txn:
        for name in ("tasks", "task_events"):
            assert txn.stat(storage.db(name))["overflow_pages"] == 0
    # the live data is constant after the first 80 steps (LMDB's allocation is
    # deterministic for one sequence of transactions, so this never flakes)
    assert sizes[-1] <= sizes[200] * 1.10, (sizes[200], sizes[-1])
