"""Merging, filtering and summing task records; the timeline; rendering (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from zray.cli.observe_view import format_list, format_summary
from zray.common.errors import ConfigError
from zray.common.task_records import (
    check_state,
    encode_batch,
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


def test_events_fold_into_records_and_later_batches_win() -> None:
    w = "w" * 32
    first = {"node_id": "n1", "events": [
        ["SUBMITTED", "a1", 100_000_000, "j", "f", "f", "NORMAL_TASK", None, {"CPU": 1}, "QUEUED"],
        ["SUBMITTED", "b2", 100_100_000, "j", "g", "g", "NORMAL_TASK", None, {"CPU": 1}, "PENDING_ARGS"],
        ["WAITING_ON", "b2", "1 argument object(s)"],
        ["RUNNING", "a1", 100_500_000, 0, w, 7],
        ["RUNNING", "b2", 100_600_000, 0, w, 7]]}  # pipelined behind a1 on the same worker
    second = {"node_id": "n1", "events": [["FINISHED", "a1", 101_000_000, 0],
                                          ["RETRYING", "b2", 101_500_000, 0, "lost its worker"],
                                          ["FAILED", "zz", 102_000_000, 0, "unknown task: skipped"]]}
    merged = merge_batches([("n1:1", json.dumps(first).encode()), ("n1:2", json.dumps(second).encode())])
    a, b = merged
    assert (a["state"], a["submitted"], a["started"], a["ended"]) == ("FINISHED", 100.0, 100.5, 101.0)
    assert a["node_id"] == "n1" and a["runs"] == [
        {"worker_id": w, "pid": 7, "start": 100.5, "end": 101.0, "attempt": 0, "state": "FINISHED"}]
    assert b["state"] == "RETRYING" and b["attempt"] == 1 and b["error"] == "lost its worker"
    assert b["runs"][0]["start"] == 101.0, "a pipelined task starts when the one before it ends"


def submitted(task_id: str, when: int) -> list[Any]:
    return ["SUBMITTED", task_id, when, "j", "f", "f", "NORMAL_TASK", None, {"CPU": 1}, "QUEUED"]


def test_events_of_several_nodes_fold_in_time_order() -> None:
    # "a1" ran on node z (forwarded there by h) and finished, but z died before it
    # flushed its last events: h's FINISHED, recorded later, holds although z's
    # batches sort after h's. "b2" was running on z when z died: FAILED, naming z.
    # "c3" was running on z too, and h retried it: waiting on h, not failed.
    w = "w" * 32
    h = {"node_id": "h" * 32, "events": [
        submitted("a1", 100_000_000), submitted("b2", 100_000_001), submitted("c3", 100_000_002),
        ["FINISHED", "a1", 100_900_000, 0],
        ["RETRYING", "c3", 102_000_000, 0, "was running on node zzz died"]]}
    z = {"node_id": "z" * 32, "events": [
        submitted("a1", 100_100_000), ["RUNNING", "a1", 100_200_000, 0, w, 7],
        submitted("b2", 100_300_000), ["RUNNING", "b2", 100_400_000, 0, w, 8],
        submitted("c3", 100_500_000), ["RUNNING", "c3", 100_600_000, 0, w, 9]]}
    batches = [("h:1", json.dumps(h).encode()), ("z:1", json.dumps(z).encode())]
    a, b, c = merge_batches(batches, dead_nodes={"z" * 32})
    assert (a["state"], a["node_id"], a["submitted"]) == ("FINISHED", "z" * 32, 100.0)
    assert [(r["start"], r["end"]) for r in a["runs"]] == [(100.2, 100.9)]
    assert b["state"] == "FAILED" and "node zzzzzzzzzzzz died while the task was RUNNING" in b["error"]
    assert (c["state"], c["node_id"], c["attempt"]) == ("RETRYING", "h" * 32, 1)
    assert merge_batches(batches)[1]["state"] == "RUNNING", "a live node's task is not failed"


def test_stored_batches_are_compressed_and_fold_like_plain_json() -> None:
    events = [["SUBMITTED", f"{i:032x}", 100_000_000 + i, "j", "f", "f", "NORMAL_TASK", None,
               {"CPU": 1}, "QUEUED"] for i in range(1000)]
    events += [["FINISHED", f"{i:032x}", 100_500_000 + i, 0] for i in range(1000)]
    plain = json.dumps({"node_id": "n1", "events": events}).encode()
    stored = encode_batch("n1", events)
    assert len(stored) * 4 < len(plain)
    assert merge_batches([("n1:1", stored)]) == merge_batches([("n1:1", plain)])
    assert len(merge_batches([("n1:1", stored)])) == 1000

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
