"""Spill choice and the full-store message; object lifetime rules of the table."""

from __future__ import annotations

from zray.services.raylet.memory_policy import Candidate, StoreUse, full_message, spill_victims
from zray.services.raylet.object_table import ObjectTable

MiB = 1024**2


def test_victims_are_least_recently_used_first_up_to_the_batch() -> None:
    cands = [Candidate("new", 10, 3.0), Candidate("old", 10, 1.0), Candidate("mid", 10, 2.0)]
    assert spill_victims(cands, need=5, batch=0) == ["old"]
    assert spill_victims(cands, need=5, batch=15) == ["old", "mid"]


def test_no_victims_when_spilling_all_would_not_make_room() -> None:
    assert spill_victims([Candidate("a", 10, 1.0)], need=11, batch=0) == []
    assert spill_victims([Candidate("a", 10, 1.0)], need=0, batch=100) == []


def test_full_message_names_holders_pins_and_fix() -> None:
    use = StoreUse(capacity=100 * MiB, used=95 * MiB, pinned_by_tasks=40 * MiB, pinning_tasks=1,
                   held={"driver pid 7": (2, 50 * MiB)}, nested=0, unsealed=5 * MiB, spillable=0)
    text = full_message(20 * MiB, "ab" * 20, 2.0, use, "spill folder /x is full")
    assert text.startswith("object store full: cannot fit 20.0 MiB")
    assert "driver pid 7: 2 objects 50.0 MiB" in text and "arguments of 1 running task" in text
    assert "spilling failed: spill folder /x is full" in text and "--spill-dir" in text
    assert "larger than the whole store" in full_message(200 * MiB, "c", 0.0, use, None)


def test_object_lives_while_held_pinned_or_nested() -> None:
    table = ObjectTable()
    outer = table.seal("outer", 1, b"", False, False, owner=b"driver", contains=["inner"]).obj
    inner = table.seal("inner", 1, b"", True, False, owner=b"driver").obj
    table.hold(inner, b"worker")
    table.drop("inner", b"driver")
    assert not table.freeable(inner)  # the worker borrows it
    table.drop("inner", b"worker")
    assert not table.freeable(inner)  # nested in outer
    table.pin("inner")
    table.drop("outer", b"driver")
    assert table.freeable(outer)
    assert table.remove(outer) == [inner]
    assert not table.freeable(inner)  # a pending task nests it
    table.unpin("inner")
    assert table.freeable(inner)


def test_dead_holder_drops_all_its_holds() -> None:
    table = ObjectTable()
    obj = table.seal("a", 1, b"", True, False, owner=b"driver").obj
    table.hold(obj, b"actor")
    table.hold(obj, b"actor")
    table.drop("a", b"driver")
    assert table.drop_holder(b"actor") == [obj] and table.freeable(obj)
