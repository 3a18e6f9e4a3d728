"""Task state records (written by raylets, read by `zray list`, the timeline
and the dashboard) and the pure logic over them: merging, filtering, summing.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, TypedDict

from zray.common.errors import ConfigError

PENDING_ARGS = "PENDING_ARGS"  # waits for argument objects
PENDING_RESOURCES = "PENDING_RESOURCES"  # no node here can run it (e.g. num_gpus=1 on a CPU node)
QUEUED = "QUEUED"  # ready; waits for a free worker and resources
RUNNING = "RUNNING"
RETRYING = "RETRYING"  # failed or lost its worker; queued again for another attempt
FINISHED = "FINISHED"
FAILED = "FAILED"
STATES = (PENDING_ARGS, PENDING_RESOURCES, QUEUED, RUNNING, RETRYING, FINISHED, FAILED)
TERMINAL = frozenset((FINISHED, FAILED))


class RunRecord(TypedDict):
    worker_id: str
    pid: int | None
    start: float
    end: float
    attempt: int
    state: str


class TaskRecord(TypedDict):
    task_id: str
    job_id: str
    name: str
    func: str
    type: str
    actor_id: str | None
    state: str
    node_id: str
    worker_id: str | None
    pid: int | None
    attempt: int
    submitted: float
    started: float | None
    ended: float | None
    waiting_on: str
    resources: dict[str, float]
    error: str | None
    runs: list[RunRecord]


# How raylets store records: a batch is JSON {"node_id": ..., "rows": [row, ...]},
# a row the values of ROW_FIELDS in order, times in integer microseconds, each
# run [worker_id, pid, start_us, end_us, attempt, state]. Compact because a
# raylet encodes one for every task it runs (JSON objects with float times
# cost several times more to encode).
ROW_FIELDS = ("task_id", "job_id", "name", "func", "type", "actor_id", "state", "worker_id", "pid",
              "attempt", "submitted", "started", "ended", "waiting_on", "resources", "error", "runs")
RUN_FIELDS = ("worker_id", "pid", "start", "end", "attempt", "state")
TIME_FIELDS = ("submitted", "started", "ended", "start", "end")


def record_from_row(row: list[Any], node_id: str) -> TaskRecord:
    rec: dict[str, Any] = dict(zip(ROW_FIELDS, row, strict=True))
    for key in ("submitted", "started", "ended"):
        if rec[key] is not None:
            rec[key] = rec[key] / 1e6
    rec["node_id"] = node_id
    rec["runs"] = [{**dict(zip(RUN_FIELDS, run, strict=True)), "start": run[2] / 1e6, "end": run[3] / 1e6}
                   for run in rec["runs"]]
    return rec  # type: ignore[return-value]


def decode_batch(value: bytes) -> list[TaskRecord]:
    batch = json.loads(value)
    return [record_from_row(row, batch["node_id"]) for row in batch["rows"]]


def merge_batches(batches: Iterable[tuple[str, bytes]]) -> list[TaskRecord]:
    """One record per task from (key, batch) pairs in key order: later wins."""
    latest: dict[str, TaskRecord] = {}
    for _, value in batches:
        for rec in decode_batch(value):
            latest[rec["task_id"]] = rec
    return sorted(latest.values(), key=lambda r: r["submitted"])


def check_state(state: str | None) -> str | None:
    """The canonical state name, or ConfigError naming the valid ones."""
    if state is None:
        return None
    upper = state.upper()
    if upper not in STATES:
        raise ConfigError(f"unknown task state {state!r}; expected one of {', '.join(STATES)}")
    return upper


def filter_records(records: list[dict[str, Any]], filters: Sequence[tuple[str, str, Any]] = (),
                   limit: int | None = None) -> list[dict[str, Any]]:
    """Rows matching every (key, "=" or "!=", value) filter, Ray's form: strings
    compare case-insensitively and id fields match by prefix; the newest
    `limit` rows when given."""
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, got {limit}")
    rows = records
    for flt in filters:
        if len(flt) != 3 or flt[1] not in ("=", "!="):
            raise ConfigError(f"bad filter {flt!r}: expected (key, '=' or '!=', value)")
        key, op, want = flt
        if rows and key not in rows[0]:
            raise ConfigError(f"cannot filter on {key!r}; fields are {', '.join(rows[0])}")
        rows = [r for r in rows if _matches(key, r.get(key), want) == (op == "=")]
    if limit is not None:
        rows = rows[-limit:] if limit else []
    return rows


def _matches(key: str, value: Any, want: Any) -> bool:
    if isinstance(value, str) and isinstance(want, str):
        if key.endswith("_id"):
            return value.lower().startswith(want.lower())
        return value.lower() == want.lower()
    if isinstance(value, (int, float)) and isinstance(want, str):
        try:
            return float(want) == value
        except ValueError:
            return False
    return bool(value == want)


def summarize(records: Iterable[TaskRecord]) -> dict[str, dict[str, int]]:
    """Task counts by function name, then by state."""
    counts: dict[str, Counter[str]] = {}
    for rec in records:
        counts.setdefault(rec["func"], Counter())[rec["state"]] += 1
    return {name: dict(sorted(c.items())) for name, c in sorted(counts.items())}


def count_states(records: Iterable[TaskRecord]) -> dict[str, int]:
    counts = Counter(rec["state"] for rec in records)
    return {state: counts.get(state, 0) for state in STATES}


def find_task(records: list[TaskRecord], task_id: str) -> TaskRecord:
    """The one record whose id starts with `task_id`; ConfigError otherwise."""
    found = [r for r in records if r["task_id"].startswith(task_id.lower())]
    if not found:
        raise ConfigError(f"no task with id {task_id!r} in the recorded task history")
    if len({r["task_id"] for r in found}) > 1:
        raise ConfigError(f"task id prefix {task_id!r} is ambiguous ({len(found)} tasks); give more of it")
    return found[0]
