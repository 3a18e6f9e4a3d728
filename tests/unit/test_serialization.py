"""Object layout: pickle 5 with out-of-band buffers (zero copy), Arrow IPC, errors."""

from __future__ import annotations

import pickle
import threading
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from zray.client.object_ref import ObjectRef
from zray.common import serialization as ser
from zray.common.errors import RaySystemError

pytestmark = pytest.mark.timeout(20)


def into_buffer(obj: ser.SerializedObject) -> bytearray:
    buf = bytearray(obj.total_size)
    obj.write_into(memoryview(buf))
    return buf


@pytest.mark.parametrize("value", [
    0, -5, 2**80, 1.5, "text", "ünïcode", b"\x00bytes", None, True, 3 + 4j,
    [1, "a", None], {"k": (1, 2)}, {1, 2, 3}, (), list(range(1000)),
])
def test_plain_values_round_trip(value: object) -> None:
    obj = ser.serialize(value)
    assert obj.kind == ser.KIND_PICKLE
    kind, out = ser.deserialize(obj.to_bytes())
    assert kind == ser.KIND_PICKLE
    assert out == value


def test_closures_and_lambdas_round_trip() -> None:
    factor = 3
    kind, fn = ser.deserialize(ser.serialize(lambda x: x * factor).to_bytes())
    assert fn(2) == 6


def test_layout_is_aligned() -> None:
    obj = ser.serialize(np.arange(1001, dtype=np.int8))
    assert obj.total_size % ser.ALIGN == 0
    data = obj.to_bytes()
    assert len(data) == obj.total_size
    assert data[:4] == ser.MAGIC
    assert ser.read_kind(data) == ser.KIND_PICKLE


def test_numpy_is_out_of_band_and_zero_copy() -> None:
    arr = np.arange(200_000, dtype=np.float64)
    obj = ser.serialize(arr)
    assert len(obj.segments) == 2  # the pickle stream and the array's buffer
    assert obj.segments[1].nbytes == arr.nbytes
    buf = into_buffer(obj)
    kind, out = ser.deserialize(memoryview(buf))
    assert np.array_equal(out, arr)
    # The array points into `buf`: no copy was made, so a write to buf shows through.
    assert np.shares_memory(out, np.frombuffer(buf, dtype=np.uint8))
    offset = out.ctypes.data - np.frombuffer(buf, dtype=np.uint8).ctypes.data
    assert offset % ser.ALIGN == 0
    buf[offset:offset + 8] = np.float64(-1.0).tobytes()
    assert out[0] == -1.0


def test_numpy_from_read_only_buffer_is_read_only() -> None:
    data = ser.serialize(np.ones((100, 100))).to_bytes()
    _, out = ser.deserialize(data)
    assert out.flags.writeable is False
    assert out.shape == (100, 100)
    assert np.shares_memory(out, np.frombuffer(data, dtype=np.uint8))


def test_several_arrays_in_one_value() -> None:
    value: dict[str, Any] = {"a": np.zeros(10_000), "b": [np.ones(5_000, dtype=np.int32)], "c": "meta"}
    obj = ser.serialize(value)
    assert len(obj.segments) == 3
    _, out = ser.deserialize(obj.to_bytes())
    assert np.array_equal(out["a"], value["a"]) and np.array_equal(out["b"][0], value["b"][0])
    assert out["c"] == "meta"


def test_arrow_table_round_trip_zero_copy() -> None:
    table = pa.table({"x": np.arange(10_000, dtype=np.int64), "s": [str(i) for i in range(10_000)]})
    obj = ser.serialize(table)
    assert obj.kind == ser.KIND_ARROW
    buf = into_buffer(obj)
    kind, out = ser.deserialize(memoryview(buf))
    assert kind == ser.KIND_ARROW
    assert isinstance(out, pa.Table)
    assert out.equals(table)
    base = np.frombuffer(buf, dtype=np.uint8).ctypes.data
    column_data = out.column("x").chunks[0].buffers()[1]
    assert base <= column_data.address < base + len(buf)


def test_arrow_record_batch_round_trip() -> None:
    batch = pa.record_batch({"v": [1.0, 2.0, None]})
    kind, out = ser.deserialize(ser.serialize(batch).to_bytes())
    assert kind == ser.KIND_ARROW
    assert isinstance(out, pa.RecordBatch)
    assert out.equals(batch)


def test_other_arrow_values_are_pickled() -> None:
    arr = pa.array([1, 2, 3])
    obj = ser.serialize(arr)
    assert obj.kind == ser.KIND_PICKLE
    assert ser.deserialize(obj.to_bytes())[1].equals(arr)


def test_error_round_trip() -> None:
    obj = ser.serialize_error(KeyError("missing"))
    assert obj.kind == ser.KIND_ERROR
    kind, err = ser.deserialize(obj.to_bytes())
    assert kind == ser.KIND_ERROR
    assert isinstance(err, KeyError) and err.args == ("missing",)


def test_unpicklable_error_still_reports_its_text() -> None:
    class Locked(Exception):
        def __init__(self) -> None:
            super().__init__("holding a lock")
            self.lock = threading.Lock()

    kind, err = ser.deserialize(ser.serialize_error(Locked()).to_bytes())
    assert kind == ser.KIND_ERROR
    assert isinstance(err, RaySystemError)
    assert "holding a lock" in str(err)


def test_unpicklable_value_raises() -> None:
    with pytest.raises((TypeError, pickle.PicklingError)):
        ser.serialize(threading.Lock())


@pytest.mark.parametrize("data", [b"NOPE" + bytes(60), bytes(64)])
def test_bad_magic(data: bytes) -> None:
    with pytest.raises(ValueError, match="magic"):
        ser.deserialize(data)
    with pytest.raises(ValueError, match="magic"):
        ser.read_kind(data)


def test_contained_refs_are_recorded() -> None:
    a, b = ObjectRef("aa" * 20), ObjectRef("bb" * 20)
    obj = ser.serialize({"refs": [a, b], "n": 1})
    assert sorted(obj.contained_refs) == ["aa" * 20, "bb" * 20]
    _, out = ser.deserialize(obj.to_bytes())
    assert out["refs"] == [a, b]
    assert all(isinstance(r, ObjectRef) for r in out["refs"])
    assert ser.serialize([1, 2]).contained_refs == []
