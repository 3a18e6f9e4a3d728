"""Cluster and object API: Arrow round trips, nodes(), runtime context, put rules, ids."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import zray
from zray.common.ids import JobID, ObjectID, TaskID

pytestmark = pytest.mark.timeout(90)


@zray.remote
def table_stats(table: pa.Table) -> tuple[int, list[str], int]:
    return table.num_rows, table.column_names, int(sum(table.column("x").to_pylist()))


@zray.remote
def make_table(n: int) -> pa.Table:
    return pa.table({"x": np.arange(n, dtype=np.int64), "y": [f"row{i}" for i in range(n)]})


@zray.remote
def runtime_ids() -> dict[str, Any]:
    ctx = zray.get_runtime_context()
    return {"node": ctx.get_node_id(), "job": ctx.get_job_id(), "task": ctx.get_task_id(),
            "pid": os.getpid(), "initialized": zray.is_initialized()}


@zray.remote
def child_task_id() -> tuple[str | None, str]:
    parent = zray.get_runtime_context().get_task_id()
    child = runtime_ids.remote()
    return parent, zray.get(child, timeout=30)["task"]


@zray.remote
def put_inside_task(n: int) -> zray.ObjectRef:
    return zray.put(list(range(n)))


@pytest.mark.usefixtures("cluster")
class TestArrow:
    @pytest.mark.parametrize("rows", [10, 200_000], ids=["inline", "in-store"])
    def test_table_put_get(self, rows: int) -> None:
        table = pa.table({"x": np.arange(rows, dtype=np.int64), "y": np.random.rand(rows)})
        out = zray.get(zray.put(table), timeout=60)
        assert isinstance(out, pa.Table)
        assert out.equals(table)

    def test_table_as_argument_and_result(self) -> None:
        table = pa.table({"x": np.arange(100_000, dtype=np.int64)})
        rows, names, total = zray.get(table_stats.remote(table), timeout=60)
        assert (rows, names, total) == (100_000, ["x"], sum(range(100_000)))
        out = zray.get(make_table.remote(50_000), timeout=60)
        assert isinstance(out, pa.Table)
        assert out.num_rows == 50_000
        assert out.column("y")[49_999].as_py() == "row49999"
        made = make_table.remote(1000)
        assert zray.get(table_stats.remote(made), timeout=60)[0] == 1000

    def test_record_batch(self) -> None:
        batch = pa.record_batch({"v": pa.array([1, None, 3])})
        out = zray.get(zray.put(batch), timeout=30)
        assert isinstance(out, pa.RecordBatch) and out.equals(batch)


@pytest.mark.usefixtures("cluster")
class TestCluster:
    def test_nodes_shape(self) -> None:
        nodes = zray.nodes()
        assert len(nodes) == 1
        node = nodes[0]
        for key in ("NodeID", "Alive", "NodeManagerAddress", "Resources"):
            assert key in node, key
        assert isinstance(node["NodeID"], str) and len(node["NodeID"]) == 32
        int(node["NodeID"], 16)
        assert node["Alive"] is True
        assert isinstance(node["NodeManagerAddress"], str) and node["NodeManagerAddress"]
        assert node["Resources"]["CPU"] == 2.0

    def test_cluster_and_available_resources(self) -> None:
        total = zray.cluster_resources()
        assert total["CPU"] == 2.0
        available = zray.available_resources()
        assert set(available) <= set(total)
        assert all(0 <= available[k] <= total[k] for k in available)

    def test_runtime_context_in_driver(self, cluster: dict[str, Any]) -> None:
        ctx = zray.get_runtime_context()
        assert ctx.get_node_id() == zray.nodes()[0]["NodeID"]
        assert ctx.get_task_id() is None
        JobID.from_hex(ctx.get_job_id())
        assert cluster["job_id"] == ctx.get_job_id()

    def test_runtime_context_in_task(self) -> None:
        driver = zray.get_runtime_context()
        ref = runtime_ids.remote()
        ids = zray.get(ref, timeout=30)
        assert ids["node"] == driver.get_node_id()
        assert ids["job"] == driver.get_job_id()
        assert ids["task"] == ref.task_id()
        assert ids["pid"] != os.getpid()
        assert ids["initialized"] is True

    def test_nested_task_ids_derive_from_the_parent(self) -> None:
        parent, child = zray.get(child_task_id.remote(), timeout=30)
        assert parent is not None
        # The first task a task submits has the id derived from (parent, 1).
        assert child == TaskID.for_child(TaskID.from_hex(parent), 1).hex()


@pytest.mark.usefixtures("cluster")
class TestObjects:
    def test_put_of_an_object_ref_raises(self) -> None:
        ref = zray.put(1)
        with pytest.raises(TypeError):
            zray.put(ref)

    def test_put_and_get_values(self) -> None:
        values = [None, 0, "text", b"\x00" * 10, {"a": [1, 2]}, np.arange(5), (1, "two")]
        refs = [zray.put(v) for v in values]
        out = zray.get(refs, timeout=30)
        for v, o in zip(values, out, strict=True):
            if isinstance(v, np.ndarray):
                assert np.array_equal(v, o)
            else:
                assert v == o

    def test_put_ids_are_flagged(self) -> None:
        driver_task = TaskID.for_driver(JobID.from_hex(zray.get_runtime_context().get_job_id()))
        first, second = zray.put("a"), zray.put("b")
        for ref in (first, second):
            oid = ObjectID.from_hex(ref.hex())
            assert oid.is_put()
            assert oid.task_id() == driver_task
        assert ObjectID.from_hex(second.hex()).index() == ObjectID.from_hex(first.hex()).index() + 1

    def test_task_return_ids(self) -> None:
        ref = runtime_ids.remote()
        oid = ObjectID.from_hex(ref.hex())
        assert not oid.is_put()
        assert oid.index() == 1
        assert oid.task_id().hex() == ref.task_id()
        assert oid.task_id().job_id().hex() == zray.get_runtime_context().get_job_id()
        zray.get(ref, timeout=30)

    def test_ref_returned_from_a_task(self) -> None:
        inner = zray.get(put_inside_task.remote(10), timeout=30)
        assert isinstance(inner, zray.ObjectRef)
        assert zray.get(inner, timeout=30) == list(range(10))

    def test_object_ref_api(self) -> None:
        ref = zray.put(3)
        assert ref == zray.ObjectRef(ref.hex())
        assert hash(ref) == hash(zray.ObjectRef(ref.hex()))
        assert ref.binary() == bytes.fromhex(ref.hex())
        assert ref.hex() in repr(ref)
