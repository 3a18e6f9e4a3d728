"""The example program of the core issue, piece by piece."""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import zray
from tests.conftest import Gate

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("cluster")]


@zray.remote
def square(x: int) -> int:
    return x * x


@zray.remote(num_returns=2)
def divide(a: int, b: int) -> tuple[int, int]:
    return a // b, a % b


@zray.remote
def describe_array(arr: np.ndarray) -> tuple[float, bool, tuple[int, ...]]:
    return float(arr.sum()), bool(arr.flags.writeable), arr.shape


def test_a_thousand_squares() -> None:
    refs = [square.remote(i) for i in range(1000)]
    assert all(isinstance(r, zray.ObjectRef) for r in refs)
    assert len(set(refs)) == 1000
    assert zray.get(refs, timeout=120) == [i * i for i in range(1000)]


def test_num_returns_two() -> None:
    quotient, remainder = divide.remote(17, 5)
    assert isinstance(quotient, zray.ObjectRef) and isinstance(remainder, zray.ObjectRef)
    assert zray.get(remainder, timeout=30) == 2
    assert zray.get([quotient, remainder], timeout=30) == [3, 2]


def _mapped_files_containing(address: int) -> list[str]:
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            low, high = (int(x, 16) for x in fields[0].split("-"))
            if low <= address < high:
                return fields[5:]
    return []


def _base_chain(arr: np.ndarray) -> list[Any]:
    chain: list[Any] = []
    obj: Any = arr
    for _ in range(20):
        obj = obj.obj if isinstance(obj, memoryview) else getattr(obj, "base", None)
        if obj is None:
            break
        chain.append(obj)
    return chain


def test_large_put_is_read_back_zero_copy() -> None:
    arr = np.arange(10_000_000, dtype=np.float64)  # 80 MB
    ref = zray.put(arr)
    out = zray.get(ref, timeout=60)
    assert out.shape == arr.shape and out.dtype == arr.dtype
    assert np.array_equal(out, arr)
    assert out.flags.writeable is False
    assert out.flags.owndata is False
    with pytest.raises(ValueError):
        out[0] = 1.0
    # The array's memory belongs to a mapping of the shared-memory store, not to the process.
    chain = _base_chain(out)
    assert any(isinstance(b, (mmap.mmap, memoryview)) for b in chain), chain
    mapped = _mapped_files_containing(out.ctypes.data)
    assert mapped and mapped[0].startswith("/dev/shm/"), mapped
    # A second get maps the same object again; still equal, still read-only.
    again = zray.get(ref, timeout=60)
    assert again.flags.writeable is False and again[-1] == arr[-1]


def test_large_array_as_task_argument() -> None:
    arr = np.ones((1000, 1000))  # 8 MB, far above the inline limit
    total, writeable, shape = zray.get(describe_array.remote(arr), timeout=60)
    assert (total, shape) == (1_000_000.0, (1000, 1000))
    assert writeable is False  # the task sees the store's read-only mapping too
    ref = zray.put(arr)
    assert zray.get(describe_array.remote(ref), timeout=60)[0] == 1_000_000.0


def test_large_task_result_is_zero_copy() -> None:
    @zray.remote
    def make(n: int) -> np.ndarray:
        return np.full(n, 7, dtype=np.int32)

    out = zray.get(make.remote(5_000_000), timeout=60)
    assert out.shape == (5_000_000,) and int(out[123]) == 7
    assert out.flags.writeable is False
    assert _mapped_files_containing(out.ctypes.data)[0].startswith("/dev/shm/")


@zray.remote
def square_on(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def test_wait_with_num_returns_and_timeout(gate: Gate) -> None:
    fast = [square_on.remote(i) for i in range(3)]
    slow, started = gate.blocking_task()
    refs = [slow, *fast]

    ready, pending = zray.wait(refs, num_returns=3, timeout=30)
    if sorted(ready, key=refs.index) != fast:
        gate.open()
        slow_pid = int(Path(started).read_text()) if Path(started).exists() else None
        ran_on = [zray.get(f, timeout=30)[1] for f in fast]
        pytest.fail(f"only {len(ready)} of the 3 quick tasks finished while the blocking task "
                    f"(worker pid {slow_pid}) ran; the quick ones ran on pids {ran_on}")
    assert pending == [slow]

    ready, pending = zray.wait(refs, num_returns=4, timeout=0.5)
    assert slow in pending and slow not in ready
    assert len(ready) + len(pending) == 4

    ready, pending = zray.wait([slow], num_returns=1, timeout=0.2)
    assert (ready, pending) == ([], [slow])

    gate.open()
    ready, pending = zray.wait(refs, num_returns=4, timeout=60)
    assert set(ready) == set(refs) and pending == []
    assert zray.get(slow, timeout=30) == "released"


def test_wait_returns_at_most_num_returns() -> None:
    refs = [square.remote(i) for i in range(6)]
    zray.get(refs, timeout=60)
    ready, pending = zray.wait(refs, num_returns=2, timeout=10)
    assert len(ready) == 2 and len(pending) == 4
    assert set(ready) | set(pending) == set(refs)


def test_wait_argument_errors() -> None:
    ref = square.remote(2)
    with pytest.raises(ValueError):
        zray.wait([ref, ref])
    with pytest.raises(ValueError):
        zray.wait([ref], num_returns=2)
    with pytest.raises(TypeError):
        zray.wait(ref)  # type: ignore[arg-type]
    assert zray.get(ref, timeout=30) == 4
