"""Giving a burst's freed heap memory back to the operating system.

A burst of messages (ten thousand task specs, their lineage writes and
deletes) allocates and frees many small blocks. glibc keeps the freed memory
mapped for reuse, so a service's resident size would stay at the burst's
high-water mark for the rest of its life. `malloc_trim(0)` returns every
free page (also those between live blocks), and costs about a millisecond,
so services call it once a busy period has passed, not per message.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

# Messages handled since the last trim that make the next one worth its cost.
TRIM_AFTER_MESSAGES = 1_000
TRIM_INTERVAL_SECONDS = 1.0


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


class HeapTrimmer:
    """Trims when at least `after` messages were handled since the last trim."""

    def __init__(self, after: int = TRIM_AFTER_MESSAGES) -> None:
        self.after = after
        self._trim = _load_trim()
        self._handled_at_last = 0
        self.trims = 0

    def maybe_trim(self, handled: int) -> bool:
        if self._trim is None or handled - self._handled_at_last < self.after:
            return False
        self._handled_at_last = handled
        self._trim(0)
        self.trims += 1
        return True
