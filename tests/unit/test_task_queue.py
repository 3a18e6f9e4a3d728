"""ReadyQueue: FIFO per resource shape; a shape that cannot fit never blocks another."""

from __future__ import annotations

import pytest

from zray.services.raylet.task_queue import ReadyQueue

pytestmark = pytest.mark.timeout(10)

CPU = {"CPU": 1.0}
GPU = {"CPU": 1.0, "GPU": 1.0}


def test_fifo_within_a_shape_and_acquires() -> None:
    q: ReadyQueue[str] = ReadyQueue({"CPU": 2.0})
    for name in "abcd":
        q.push(name, CPU)
    assert len(q) == 4
    assert q.pop_dispatchable(10) == ["a", "b"]  # only two CPUs
    assert q.available["CPU"] == 0.0
    assert len(q) == 2
    assert q.pop_dispatchable(10) == []
    q.release(CPU)
    assert q.pop_dispatchable(10) == ["c"]
    assert q.total == {"CPU": 2.0}


def test_limit_is_respected() -> None:
    q: ReadyQueue[int] = ReadyQueue({"CPU": 8.0})
    for i in range(5):
        q.push(i, CPU)
    assert q.pop_dispatchable(2) == [0, 1]
    assert q.available["CPU"] == 6.0
    assert len(q) == 3


def test_unfit_shape_does_not_block_others() -> None:
    q: ReadyQueue[str] = ReadyQueue({"CPU": 4.0, "GPU": 1.0})
    q.push("gpu-1", GPU)
    q.push("gpu-2", GPU)
    q.push("cpu-1", CPU)
    q.push("cpu-2", CPU)
    out = q.pop_dispatchable(10)
    assert "gpu-1" in out and "gpu-2" not in out  # one GPU only
    assert "cpu-1" in out and "cpu-2" in out
    assert list(q) == ["gpu-2"]
    assert q.available == {"CPU": 1.0, "GPU": 0.0}


def test_push_front() -> None:
    q: ReadyQueue[str] = ReadyQueue({"CPU": 1.0})
    q.push("a", CPU)
    q.push("retry", CPU, front=True)
    assert q.pop_dispatchable(1) == ["retry"]


def test_pop_shape_does_not_acquire() -> None:
    q: ReadyQueue[str] = ReadyQueue({"CPU": 1.0, "GPU": 1.0})
    q.push("c1", CPU)
    q.push("g1", GPU)
    q.push("c2", CPU)
    assert q.pop_shape(CPU, 5) == ["c1", "c2"]
    assert q.available == {"CPU": 1.0, "GPU": 1.0}
    assert len(q) == 1
    assert q.pop_shape({"CPU": 1.0, "memory": 0.0}, 5) == []  # zero amounts do not change a shape
    assert list(q) == ["g1"]


def test_zero_amounts_share_a_shape() -> None:
    q: ReadyQueue[str] = ReadyQueue({"CPU": 1.0})
    q.push("a", {"CPU": 1.0, "custom": 0.0})
    q.push("b", CPU)
    assert q.pop_shape(CPU, 5) == ["a", "b"]


def test_remove_by_predicate() -> None:
    q: ReadyQueue[str] = ReadyQueue({"CPU": 1.0, "GPU": 1.0})
    for name in ("keep-1", "drop-1", "keep-2"):
        q.push(name, CPU)
    q.push("drop-2", GPU)
    removed = q.remove(lambda item: item.startswith("drop"))
    assert sorted(removed) == ["drop-1", "drop-2"]
    assert len(q) == 2
    assert list(q) == ["keep-1", "keep-2"]
    assert q.remove(lambda item: False) == []


def test_feasible_uses_totals_not_availability() -> None:
    q: ReadyQueue[str] = ReadyQueue({"CPU": 2.0, "custom": 1.0})
    q.acquire({"CPU": 2.0})
    assert q.feasible({"CPU": 2.0})
    assert q.feasible({"custom": 1.0})
    assert not q.feasible({"CPU": 3.0})
    assert not q.feasible({"GPU": 1.0})
    assert q.feasible({})


def test_zero_resource_tasks_always_dispatch() -> None:
    q: ReadyQueue[str] = ReadyQueue({"CPU": 1.0})
    q.acquire(CPU)
    q.push("free", {})
    assert q.pop_dispatchable(5) == ["free"]


def test_len_stays_consistent() -> None:
    q: ReadyQueue[int] = ReadyQueue({"CPU": 3.0, "GPU": 1.0})
    for i in range(10):
        q.push(i, GPU if i % 3 == 0 else CPU)
    taken = q.pop_dispatchable(100)
    shaped = q.pop_shape(CPU, 2)
    removed = q.remove(lambda i: i == 9)
    assert len(q) == 10 - len(taken) - len(shaped) - len(removed)
    assert len(list(q)) == len(q)
