"""Typed fixed-size ids.

A TaskID is derived from the submitting task's id and its submission counter,
and an ObjectID is the creating task's id plus the return index, so that
re-executing a task recreates exactly the same object ids (lineage replay).
"""

from __future__ import annotations

import hashlib
import os
import struct
from typing import ClassVar, TypeVar

_T = TypeVar("_T", bound="BaseID")

PUT_FLAG = 0x8000_0000


class BaseID:
    """Immutable bytes id with a fixed size; hashable and ordered by bytes."""

    SIZE: ClassVar[int] = 16
    __slots__ = ("_b",)

    def __init__(self, b: bytes) -> None:
        if len(b) != self.SIZE:
            raise ValueError(f"{type(self).__name__} needs {self.SIZE} bytes, got {len(b)}")
        self._b = bytes(b)

    @classmethod
    def from_hex(cls: type[_T], h: str) -> _T:
        return cls(bytes.fromhex(h))

    @classmethod
    def from_random(cls: type[_T]) -> _T:
        return cls(os.urandom(cls.SIZE))

    @classmethod
    def nil(cls: type[_T]) -> _T:
        return cls(b"\xff" * cls.SIZE)

    def binary(self) -> bytes:
        return self._b

    def hex(self) -> str:
        return self._b.hex()

    def is_nil(self) -> bool:
        return self._b == b"\xff" * self.SIZE

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._b == self._b  # type: ignore[attr-defined]

    def __lt__(self, other: BaseID) -> bool:
        return self._b < other._b

    def __hash__(self) -> int:
        return hash(self._b)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hex()})"

    def __reduce__(self) -> tuple[type, tuple[bytes]]:
        return (type(self), (self._b,))


class JobID(BaseID):
    SIZE = 4

    @classmethod
    def from_int(cls, n: int) -> JobID:
        return cls(struct.pack(">I", n))

    def to_int(self) -> int:
        return int(struct.unpack(">I", self._b)[0])


class NodeID(BaseID):
    SIZE = 16


class WorkerID(BaseID):
    SIZE = 16


class ActorID(BaseID):
    """Job id (4 bytes) plus 8 bytes derived from the creating task."""

    SIZE = 12

    @classmethod
    def of(cls, job: JobID, creating_task: TaskID) -> ActorID:
        digest = hashlib.blake2b(creating_task.binary(), digest_size=8).digest()
        return cls(job.binary() + digest)

    def job_id(self) -> JobID:
        return JobID(self._b[:4])


class TaskID(BaseID):
    """12 bytes derived from (parent task, counter) plus the 4-byte job id."""

    SIZE = 16

    @classmethod
    def for_driver(cls, job: JobID) -> TaskID:
        return cls(b"\x00" * 12 + job.binary())

    @classmethod
    def for_child(cls, parent: TaskID, counter: int) -> TaskID:
        digest = hashlib.blake2b(parent.binary() + struct.pack(">Q", counter), digest_size=12).digest()
        return cls(digest + parent.binary()[12:])

    def job_id(self) -> JobID:
        return JobID(self._b[12:])


class ObjectID(BaseID):
    """The creating task's id plus a 4-byte index; puts have the high bit set."""

    SIZE = 20

    @classmethod
    def for_return(cls, task: TaskID, index: int) -> ObjectID:
        if not 1 <= index < PUT_FLAG:
            raise ValueError(f"return index out of range: {index}")
        return cls(task.binary() + struct.pack(">I", index))

    @classmethod
    def for_put(cls, task: TaskID, put_index: int) -> ObjectID:
        if not 1 <= put_index < PUT_FLAG:
            raise ValueError(f"put index out of range: {put_index}")
        return cls(task.binary() + struct.pack(">I", put_index | PUT_FLAG))

    def task_id(self) -> TaskID:
        return TaskID(self._b[:16])

    def index(self) -> int:
        return int(struct.unpack(">I", self._b[16:])[0]) & ~PUT_FLAG

    def is_put(self) -> bool:
        return bool(struct.unpack(">I", self._b[16:])[0] & PUT_FLAG)


def return_object_hex(task_hex: str, index: int) -> str:
    """Hex of ObjectID.for_return(task, index), without building the ids."""
    return f"{task_hex}{index:08x}"
