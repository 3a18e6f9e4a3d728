"""Task records as a Chrome Trace Event timeline (chrome://tracing, Perfetto).

One process row per node, one thread row per worker (its pid), one complete
("X") event per attempt of a task, with the task's name, ids and outcome.
Times are microseconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from zray.common.task_records import TaskRecord

US = 1_000_000


def build_trace(records: Iterable[TaskRecord], since: float = 0.0) -> list[dict[str, Any]]:
    """Trace events of the task runs that ended at or after `since` (epoch seconds)."""
    events: list[dict[str, Any]] = []
    node_pids: dict[str, int] = {}
    threads: set[tuple[int, int]] = set()
    for rec in records:
        runs = list(rec["runs"])
        if rec["state"] == "RUNNING" and rec["started"] is not None:
            runs.append({"worker_id": rec["worker_id"] or "", "pid": rec["pid"], "start": rec["started"],
                         "end": None, "attempt": rec["attempt"], "state": "RUNNING"})  # type: ignore[typeddict-item]
        for run in runs:
            end = run["end"]
            if end is not None and end < since:
                continue
            pid = node_pids.setdefault(rec["node_id"], len(node_pids) + 1)
            tid = int(run["pid"] or 0)
            threads.add((pid, tid))
            event: dict[str, Any] = {
                "name": rec["name"], "cat": rec["type"], "ph": "X", "pid": pid, "tid": tid,
                "ts": round(run["start"] * US), "args": {
                    "task_id": rec["task_id"], "job_id": rec["job_id"], "func": rec["func"],
                    "actor_id": rec["actor_id"], "worker_id": run["worker_id"],
                    "attempt": run["attempt"], "state": run["state"]}}
            if end is None:
                event["ph"] = "B"  # still running: open-ended
            else:
                event["dur"] = max(0, round((end - run["start"]) * US))
            if run["state"] != "FINISHED" and rec["error"]:
                event["args"]["error"] = rec["error"]
            events.append(event)
    events.sort(key=lambda e: e["ts"])
    meta: list[dict[str, Any]] = []
    for node_id, pid in node_pids.items():
        meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                     "args": {"name": f"node {node_id[:12]}"}})
    for pid, tid in sorted(threads):
        meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                     "args": {"name": f"worker pid {tid}"}})
    return meta + events


def validate_trace(events: Any) -> list[str]:
    """Problems that would stop a trace viewer from loading `events` (empty: fine)."""
    if not isinstance(events, list):
        return ["a trace is a JSON array of events"]
    problems = []
    for i, ev in enumerate(events):
        if not isinstance(ev, dict):
            problems.append(f"event {i} is not an object")
            continue
        ph = ev.get("ph")
        need = {"X": ("name", "ts", "dur", "pid", "tid"), "B": ("name", "ts", "pid", "tid"),
                "M": ("name", "pid", "args")}.get(ph)  # type: ignore[arg-type]
        if need is None:
            problems.append(f"event {i} has unknown phase {ph!r}")
            continue
        problems += [f"event {i} ({ph}) lacks {k!r}" for k in need if k not in ev]
        for k in ("ts", "dur"):
            if k in ev and (not isinstance(ev[k], (int, float)) or ev[k] < 0):
                problems.append(f"event {i} has bad {k} {ev[k]!r}")
        for k in ("pid", "tid"):
            if k in ev and not isinstance(ev[k], int):
                problems.append(f"event {i} has non-integer {k}")
    return problems
