"""Task state records (written by raylets, read by `zray list`, the timeline
and the dashboard) and the pure logic over them: merging, filtering, summing.
"""

from __future__ import annotations

import gc
import json
import zlib
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
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


# How raylets store task events: a batch is zlib-compressed JSON {"node_id": ...,
# "events": [...]}, each event a small array, times in integer microseconds
# (cheap to encode: a raylet writes a few for every task it runs). Compressed, a
# second of tiny tasks is a fifth of its JSON (mostly the random task ids), and
# the GCS keeps, copies and maps that much less:
#   [SUBMITTED, task_id, t, job_id, name, func, type, actor_id, resources, state]
#   [RUNNING, task_id, t, attempt, worker_id, pid]
#   [RETRYING, task_id, t, attempt that failed, why]
#   [FAILED, task_id, t, attempt, error text]
#   [QUEUED | PENDING_ARGS | PENDING_RESOURCES | FINISHED, task_id, t, attempt]
#   [WAITING_ON, task_id, text]
SUBMITTED = "SUBMITTED"
WAITING_ON = "WAITING_ON"
MAX_RUNS = 10  # attempts kept per task for the timeline
_BATCH_LEVEL = 1  # zlib's fastest: ~1.5 us a task on the raylet, 5x smaller


def encode_batch(node_id: str, events: list[list[Any]]) -> bytes:
    return zlib.compress(json.dumps({"node_id": node_id, "events": events}).encode(), _BATCH_LEVEL)


def decode_batch(value: bytes) -> dict[str, Any]:
    """A stored batch (plain JSON is read too)."""
    raw = bytes(value)
    return json.loads(raw if raw[:1] == b"{" else zlib.decompress(raw))  # type: ignore[no-any-return]


def merge_batches(batches: Iterable[tuple[str, bytes]],
                  dead_nodes: Collection[str] = ()) -> list[TaskRecord]:
    """One record per task, folded from (key, batch) pairs.

    A task forwarded to another node, retried or rebuilt has events from
    several nodes, so they are folded in time order, not batch order. A task
    whose latest state came from a node in `dead_nodes` and had not ended
    shows FAILED: nothing will report on it again."""
    with _collector_paused():
        return _merge(batches, dead_nodes)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The fold holds every event (a list each) at once; the garbage collector's
    passes over them cost three times the fold itself. Nothing it builds is cyclic."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _merge(batches: Iterable[tuple[str, bytes]], dead_nodes: Collection[str]) -> list[TaskRecord]:
    timed: list[tuple[int, str, list[Any]]] = []
    last_time: dict[str, int] = {}
    for _, value in batches:  # a node's batches come in order (their keys are node:seq)
        batch = decode_batch(value)
        node_id = batch["node_id"]
        when = last_time.get(node_id, 0)
        for event in batch["events"]:
            if event[0] != WAITING_ON:  # untimed: as of the event before it
                when = event[2]
            timed.append((when, node_id, event))
        last_time[node_id] = when
    timed.sort(key=lambda item: item[0])  # stable: a batch's order holds for equal times
    records: dict[str, dict[str, Any]] = {}
    state_node: dict[str, str] = {}  # the node whose event set a task's current state
    worker_last_end: dict[str, float] = {}
    for _, node_id, event in timed:
        kind, task_id = event[0], event[1]
        rec = records.get(task_id)
        if kind == SUBMITTED:
            if rec is None:
                records[task_id] = _new_record(event, node_id)
            else:  # forwarded there, or rerun there to rebuild its results
                rec.update(state=event[-1], node_id=node_id, waiting_on="")
            state_node[task_id] = node_id
        elif rec is None:
            continue  # its first events were dropped with an old batch
        elif kind == WAITING_ON:
            rec["waiting_on"] = event[2]
        else:
            _apply(rec, event, worker_last_end)
            state_node[task_id] = node_id
            if kind not in TERMINAL:
                rec["node_id"] = node_id
    for task_id, rec in records.items():
        if rec["state"] not in TERMINAL and state_node[task_id] in dead_nodes:
            rec.update(state=FAILED, waiting_on="",
                       error=f"node {state_node[task_id][:12]} died while the task was {rec['state']}")
    return sorted(records.values(), key=lambda r: r["submitted"])  # type: ignore[arg-type,return-value]


def _new_record(event: list[Any], node_id: str) -> dict[str, Any]:
    _, task_id, when, job_id, name, func, kind, actor_id, resources, state = event
    return {"task_id": task_id, "job_id": job_id, "name": name, "func": func, "type": kind,
            "actor_id": actor_id, "state": state, "node_id": node_id, "worker_id": None, "pid": None,
            "attempt": 0, "submitted": when / 1e6, "started": None, "ended": None, "waiting_on": "",
            "resources": resources, "error": None, "runs": []}


def _apply(rec: dict[str, Any], event: list[Any], worker_last_end: dict[str, float]) -> None:
    state, when, attempt = event[0], event[2] / 1e6, event[3]
    rec["state"] = state
    if state == RUNNING:
        rec.update(attempt=attempt, worker_id=event[4], pid=event[5], started=when, ended=None)
        return
    if state not in (FINISHED, FAILED, RETRYING):
        rec["attempt"] = attempt
        return
    rec["waiting_on"] = ""
    worker_id = rec["worker_id"]
    if rec["started"] is not None and worker_id is not None:
        # A task sent to a busy worker (pipelined) starts when the one before it ends.
        start = max(rec["started"], worker_last_end.get(worker_id, 0.0))
        worker_last_end[worker_id] = when
        rec["started"] = start
        rec["runs"] = [*rec["runs"], {"worker_id": worker_id, "pid": rec["pid"], "start": start,
                                      "end": when, "attempt": attempt, "state": state}][-MAX_RUNS:]
    if state == RETRYING:
        rec.update(error=event[4], started=None, attempt=attempt + 1)
        return
    rec.update(ended=when, attempt=attempt)
    if state == FAILED:
        rec["error"] = event[4]


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
