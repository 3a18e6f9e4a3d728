"""Object layout shared by inline payloads and store files.

An object is one contiguous buffer: a header, a segment table, then the
segments aligned to 64 bytes. Segment 0 is the pickle stream (protocol 5);
the others are its out-of-band buffers, so a numpy array read back from a
mapped store file points straight into shared memory (zero copy). Arrow
tables and record batches are written in Arrow IPC stream format instead.
"""

from __future__ import annotations

import pickle
import struct
import threading
from collections.abc import Callable
from typing import Any

import cloudpickle

MAGIC = b"ZOB1"
_HEADER = struct.Struct("<4sBxxxI")
_SEGMENT = struct.Struct("<QQ")
ALIGN = 64

KIND_PICKLE = 0
KIND_ARROW = 1
KIND_ERROR = 2

# Values of these types pickle the same with the C pickler, which is faster.
_PLAIN_TYPES = frozenset({int, float, str, bytes, bool, type(None), complex})

_local = threading.local()


def _align(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


def note_contained_ref(object_id: Any) -> None:
    """Called by ObjectRef.__reduce__: records refs nested inside a serialized value."""
    refs = getattr(_local, "refs", None)
    if refs is not None:
        refs.append(object_id)


class SerializedObject:
    """A value ready to be written inline or into a store file."""

    __slots__ = ("kind", "segments", "contained_refs", "_offsets", "total_size")

    def __init__(self, kind: int, segments: list[Any], contained_refs: list[Any]) -> None:
        self.kind = kind
        self.segments = [memoryview(s).cast("B") for s in segments]
        self.contained_refs = contained_refs
        offset = _align(_HEADER.size + _SEGMENT.size * len(self.segments))
        self._offsets: list[int] = []
        for seg in self.segments:
            self._offsets.append(offset)
            offset = _align(offset + seg.nbytes)
        self.total_size = offset

    def write_into(self, target: memoryview) -> None:
        _HEADER.pack_into(target, 0, MAGIC, self.kind, len(self.segments))
        for i, (seg, off) in enumerate(zip(self.segments, self._offsets, strict=True)):
            _SEGMENT.pack_into(target, _HEADER.size + i * _SEGMENT.size, off, seg.nbytes)
            target[off:off + seg.nbytes] = seg

    def pieces(self) -> list[tuple[int, Any]]:
        """(offset, bytes) to write, header first; gaps between them are zeros."""
        header = bytearray(_HEADER.size + _SEGMENT.size * len(self.segments))
        _HEADER.pack_into(header, 0, MAGIC, self.kind, len(self.segments))
        for i, (seg, off) in enumerate(zip(self.segments, self._offsets, strict=True)):
            _SEGMENT.pack_into(header, _HEADER.size + i * _SEGMENT.size, off, seg.nbytes)
        return [(0, header), *zip(self._offsets, self.segments, strict=True)]

    def to_bytes(self) -> bytes:
        out = bytearray(self.total_size)
        self.write_into(memoryview(out))
        return bytes(out)


def serialize(value: Any) -> SerializedObject:
    if type(value) in _PLAIN_TYPES:
        return SerializedObject(KIND_PICKLE, [pickle.dumps(value, protocol=5)], [])
    if type(value).__module__.startswith("pyarrow"):
        arrow = _serialize_arrow(value)
        if arrow is not None:
            return arrow
    buffers: list[pickle.PickleBuffer] = []
    refs: list[Any] = []
    _local.refs = refs
    try:
        data = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    finally:
        _local.refs = None
    segments: list[Any] = [data]
    for b in buffers:
        segments.append(b.raw())
    return SerializedObject(KIND_PICKLE, segments, refs)


def serialize_error(error: BaseException) -> SerializedObject:
    try:
        data = cloudpickle.dumps(error, protocol=5)
    except Exception as exc:  # an unpicklable exception still reports its text
        from zray.common.errors import RaySystemError

        data = cloudpickle.dumps(RaySystemError(f"unpicklable error {error!r}: {exc}"))
    return SerializedObject(KIND_ERROR, [data], [])


def _serialize_arrow(value: Any) -> SerializedObject | None:
    import pyarrow as pa

    if not isinstance(value, (pa.Table, pa.RecordBatch)):
        return None
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, value.schema) as writer:
        writer.write(value)
    tag = b"table" if isinstance(value, pa.Table) else b"batch"
    return SerializedObject(KIND_ARROW, [tag, sink.getvalue()], [])


def read_kind(buf: Any) -> int:
    magic, kind, _ = _HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise ValueError("not a zray object (bad magic)")
    return int(kind)


def _segments(buf: memoryview) -> tuple[int, list[memoryview]]:
    magic, kind, count = _HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise ValueError("not a zray object (bad magic)")
    segs = []
    for i in range(count):
        off, length = _SEGMENT.unpack_from(buf, _HEADER.size + i * _SEGMENT.size)
        segs.append(buf[off:off + length])
    return int(kind), segs


def deserialize(buf: Any, ref_hook: Callable[[], None] | None = None) -> tuple[int, Any]:
    """(kind, value) of an object; zero-copy over `buf` for out-of-band buffers."""
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    kind, segs = _segments(mv)
    if kind == KIND_ARROW:
        import pyarrow as pa

        reader = pa.ipc.open_stream(pa.py_buffer(segs[1]))
        if bytes(segs[0]) == b"table":
            return kind, reader.read_all()
        return kind, reader.read_next_batch()
    if len(segs) == 1:
        return kind, pickle.loads(segs[0])
    return kind, pickle.loads(segs[0], buffers=segs[1:])
