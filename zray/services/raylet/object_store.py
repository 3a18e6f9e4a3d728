"""The node's shared-memory store: one file per object under a private
folder (on /dev/shm by default), written once by its producer, then mapped
read-only by readers. The raylet only reserves capacity and frees files."""

from __future__ import annotations

import logging
import os
import shutil

import psutil

from zray.common.errors import ObjectStoreFullError

log = logging.getLogger(__name__)

GiB = 1024**3


# A store folder with less free space than this makes a store too small for
# real work (docker's default /dev/shm is 64 MiB).
SMALL_SHM = 512 * 1024**2


def default_capacity(directory: str) -> int:
    """30% of RAM, capped by 90% of the free space of the store's file system."""
    ram = psutil.virtual_memory().total
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        free = ram
    return int(min(0.3 * ram, 0.9 * free))


def check_shm(directory: str, capacity: int, explicit: bool = True) -> str | None:
    """A warning when the store's file system is too small: for the capacity
    asked for (`explicit`), or for real work at all."""
    try:
        free = shutil.disk_usage(directory).free
    except OSError as exc:
        return f"object store folder {directory} is not usable: {exc}"
    fix = (f"enlarge it (docker run --shm-size=4g; or mount -o remount,size=4g {directory}) "
           f"or put the store on a larger tmpfs with --store-dir")
    if explicit and free < capacity:
        return (f"object store capacity {capacity / GiB:.2f} GiB exceeds the {free / GiB:.2f} GiB "
                f"free in {directory}; puts will fail early. Lower --object-store-memory or "
                f"{fix}.")
    if free < SMALL_SHM:
        return (f"{directory} has only {free / 1024**2:.0f} MiB free, so the object store is "
                f"limited to {capacity / 1024**2:.0f} MiB and large objects will spill to disk "
                f"or fail; {fix}.")
    return None


def _is_object_file(name: str) -> bool:
    """An object's file (its id: 40 hex digits), or one being written (".tmp-" suffix)."""
    base = name.split(".tmp-", 1)[0]
    return len(base) == 40 and all(c in "0123456789abcdef" for c in base)


class SharedMemoryStore:
    def __init__(self, directory: str, capacity: int) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.directory = directory
        self.capacity = capacity
        self.used = 0
        self._sizes: dict[str, int] = {}
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """Object files a killed raylet left in this folder (a supervisor restarts
        a node's raylet on the same folder): this store does not know them, they
        hold memory, and a rerun of their task must be able to write them anew."""
        removed = 0
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if _is_object_file(entry.name) and entry.is_file(follow_symlinks=False):
                    try:
                        os.unlink(entry.path)
                        removed += 1
                    except FileNotFoundError:
                        pass
        if removed:
            log.info("object store %s: removed %d object files left by a previous raylet",
                     self.directory, removed)

    def path(self, object_id: str) -> str:
        return os.path.join(self.directory, object_id)

    def __contains__(self, object_id: str) -> bool:
        return object_id in self._sizes

    def __len__(self) -> int:
        return len(self._sizes)

    def reserve(self, object_id: str, size: int) -> str:
        if object_id in self._sizes:
            return self.path(object_id)
        if self.used + size > self.capacity:
            raise ObjectStoreFullError(
                f"object store full: {self.used / GiB:.2f} of {self.capacity / GiB:.2f} GiB in use "
                f"by {len(self._sizes)} objects, cannot fit {size / GiB:.3f} GiB more; "
                f"raise --object-store-memory or drop references to large objects")
        self._sizes[object_id] = size
        self.used += size
        return self.path(object_id)

    def free(self, object_id: str) -> None:
        size = self._sizes.pop(object_id, None)
        if size is None:
            return
        self.used -= size
        try:
            os.unlink(self.path(object_id))
        except FileNotFoundError:
            pass

    def destroy(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self._sizes.clear()
        self.used = 0
