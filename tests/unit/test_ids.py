"""ids: fixed sizes, hex round trips, deterministic TaskID/ObjectID derivation, the put flag."""

from __future__ import annotations

import pickle

import pytest

from zray.common.ids import (
    PUT_FLAG,
    ActorID,
    BaseID,
    JobID,
    NodeID,
    ObjectID,
    TaskID,
    WorkerID,
    return_object_hex,
)

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("cls", [JobID, NodeID, WorkerID, ActorID, TaskID, ObjectID])
def test_fixed_size_hex_round_trip_and_pickle(cls: type[BaseID]) -> None:
    ident = cls.from_random()
    assert len(ident.binary()) == cls.SIZE
    assert len(ident.hex()) == 2 * cls.SIZE
    assert cls.from_hex(ident.hex()) == ident
    assert hash(cls.from_hex(ident.hex())) == hash(ident)
    assert pickle.loads(pickle.dumps(ident)) == ident
    assert cls.nil().is_nil() and not ident.is_nil()
    with pytest.raises(ValueError):
        cls(b"\x00" * (cls.SIZE + 1))


def test_ids_of_different_types_never_compare_equal() -> None:
    raw = bytes(range(16))
    assert NodeID(raw) != TaskID(raw)
    assert NodeID(raw) != WorkerID(raw)
    assert len({NodeID(raw), NodeID(raw)}) == 1


def test_job_id_int_round_trip() -> None:
    assert JobID.from_int(7).to_int() == 7
    assert JobID.from_int(1).hex() == "00000001"


def test_driver_task_id_carries_job() -> None:
    job = JobID.from_int(42)
    driver = TaskID.for_driver(job)
    assert driver.job_id() == job
    assert driver == TaskID.for_driver(JobID.from_int(42))


def test_child_task_ids_are_deterministic_and_distinct() -> None:
    parent = TaskID.for_driver(JobID.from_int(3))
    first = TaskID.for_child(parent, 1)
    assert first == TaskID.for_child(parent, 1)  # re-execution recreates the same id
    assert first != TaskID.for_child(parent, 2)
    assert first.job_id() == JobID.from_int(3)
    grandchild = TaskID.for_child(first, 1)
    assert grandchild != first and grandchild.job_id() == JobID.from_int(3)
    other_parent = TaskID.for_driver(JobID.from_int(4))
    assert TaskID.for_child(other_parent, 1) != first
    ids = {TaskID.for_child(parent, n) for n in range(1, 2001)}
    assert len(ids) == 2000


def test_return_object_ids_are_task_plus_index() -> None:
    task = TaskID.for_child(TaskID.for_driver(JobID.from_int(1)), 5)
    oid = ObjectID.for_return(task, 2)
    assert oid == ObjectID.for_return(task, 2)
    assert oid.task_id() == task
    assert oid.index() == 2
    assert not oid.is_put()
    assert oid.binary().startswith(task.binary())
    assert return_object_hex(task.hex(), 2) == oid.hex()
    assert return_object_hex(task.hex(), 300) == ObjectID.for_return(task, 300).hex()


def test_put_ids_are_flagged_and_numbered_separately() -> None:
    task = TaskID.for_driver(JobID.from_int(1))
    put = ObjectID.for_put(task, 1)
    ret = ObjectID.for_return(task, 1)
    assert put.is_put()
    assert put.index() == 1
    assert put.task_id() == task
    assert put != ret
    assert int(put.hex()[32:], 16) == 1 | PUT_FLAG


@pytest.mark.parametrize("index", [0, -1, PUT_FLAG, PUT_FLAG + 1])
def test_object_index_out_of_range(index: int) -> None:
    task = TaskID.for_driver(JobID.from_int(1))
    with pytest.raises(ValueError):
        ObjectID.for_return(task, index)
    with pytest.raises(ValueError):
        ObjectID.for_put(task, index)


def test_actor_id_derivation() -> None:
    job = JobID.from_int(9)
    task = TaskID.for_child(TaskID.for_driver(job), 1)
    actor = ActorID.of(job, task)
    assert actor == ActorID.of(job, task)
    assert actor.job_id() == job
    assert actor != ActorID.of(job, TaskID.for_child(TaskID.for_driver(job), 2))
