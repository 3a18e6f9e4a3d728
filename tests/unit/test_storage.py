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
