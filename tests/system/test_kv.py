"""zray.kv on a real cluster: from the driver and from tasks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import zray
from tests.conftest import zray_cluster
from zray.common.errors import ZrayError

pytestmark = pytest.mark.timeout(90)


def test_kv_needs_init() -> None:
    assert not zray.is_initialized()  # runs before the module's cluster starts
    with pytest.raises(ZrayError, match="not initialized"):
        zray.kv.get("k")


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    with zray_cluster(num_cpus=2):
        yield


@zray.remote
def read_and_write(key: str) -> bytes | None:
    value = zray.kv.get(key)
    zray.kv.put(key + "/seen", b"by a task")
    return value


def test_put_get_delete_and_list(cluster: None) -> None:
    assert zray.kv.get("cfg/a") is None
    assert zray.kv.put("cfg/a", b"1")
    zray.kv.put(b"cfg/b", b"\x00\xff")
    zray.kv.put("other", b"x")
    assert zray.kv.get(b"cfg/a") == b"1"  # str and bytes name the same key
    assert zray.kv.get("cfg/b") == b"\x00\xff"
    assert zray.kv.list("cfg/") == [b"cfg/a", b"cfg/b"]
    assert b"other" in zray.kv.list()
    zray.kv.delete("cfg/a")
    zray.kv.delete("cfg/a")  # deleting a missing key is fine
    assert zray.kv.get("cfg/a") is None and not zray.kv.exists("cfg/a")
    assert zray.kv.list(b"cfg/") == [b"cfg/b"]


def test_overwrite_false_keeps_the_first_value(cluster: None) -> None:
    assert zray.kv.put("once", b"first", overwrite=False)
    assert not zray.kv.put("once", b"second", overwrite=False)
    assert zray.kv.get("once") == b"first"
    zray.kv.put("once", b"third")
    assert zray.kv.get("once") == b"third"


def test_tasks_share_the_store(cluster: None) -> None:
    zray.kv.put("shared", b"from the driver")
    assert zray.get(read_and_write.remote("shared")) == b"from the driver"
    assert zray.kv.get("shared/seen") == b"by a task"


def test_binary_keys_and_prefixes(cluster: None) -> None:
    keys = [b"\x00bin\x01", b"\x00bin\x02", b"\xffend"]
    for i, key in enumerate(keys):
        zray.kv.put(key, bytes([i]))
    assert zray.kv.list(b"\x00bin") == keys[:2]
    assert [zray.kv.get(k) for k in keys] == [b"\x00", b"\x01", b"\x02"]


@pytest.mark.parametrize("call, error, text", [
    (lambda: zray.kv.put("k", "not bytes"), TypeError, "values must be bytes, not str"),
    (lambda: zray.kv.put(5, b"v"), TypeError, "key must be str or bytes, not int"),
    (lambda: zray.kv.put("", b"v"), ValueError, "must not be empty"),
    (lambda: zray.kv.put("k" * 2000, b"v"), ValueError, "limit is 1024"),
    (lambda: zray.kv.put("k", b"v" * (64 * 1024 * 1024 + 1)), ValueError, "object store"),
    (lambda: zray.kv.list(3.5), TypeError, "prefix must be str or bytes"),
])
def test_bad_input_names_the_cause(cluster: None, call, error, text) -> None:  # type: ignore[no-untyped-def]
    zray.kv.put("k", b"kept")
    with pytest.raises(error, match=text):
        call()
    assert zray.kv.get("k") == b"kept"  # nothing already stored is lost
