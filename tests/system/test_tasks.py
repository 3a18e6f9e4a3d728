"""Tasks: arguments by reference, nested refs, nested tasks, timeouts, remote exceptions."""

from __future__ import annotations

import os

import numpy as np
import pytest

import zray
from tests.conftest import Gate

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("cluster")]


class CustomError(Exception):
    pass


class ErrorWithFields(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


@zray.remote
def add(a: int, b: int = 0) -> int:
    return a + b


@zray.remote
def inspect_list(items: list[object]) -> list[tuple[bool, object]]:
    """For each item: (arrived as a ref, its value)."""
    out = []
    for item in items:
        if isinstance(item, zray.ObjectRef):
            out.append((True, zray.get(item, timeout=30)))
        else:
            out.append((False, item))
    return out


@zray.remote
def chain(depth: int) -> int:
    if depth == 0:
        return 0
    return zray.get(chain.remote(depth - 1), timeout=60) + 1


@zray.remote
def fan_out(n: int) -> list[int]:
    return zray.get([add.remote(i, 1) for i in range(n)], timeout=60)


@zray.remote
def raise_value_error(text: str) -> None:
    raise ValueError(text)


@zray.remote
def raise_custom() -> None:
    raise CustomError("custom failure")


@zray.remote
def raise_with_fields() -> None:
    raise ErrorWithFields(404, "not found")


@zray.remote
def open_missing_file(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_object_ref_arguments_are_resolved() -> None:
    one = zray.put(1)
    assert zray.get(add.remote(one, 2), timeout=30) == 3
    assert zray.get(add.remote(2, b=one), timeout=30) == 3  # keyword argument by reference
    assert zray.get(add.remote(add.remote(1, 2), add.remote(3, 4)), timeout=30) == 10


def test_chained_dependencies() -> None:
    # Each intermediate ref is dropped by the driver as soon as the next task
    # that uses it is submitted: the task's pin must keep the object alive.
    ref = zray.put(0)
    for _ in range(20):
        ref = add.remote(ref, 1)
    assert zray.get(ref, timeout=10) == 20


@zray.remote
def total(arr: np.ndarray) -> float:
    return float(arr.sum())


def test_ref_dropped_right_after_passing_it_to_a_task() -> None:
    # The driver lets go of its ref while the task that uses it may still be on
    # its way to the raylet: the object must outlive the submission. Repeated,
    # because whether the submission is still in flight varies from run to run.
    zray.get(add.remote(0, 0), timeout=30)
    for i in range(10):
        value = zray.put(np.full(50_000, i, dtype=np.float64))  # in the shared-memory store
        warm = add.remote(i, 0)
        result = total.remote(value)
        del value
        assert zray.get(result, timeout=10) == 50_000.0 * i, f"iteration {i}"
        assert zray.get(warm, timeout=10) == i


def test_temporary_refs_as_arguments() -> None:
    assert zray.get(add.remote(zray.put(1), zray.put(2)), timeout=30) == 3
    assert zray.get(add.remote(add.remote(add.remote(0, 1), 1), 1), timeout=30) == 3


def test_refs_nested_in_lists_arrive_as_refs() -> None:
    put_ref = zray.put("stored")
    task_ref = add.remote(40, 2)
    out = zray.get(inspect_list.remote([put_ref, task_ref, "plain"]), timeout=30)
    assert out == [(True, "stored"), (True, 42), (False, "plain")]


def test_refs_nested_in_a_put_value() -> None:
    inner = add.remote(1, 1)
    outer = zray.put({"inner": [inner]})
    value = zray.get(outer, timeout=30)
    assert isinstance(value["inner"][0], zray.ObjectRef)
    assert zray.get(value["inner"][0], timeout=30) == 2


def test_nested_tasks_at_full_cpu() -> None:
    # Four chains of depth 5 on two CPUs: every level blocks in get, so this
    # completes only if blocked workers give their CPU to the tasks they wait for.
    refs = [chain.remote(5) for _ in range(4)]
    assert zray.get(refs, timeout=80) == [5, 5, 5, 5]


def test_task_submitting_many_tasks() -> None:
    assert zray.get(fan_out.remote(50), timeout=60) == list(range(1, 51))


def test_get_with_timeout_raises(gate: Gate) -> None:
    ref, _ = gate.blocking_task()
    with pytest.raises(zray.GetTimeoutError):
        zray.get(ref, timeout=0.3)
    with pytest.raises(TimeoutError):  # GetTimeoutError is a TimeoutError
        zray.get([add.remote(1, 1), ref], timeout=0.3)
    gate.open()
    assert zray.get(ref, timeout=30) == "released"


def test_get_argument_errors() -> None:
    with pytest.raises(TypeError):
        zray.get("not a ref")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        zray.get([add.remote(1), 5])  # type: ignore[list-item]


def test_exception_is_instance_of_original_class_with_remote_traceback() -> None:
    ref = raise_value_error.remote("the input was bad")
    with pytest.raises(ValueError) as info:
        zray.get(ref, timeout=30)
    err = info.value
    assert isinstance(err, zray.TaskError)
    text = str(err)
    assert "the input was bad" in text
    assert "raise_value_error" in text
    assert "Traceback (most recent call last)" in text
    assert "in raise_value_error" in text  # the remote frame
    assert "ValueError: the input was bad" in text
    assert f"pid={os.getpid()}" not in text  # it names the worker, not the driver


def test_custom_exception_class() -> None:
    with pytest.raises(CustomError, match="custom failure"):
        zray.get(raise_custom.remote(), timeout=30)


def test_exception_with_required_init_arguments() -> None:
    with pytest.raises(ErrorWithFields) as info:
        zray.get(raise_with_fields.remote(), timeout=30)
    assert isinstance(info.value, zray.TaskError)
    cause = info.value.cause
    assert isinstance(cause, ErrorWithFields) and cause.code == 404
    assert "not found" in str(info.value)


def test_os_error_from_a_task() -> None:
    with pytest.raises(FileNotFoundError) as info:
        zray.get(open_missing_file.remote("/nonexistent/zray-test-file"), timeout=30)
    assert isinstance(info.value, zray.TaskError)
    assert "/nonexistent/zray-test-file" in str(info.value)


def test_exception_propagates_through_dependent_tasks() -> None:
    failed = raise_value_error.remote("root cause")
    dependent = add.remote(failed, 1)
    grand = add.remote(dependent, 1)
    for ref in (dependent, grand):
        with pytest.raises(ValueError) as info:
            zray.get(ref, timeout=30)
        assert "root cause" in str(info.value)
        assert "raise_value_error" in str(info.value)
    # The same error object is reported every time it is read.
    with pytest.raises(ValueError, match="root cause"):
        zray.get(failed, timeout=30)


def test_error_read_by_a_nested_get_propagates_with_its_class() -> None:
    failed = raise_value_error.remote("inside a list")
    # Refs nested in a list are not resolved: the task receives the ref, raises
    # in its own get, and the driver sees that error, still a ValueError.
    out = inspect_list.remote([failed])
    with pytest.raises(ValueError, match="inside a list"):
        zray.get(out, timeout=30)


def test_many_failures_do_not_poison_the_cluster() -> None:
    refs = [raise_value_error.remote(str(i)) for i in range(20)]
    for i, ref in enumerate(refs):
        with pytest.raises(ValueError, match=str(i)):
            zray.get(ref, timeout=30)
    assert zray.get([add.remote(i, i) for i in range(20)], timeout=30) == [2 * i for i in range(20)]


def test_remote_function_cannot_be_called_directly() -> None:
    with pytest.raises(TypeError, match="remote"):
        add(1, 2)
