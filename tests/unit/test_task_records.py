"""Merging, filtering and summing task records; the timeline; rendering (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from zray.cli.observe_view import format_list, format_summary
from zray.common.errors import ConfigError
from zray.common.task_records import (
    ROW_FIELDS,
    check_state,
    filter_records,
    find_task,
    merge_batches,
    summarize,
)
from zray.common.trace import build_trace, validate_trace
from zray.dashboard.snapshot import History, build


def rec(task_id: str, state: str, func: str = "f", **extra: Any) -> dict[str, Any]:
    base = {"task_id": task_id, "job_id": "j", "name": func, "func": func, "type": "NORMAL_TASK",
            "actor_id": None, "state": state, "node_id": "n" * 32, "worker_id": "w" * 32, "pid": 7,
            "attempt": 0, "submitted": 100.0, "started": None, "ended": None, "waiting_on": "",
            "resources": {"CPU": 1.0}, "error": None, "runs": []}
    return {**base, **extra}


def row(task_id: str, state: str) -> list[Any]:
    r = rec(task_id, state, submitted=100_000_000, started=100_500_000,
            runs=[["w" * 32, 7, 100_500_000, 101_000_000, 0, state]])
    return [r[k] for k in ROW_FIELDS]


def test_later_batches_win_and_rows_become_records() -> None:
    batches = [("n:1", json.dumps({"node_id": "n1", "rows": [row("a1", "RUNNING"), row("b2", "QUEUED")]})),
               ("n:2", json.dumps({"node_id": "n1", "rows": [row("a1", "FINISHED")]}))]
    merged = merge_batches((k, v.encode()) for k, v in batches)
    assert {r["task_id"]: r["state"] for r in merged} == {"a1": "FINISHED", "b2": "QUEUED"}
    assert merged[0]["submitted"] == 100.0 and merged[0]["started"] == 100.5
    assert merged[0]["node_id"] == "n1" and merged[0]["runs"][0]["end"] == 101.0


def test_filters_limits_and_errors() -> None:
    rows = [rec("aa11", "FINISHED"), rec("aa22", "FAILED", "g"), rec("bb33", "FINISHED")]
    assert [r["task_id"] for r in filter_records(rows, [("state", "=", "finished")])] == ["aa11", "bb33"]
    assert [r["task_id"] for r in filter_records(rows, [("task_id", "=", "AA")])] == ["aa11", "aa22"]
    assert [r["task_id"] for r in filter_records(rows, [("func", "!=", "f")])] == ["aa22"]
    assert [r["task_id"] for r in filter_records(rows, [("pid", "=", "7")], limit=1)] == ["bb33"]
    assert filter_records(rows, limit=0) == []
    with pytest.raises(ConfigError, match="cannot filter on 'colour'"):
        filter_records(rows, [("colour", "=", "red")])
    with pytest.raises(ConfigError, match="expected"):
        filter_records(rows, [("state", "~", "x")])
    with pytest.raises(ConfigError, match="limit"):
        filter_records(rows, limit=-1)
    with pytest.raises(ConfigError, match="unknown task state 'nap'"):
        check_state("nap")
    assert check_state("running") == "RUNNING"
    with pytest.raises(ConfigError, match="ambiguous"):
        find_task(rows, "aa")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no task"):
        find_task(rows, "cc")  # type: ignore[arg-type]


def test_summary_and_rendering() -> None:
    rows = [rec("a", "FINISHED"), rec("b", "FINISHED"), rec("c", "FAILED", "g", error="E\nValueError: x")]
    summary = summarize(rows)  # type: ignore[arg-type]
    assert summary == {"f": {"FINISHED": 2}, "g": {"FAILED": 1}}
    text = format_summary(summary)
    assert text.splitlines()[0].split() == ["FUNCTION", "FINISHED", "FAILED", "TOTAL"]
    table = format_list("tasks", rows, total=5, now=101.0)
    assert "ValueError: x" in table and "3 of 5 tasks shown" in table and "1.0s ago" in table
    assert format_list("tasks", [], 0) == "no tasks"


def test_trace_has_one_slice_per_run_and_names_rows() -> None:
    runs = [{"worker_id": "w1", "pid": 11, "start": 10.0, "end": 10.5, "attempt": 0, "state": "RETRYING"},
            {"worker_id": "w2", "pid": 12, "start": 11.0, "end": 11.25, "attempt": 1, "state": "FINISHED"}]
    rows = [rec("a", "FINISHED", runs=runs), rec("b", "RUNNING", pid=13, started=12.0),
            rec("c", "FINISHED", runs=[{**runs[1], "end": 1.0, "start": 0.5}])]
    events = build_trace(rows, since=5.0)  # type: ignore[arg-type]
    assert validate_trace(events) == []
    slices = [e for e in events if e["ph"] != "M"]
    assert [(e["tid"], e["ph"], e.get("dur")) for e in slices] == \
        [(11, "X", 500000), (12, "X", 250000), (13, "B", None)]
    assert slices[0]["args"]["task_id"] == "a" and slices[0]["args"]["state"] == "RETRYING"
    names = {e["args"]["name"] for e in events if e["ph"] == "M"}
    assert names == {"node nnnnnnnnnnnn", "worker pid 11", "worker pid 12", "worker pid 13"}
    assert validate_trace({"x": 1}) and validate_trace([{"ph": "X", "name": "n"}])


def test_dashboard_snapshot() -> None:
    node = {"node_id": "n1", "node_name": "vm", "host": "vm", "state": "ALIVE", "heartbeat_age": 0.2,
            "resources_total": {"CPU": 2.0, "memory": 1e9}, "resources_available": {"CPU": 0.5},
            "store_used": 5, "store_capacity": 10, "tasks_queued": 1, "tasks_running": 1,
            "tasks_finished": 3, "tasks_failed": 1, "workers": 2}
    history = History(points=2)
    for t in (1.0, 2.0, 3.0):
        summaries = [{"counts": {"FAILED": 1}, "failures": [rec("a", "FAILED", error="boom", ended=2.0)]},
                     {"counts": {"FINISHED": 4, "RUNNING": 1}, "failures": []}]
        doc = build(t, [node], [], summaries, history)
    assert doc["nodes"][0]["resources"] == {"CPU": {"total": 2.0, "used": 1.5}}
    assert [p["time"] for p in doc["history"]] == [2.0, 3.0]
    assert doc["task_counts"]["FAILED"] == 1 and doc["task_counts"]["FINISHED"] == 4
    assert doc["failures"][0]["error"] == "boom" and doc["task_counts"]["QUEUED"] == 0
