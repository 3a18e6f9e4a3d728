"""Reading and writing object files of the node's shared-memory store.

Writes use pwrite: on tmpfs it runs about twice as fast as copying into a
fresh mapping, which takes a page fault per page. Reads map the file
read-only, so arrays come back without a copy; recent mappings are kept, so a
worker that gets the same large argument again does not fault its pages in
again. A kept mapping is dropped once its file is unlinked (the object was
freed), so the cache never holds on to freed memory past the next read.
"""

from __future__ import annotations

import mmap
import os
import queue
import threading
from collections import OrderedDict
from typing import Any

from zray.common import serialization

WRITE_CHUNK = 64 << 20
MAX_CACHED = 8


def write_object(path: str, ser: serialization.SerializedObject) -> None:
    """Write once into a new file; readers map it after the raylet seals it.

    A file already there is an earlier attempt's (a task rerun on this node
    after its worker died, or a lineage replay of an object this store still
    has): the new bytes go to a file of their own, which then replaces it in
    one rename, so a reader maps either whole file, never a half-written one."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        partial = f"{path}.tmp-{os.getpid()}"
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write(fd, ser)
        finally:
            os.close(fd)
        os.rename(partial, path)
        return
    try:
        _write(fd, ser)
    finally:
        os.close(fd)


def _write(fd: int, ser: serialization.SerializedObject) -> None:
    os.ftruncate(fd, ser.total_size)
    for offset, data in ser.pieces():
        view = memoryview(data).cast("B")
        done = 0
        while done < view.nbytes:
            done += os.pwrite(fd, view[done:done + WRITE_CHUNK], offset + done)


class _Mapping:
    __slots__ = ("fd", "view")

    def __init__(self, fd: int, view: memoryview) -> None:
        self.fd = fd
        self.view = view

    def unlinked(self) -> bool:
        try:
            return os.fstat(self.fd).st_nlink == 0
        except OSError:
            return True

    def close(self) -> None:
        os.close(self.fd)


_cache: OrderedDict[str, _Mapping] = OrderedDict()
_lock = threading.Lock()


def map_object(path: str, size: int) -> memoryview:
    """A read-only view of an object file; the mapping lives as long as the view."""
    with _lock:
        _drop_freed()
        hit = _cache.get(path)
        if hit is not None:
            _cache.move_to_end(path)
            return hit.view
        fd = os.open(path, os.O_RDONLY)
        try:
            view = memoryview(mmap.mmap(fd, size, access=mmap.ACCESS_READ))
        except BaseException:
            os.close(fd)
            raise
        _cache[path] = _Mapping(fd, view)
        while len(_cache) > MAX_CACHED:
            _unmap_later(_cache.popitem(last=False)[1])
        return view


def _drop_freed() -> None:
    for key in [k for k, m in _cache.items() if m.unlinked()]:
        _unmap_later(_cache.pop(key))


_doomed: queue.SimpleQueue[_Mapping] = queue.SimpleQueue()
_reaper: threading.Thread | None = None


def _unmap_later(mapping: _Mapping) -> None:
    """Unmapping a large object frees its pages, which takes milliseconds per
    100 MB: a background thread does it (munmap runs without the GIL), so the
    read that noticed the object was freed does not wait for it."""
    global _reaper
    if _reaper is None:
        _reaper = threading.Thread(target=_reap, name="zray-unmap", daemon=True)
        _reaper.start()
    _doomed.put(mapping)


def _reap() -> None:
    while True:
        mapping = _doomed.get()
        mapping.close()
        del mapping  # the last reference to the view: the pages go here


def read_object(path: str, size: int) -> tuple[int, Any]:
    return serialization.deserialize(map_object(path, size))
