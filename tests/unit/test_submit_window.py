"""SubmitWindow: a driver's plain tasks in flight are bounded, held ones keep
their order, and objects that held tasks name are pinned until they go."""

from __future__ import annotations

import pytest

from zray.client.submit_window import SubmitWindow, windowed
from zray.common.ids import return_object_hex
from zray.common.messages.task import ActorCreation, ArgSpec, TaskSpec

pytestmark = pytest.mark.timeout(10)


def spec(n: int, args: tuple[str, ...] = (), returns: int = 1, nested: tuple[str, ...] = (),
         actor: str | None = None) -> TaskSpec:
    return TaskSpec.construct(task_id=f"{n:032x}", job_id="00000001", parent_task_id="0" * 32,
                              function_id="f", function_name="f",
                              args=[ArgSpec(ref=a) for a in args], num_returns=returns,
                              resources={"CPU": 1.0}, max_retries=0, retry_exceptions=False,
                              owner="w", name=None, attempt=0, actor_creation=None,
                              actor_id=actor, method=None, nested_refs=list(nested))


def ret(n: int, index: int = 1) -> str:
    return return_object_hex(f"{n:032x}", index)


def test_admits_up_to_the_limit_then_holds_in_order() -> None:
    w = SubmitWindow(limit=2)
    assert w.admit(spec(1), []) and w.admit(spec(2), [])
    assert not w.admit(spec(3), [b"x"])
    assert not w.admit(spec(4), [])
    assert len(w) == 2
    assert w.release() == []  # no slot free yet
    w.arrived(ret(1))
    released = w.release()
    assert [s.task_id for s, _ in released] == [f"{3:032x}"]
    assert released[0][1] == [b"x"]
    assert len(w) == 1 and w.in_flight == {ret(2), ret(3)}


def test_a_held_task_keeps_later_ones_behind_it_even_with_room() -> None:
    w = SubmitWindow(limit=1)
    assert w.admit(spec(1), [])
    assert not w.admit(spec(2), [])
    w.arrived(ret(1))
    # A slot is free, but task 2 is still held: task 3 may not overtake it.
    assert not w.admit(spec(3), [])
    assert [s.task_id for s, _ in w.release()] == [f"{2:032x}"]


def test_release_everything_ignores_the_limit() -> None:
    w = SubmitWindow(limit=1)
    for n in range(1, 5):
        w.admit(spec(n), [])
    assert [s.task_id[-1] for s, _ in w.release(everything=True)] == ["2", "3", "4"]
    assert len(w) == 0 and len(w.in_flight) == 4


def test_held_tasks_pin_their_returns_arguments_and_nested_refs() -> None:
    w = SubmitWindow(limit=1)
    w.admit(spec(1), [])
    w.admit(spec(2, args=("a" * 40,), nested=("b" * 40,)), [])
    w.admit(spec(3, args=("a" * 40,)), [])
    assert w.pins(ret(2)) and w.pins(ret(3)) and w.pins("a" * 40) and w.pins("b" * 40)
    assert not w.pins(ret(1))  # in flight: the raylet knows it
    w.arrived(ret(1))
    w.release()  # task 2 goes; task 3 still names "a"
    assert not w.pins(ret(2)) and not w.pins("b" * 40)
    assert w.pins("a" * 40) and w.pins(ret(3))
    w.release(everything=True)
    assert not w.pins("a" * 40)


def test_tasks_without_returns_do_not_occupy_a_slot() -> None:
    w = SubmitWindow(limit=1)
    assert w.admit(spec(1, returns=0), [])
    assert w.admit(spec(2), [])
    assert not w.admit(spec(3), [])


def test_only_plain_tasks_are_windowed() -> None:
    assert windowed(spec(1))
    assert not windowed(spec(2, actor="c" * 24))
    creation = ActorCreation(actor_id="c" * 24, class_name="C")
    assert not windowed(spec(3).model_copy(update={"actor_creation": creation}))


def test_a_window_admits_at_least_one_task() -> None:
    with pytest.raises(ValueError, match="at least one task"):
        SubmitWindow(limit=0)
