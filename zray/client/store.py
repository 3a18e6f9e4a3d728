"""Reading and writing object files of the node's shared-memory store."""

from __future__ import annotations

import mmap
import os
from typing import Any

from zray.common import serialization


def write_object(path: str, ser: serialization.SerializedObject) -> None:
    """Write once into a new file; readers map it after the raylet seals it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, ser.total_size)
        with mmap.mmap(fd, ser.total_size) as mm:
            view = memoryview(mm)
            ser.write_into(view)
            view.release()
    finally:
        os.close(fd)


def map_object(path: str, size: int) -> memoryview:
    """A read-only view of an object file; the mapping lives as long as the view."""
    fd = os.open(path, os.O_RDONLY)
    try:
        mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    return memoryview(mm)


def read_object(path: str, size: int) -> tuple[int, Any]:
    return serialization.deserialize(map_object(path, size))
