"""Spilled objects on local disk: one file per object in the spill folder.

The raylet copies a sealed object file from the store here and unlinks it
from the store; a restore copies it back. Copies run through the kernel
(sendfile via shutil.copyfile), no Python buffers."""

from __future__ import annotations

import os
import shutil

from zray.common.errors import ObjectStoreFullError


class SpillError(ObjectStoreFullError):
    """The spill folder cannot take the object (full disk, no permission)."""


class SpillDir:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.used = 0
        self._sizes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._sizes)

    def path(self, object_id: str) -> str:
        return os.path.join(self.directory, object_id)

    def write(self, object_id: str, source: str, size: int) -> None:
        target = self.path(object_id)
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            shutil.copyfile(source, target)
        except OSError as exc:
            _unlink(target)
            raise SpillError(self._problem(size, exc)) from None
        self._sizes[object_id] = size
        self.used += size

    def restore(self, object_id: str, target: str) -> None:
        """Copy back to the store; the spilled file stays until `delete`."""
        try:
            shutil.copyfile(self.path(object_id), target)
        except OSError:
            _unlink(target)
            raise

    def delete(self, object_id: str) -> None:
        size = self._sizes.pop(object_id, None)
        if size is not None:
            self.used -= size
            _unlink(self.path(object_id))

    def destroy(self) -> None:
        for object_id in list(self._sizes):
            self.delete(object_id)

    def _problem(self, size: int, exc: OSError) -> str:
        try:
            free = f"{shutil.disk_usage(self.directory).free / 1024**2:.1f} MiB free"
        except OSError:
            free = "free space unknown"
        return (f"cannot write {size / 1024**2:.1f} MiB to spill folder {self.directory} "
                f"({free}, {self.used / 1024**2:.1f} MiB spilled there): "
                f"{exc.strerror or exc}")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
