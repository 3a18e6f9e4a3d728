"""Size-based rotation of a worker's log file.

A worker's fd 1 and 2 point at its log file (the raylet opened it), so output
from C code and crash dumps land there too. When the bytes written through
Python pass the limit, the file is renamed to `.1` (older parts shift to `.2`,
...; the oldest goes) and a fresh file takes over fd 1 and 2.
"""

from __future__ import annotations

import os
import sys
import threading

DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_BACKUPS = 3


class RotatingLog:
    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.lock = threading.Lock()
        try:
            self.size = os.path.getsize(path)
        except OSError:
            self.size = 0

    @classmethod
    def for_stdout(cls) -> RotatingLog | None:
        """The rotator of this process's log file, or None when fd 1 is not a regular file."""
        try:
            path = os.readlink("/proc/self/fd/1")
        except OSError:
            return None
        if not os.path.isfile(path):
            return None
        max_bytes = int(os.environ.get("ZRAY_WORKER_LOG_MAX_BYTES", DEFAULT_MAX_BYTES))
        backups = int(os.environ.get("ZRAY_WORKER_LOG_BACKUPS", DEFAULT_BACKUPS))
        return cls(path, max_bytes, backups)

    def wrote(self, nbytes: int) -> None:
        self.size += nbytes
        if self.size > self.max_bytes:
            with self.lock:
                if self.size > self.max_bytes:
                    self.rotate()

    def rotate(self) -> None:
        for stream in (sys.__stdout__, sys.__stderr__):
            if stream is not None:
                stream.flush()
        for i in range(self.backups - 1, 0, -1):
            src = f"{self.path}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i + 1}")
        if self.backups > 0:
            os.replace(self.path, f"{self.path}.1")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        self.size = 0
