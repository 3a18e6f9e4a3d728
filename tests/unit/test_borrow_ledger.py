"""When a borrower node registers and releases its borrows (borrow_ledger.py)."""

from __future__ import annotations

from zray.common.owners import owner_key, split_owner
from zray.services.raylet.borrow_ledger import (
    Batch,
    BorrowLedger,
    Registration,
    holder_node,
    node_holder,
)

HERE, OWNER, OTHER = "b" * 32, "a" * 32, "c" * 32


def test_owner_keys_name_the_node() -> None:
    assert split_owner(owner_key("ff" * 16, OWNER)) == ("ff" * 16, OWNER)
    assert split_owner("ff" * 16) == ("ff" * 16, "")
    assert holder_node(node_holder(OWNER)) == OWNER
    assert holder_node(b"\x01" * 16) == ""


def test_a_held_ref_is_borrowed_once_and_released_once() -> None:
    ledger = BorrowLedger(HERE)
    assert ledger.learn_owner("x", OWNER)
    assert ledger.held("x")
    assert not ledger.held("x")  # a second holder here: still one borrow
    assert ledger.drain() == {Registration(OWNER, False): Batch(borrowed=["x"])}
    assert ledger.unheld("x")
    assert not ledger.unheld("x")
    assert ledger.drain() == {Registration(OWNER, False): Batch(released=["x"])}
    assert not ledger.tracks("x")


def test_objects_owned_here_are_not_tracked() -> None:
    ledger = BorrowLedger(HERE)
    assert not ledger.learn_owner("x", HERE)
    assert not ledger.learn_owner("y", "")
    assert not ledger.held("x") and not ledger.held("y")
    assert ledger.drain() == {}


def test_a_ref_covered_by_a_forwarded_task_rides_on_its_outcome() -> None:
    ledger = BorrowLedger(HERE)
    ledger.cover(["x"])
    ledger.learn_owner("x", OWNER)
    assert not ledger.held("x")  # the forwarding node keeps it until the task ends
    assert ledger.drain() == {}
    assert ledger.task_done(["x"], OWNER, {"x": True}) == ["x"]
    assert ledger.drain() == {}  # no message of its own
    assert ledger.unheld("x")
    assert ledger.drain() == {Registration(OWNER, True): Batch(released=["x"])}


def test_a_covered_ref_dropped_before_the_task_ends_costs_no_message() -> None:
    ledger = BorrowLedger(HERE)
    ledger.cover(["x"])
    ledger.learn_owner("x", OWNER)
    ledger.held("x")
    assert ledger.task_done(["x"], OWNER, {"x": False}) == []
    assert not ledger.unheld("x")
    assert ledger.drain() == {} and not ledger.tracks("x")


def test_a_covered_ref_owned_by_a_third_node_is_borrowed_from_its_owner() -> None:
    ledger = BorrowLedger(HERE)
    ledger.cover(["x"])
    ledger.learn_owner("x", OTHER)
    assert ledger.task_done(["x"], OWNER, {"x": True}) == []
    assert ledger.drain() == {Registration(OTHER, False): Batch(borrowed=["x"])}


def test_a_hold_kept_for_us_becomes_our_borrow_unless_we_have_one() -> None:
    ledger = BorrowLedger(HERE)
    assert not ledger.kept_for_us("x", OWNER, owned_here=False)
    assert ledger.kept_for_us("x", OWNER, owned_here=False)  # a second one goes back at once
    assert ledger.kept_for_us("y", OWNER, owned_here=True)
    assert ledger.drain() == {Registration(OWNER, False): Batch(released=["x", "y"])}
    assert ledger.unheld("x")
    assert ledger.drain() == {Registration(OWNER, False): Batch(released=["x"])}


def test_a_dead_node_takes_its_registrations_and_pending_messages() -> None:
    ledger = BorrowLedger(HERE)
    ledger.learn_owner("x", OWNER)
    ledger.learn_owner("y", OTHER)
    ledger.held("x")
    ledger.held("y")
    assert ledger.node_died(OWNER) == ["x"]
    assert ledger.drain() == {Registration(OTHER, False): Batch(borrowed=["y"])}
    assert not ledger.unheld("x")  # nothing to release on a dead node
