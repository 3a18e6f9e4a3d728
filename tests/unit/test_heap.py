"""HeapTrimmer: trims only after enough messages, and gives freed pages back."""

from __future__ import annotations

import pytest

from zray.common.heap import HeapTrimmer

pytestmark = pytest.mark.timeout(20)


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0])


def test_trims_only_after_enough_messages() -> None:
    trimmer = HeapTrimmer(after=100)
    assert not trimmer.maybe_trim(99)
    assert trimmer.maybe_trim(100)
    assert not trimmer.maybe_trim(150)  # counted from the last trim
    assert trimmer.maybe_trim(200)
    assert trimmer.trims == 2


def test_a_trim_returns_freed_fragmented_memory() -> None:
    trimmer = HeapTrimmer(after=1)
    # Many small blocks with every other one kept: freed memory lies between
    # live blocks, where only a trim (madvise) gives it back.
    blocks = [bytearray(600) for _ in range(200_000)]
    keep = blocks[::50]
    del blocks
    before = _rss_kb()
    assert trimmer.maybe_trim(1)
    assert _rss_kb() < before - 20_000, "a trim gave back less than 20 MB of ~120 MB freed"
    del keep
