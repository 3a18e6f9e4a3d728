"""Lineage: task specs are kept exactly while they can still be needed."""

from __future__ import annotations

from zray.services.raylet.lineage import Lineage


def tid(n: int) -> str:
    return f"{n:032x}"


def oid(task: int, index: int = 1) -> str:
    return tid(task) + f"{index:08x}"


def test_spec_released_when_all_returns_are_freed() -> None:
    lin = Lineage()
    lin.submitted(tid(1), 2, [])
    assert lin.object_freed(oid(1, 1)) == []
    assert lin.object_freed(oid(1, 2)) == [tid(1)]
    assert len(lin) == 0
    assert lin.object_freed(oid(1, 2)) == []  # unknown by now: nothing to do


def test_producer_kept_while_a_consumer_spec_is_kept() -> None:
    lin = Lineage()
    lin.submitted(tid(1), 1, [])
    lin.submitted(tid(2), 1, [oid(1)])
    # Task 1's output is dropped, but task 2 could need it rebuilt: keep task 1.
    assert lin.object_freed(oid(1)) == []
    assert tid(1) in lin
    # Dropping task 2's output releases both, consumer first.
    assert lin.object_freed(oid(2)) == [tid(2), tid(1)]
    assert len(lin) == 0


def test_a_chain_is_released_from_its_end() -> None:
    lin = Lineage()
    for n in range(1, 101):
        lin.submitted(tid(n), 1, [oid(n - 1)] if n > 1 else [])
    for n in range(1, 100):
        assert lin.object_freed(oid(n)) == []
    released = lin.object_freed(oid(100))
    assert released == [tid(n) for n in range(100, 0, -1)]
    assert len(lin) == 0


def test_puts_and_unknown_producers_are_not_tracked() -> None:
    lin = Lineage()
    lin.submitted(tid(5), 1, [oid(99), tid(7) + "80000001"])
    assert lin.object_freed(oid(5)) == [tid(5)]


def test_resubmission_does_not_double_count() -> None:
    lin = Lineage()
    lin.submitted(tid(1), 1, [])
    lin.submitted(tid(2), 1, [oid(1)])
    lin.submitted(tid(2), 1, [oid(1)])  # a retry
    lin.object_freed(oid(1))
    assert lin.object_freed(oid(2)) == [tid(2), tid(1)]
