"""Task state tracking inside a raylet: cheap on the task path, flushed in batches.

The raylet's hooks append `(task, state, time in us, extra)` tuples to a list
(one tuple per transition, nothing else on the task path). Once a second
`flush` folds them into one compact row per task (see ROW_FIELDS in
zray/common/task_records.py) and returns one GCS write: a batch `node_id:seq`
of the rows that changed. A task first seen in this fold that has not ended is
left for the next flush, so a short task is encoded once, not twice.

Readers merge batches in key order (a later batch's row of a task wins).
History is bounded: the oldest batches are deleted once the batches hold more
than `max_records` rows; a task still live when its batch goes is written
again in the next batch, so live tasks never drop out.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from zray.common.messages.task import ObjectLoc
from zray.common.task_records import (
    FAILED,
    FINISHED,
    PENDING_ARGS,
    PENDING_RESOURCES,
    QUEUED,
    RETRYING,
    RUNNING,
    TERMINAL,
    TaskRecord,
    record_from_row,
)

MAX_RECORDS = 20_000
MAX_RUNS = 10  # attempts kept per task for the timeline
MAX_FAILURES = 10  # latest failures kept for the summary
WAITING = (PENDING_ARGS, PENDING_RESOURCES, QUEUED, RETRYING)
# Row indexes (ROW_FIELDS order).
TASK_ID, STATE, WORKER_ID, PID, ATTEMPT, STARTED, ENDED, WAITING_ON, ERROR, RUNS = \
    0, 6, 7, 8, 9, 11, 12, 13, 15, 16
Row = list[Any]
Event = tuple[Any, str, int, Any]


def batch_key(node_id: str, seq: int) -> str:
    return f"{node_id}:{seq:012d}"


def _now_us() -> int:
    return time.time_ns() // 1000


class TaskEvents:
    def __init__(self, node_id: str, max_records: int = MAX_RECORDS) -> None:
        self.node_id = node_id
        self.max_records = max_records
        self.log: list[Event] = []
        self.live: dict[str, Row] = {}  # rows of tasks not ended yet
        self.seq = 0
        self.batches: deque[tuple[int, int]] = deque()  # (seq, rows) in the GCS
        self.written_in: dict[str, int] = {}  # live task id -> seq of its last batch
        self.worker_last_end: dict[str, int] = {}
        self.ended: dict[str, int] = {FINISHED: 0, FAILED: 0}
        self.failures: deque[Row] = deque(maxlen=MAX_FAILURES)
        self.deferred: set[str] = set()  # new live tasks to write next flush

    # hooks: called by the raylet on the task path -------------------------
    def submitted(self, task: Any) -> None:
        self.log.append((task, PENDING_ARGS if task.missing else QUEUED, _now_us(), None))

    def queued(self, task: Any, feasible: bool) -> None:
        self.log.append((task, QUEUED if feasible else PENDING_RESOURCES, _now_us(), None))

    def running(self, task: Any, worker: Any) -> None:
        self.log.append((task, RUNNING, _now_us(), worker))

    def retried(self, task: Any, why: str) -> None:
        """Before the raylet bumps the attempt number."""
        self.log.append((task, RETRYING, _now_us(), (why, task.spec.attempt)))

    def finished(self, task: Any, returns: list[ObjectLoc], bufs: list[Any]) -> None:
        for loc in returns:
            if loc.is_error:
                error = bufs[loc.buf] if loc.buf >= 0 else b""
                self.log.append((task, FAILED, _now_us(), error))
                return
        self.log.append((task, FINISHED, _now_us(), None))

    # folding and flushing (once a second, off the task path) ----------------
    def fold(self, is_live: Callable[[str], bool], describe_wait: Callable[[str, str], str]) -> \
            dict[str, Row]:
        """Apply the logged transitions; the rows to write, by task id."""
        log, self.log = self.log, []
        live = self.live
        changed: dict[str, Row] = {tid: live[tid] for tid in self.deferred if tid in live}
        fresh: set[str] = set()
        for task, state, when, extra in log:
            spec = task.spec
            row = live.get(spec.task_id)
            if row is None:
                row = live[spec.task_id] = _new_row(task, when)
                fresh.add(spec.task_id)
            changed[spec.task_id] = row
            _apply(row, state, when, extra, spec.attempt, self.worker_last_end)
        for task_id, row in live.items():
            if row[STATE] not in TERMINAL and not is_live(task_id):
                # Dropped by the raylet without a result (its job ended).
                row[STATE] = FAILED
                row[ERROR] = "dropped: the job that submitted it ended"
                row[ENDED] = _now_us()
                changed[task_id] = row
        self.deferred = {tid for tid in fresh if changed[tid][STATE] not in TERMINAL}
        for task_id in self.deferred:
            del changed[task_id]  # written next time, with whatever happened by then
        for task_id, row in changed.items():
            row[WAITING_ON] = describe_wait(row[STATE], task_id) if row[STATE] in WAITING else ""
        return changed

    def flush(self, is_live: Callable[[str], bool], describe_wait: Callable[[str, str], str]) -> \
            list[tuple[str, bytes | None]]:
        """(key, value) writes of the TASK_EVENTS table: a new batch, deletions of old ones."""
        changed = self.fold(is_live, describe_wait)
        writes: list[tuple[str, bytes | None]] = []
        total = sum(n for _, n in self.batches)
        while self.batches and total + len(changed) > self.max_records:
            old_seq, count = self.batches.popleft()
            total -= count
            writes.append((batch_key(self.node_id, old_seq), None))
            for task_id, seq in self.written_in.items():
                if seq == old_seq:  # still live: carried into the new batch
                    changed[task_id] = self.live[task_id]
        if not changed:
            return writes
        self.seq += 1
        for task_id, row in changed.items():
            if row[STATE] in TERMINAL:
                self.live.pop(task_id, None)
                self.written_in.pop(task_id, None)
                self.ended[row[STATE]] += 1
                if row[STATE] == FAILED:
                    self.failures.append(row)
            else:
                self.written_in[task_id] = self.seq
        self.batches.append((self.seq, len(changed)))
        value = json.dumps({"node_id": self.node_id, "rows": list(changed.values())})
        writes.append((batch_key(self.node_id, self.seq), value.encode()))
        return writes

    def summary(self) -> dict[str, Any]:
        """Counts by state (live tasks now, ended ones in total) and the latest failures."""
        counts = dict(self.ended)
        for row in self.live.values():
            counts[row[STATE]] = counts.get(row[STATE], 0) + 1
        failures: list[TaskRecord] = [record_from_row(r, self.node_id) for r in self.failures]
        return {"counts": counts, "failures": failures}


def _new_row(task: Any, when: int) -> Row:
    spec = task.spec
    if spec.actor_creation is not None:
        kind, actor_id = "ACTOR_CREATION_TASK", spec.actor_creation.actor_id
        name = f"{spec.actor_creation.class_name}.__init__"
    elif spec.actor_id is not None:
        kind, actor_id, name = "ACTOR_TASK", spec.actor_id, spec.function_name
    else:
        kind, actor_id, name = "NORMAL_TASK", None, spec.function_name
    # In ROW_FIELDS order.
    return [spec.task_id, spec.job_id, spec.name or name, name, kind, actor_id, QUEUED, None, None,
            spec.attempt, when, None, None, "", task.resources, None, []]


def _apply(row: Row, state: str, when: int, extra: Any, attempt: int,
           worker_last_end: dict[str, int]) -> None:
    row[STATE] = state
    row[ATTEMPT] = attempt
    if state == RUNNING:
        row[WORKER_ID] = extra.worker_id.hex()
        row[PID] = extra.pid
        row[STARTED] = when
        row[ENDED] = None
        return
    if state not in (FINISHED, FAILED, RETRYING):
        return
    worker_id = row[WORKER_ID]
    if row[STARTED] is not None and worker_id is not None:
        # A task sent to a busy worker (pipelined) starts when the previous one ends.
        start = max(row[STARTED], worker_last_end.get(worker_id, 0))
        row[STARTED] = start
        worker_last_end[worker_id] = when
        runs = row[RUNS]
        runs.append([worker_id, row[PID], start, when, extra[1] if state == RETRYING else attempt, state])
        del runs[:-MAX_RUNS]
    if state == RETRYING:
        row[ERROR] = str(extra[0])
        row[STARTED] = None
    else:
        row[ENDED] = when
    if state == FAILED:
        row[ERROR] = error_text(extra)


def error_text(payload: Any) -> str:
    """The message (with its remote traceback) of a failed task's error payload."""
    if isinstance(payload, str):
        return payload
    if not payload:
        return "failed"
    from zray.common.serialization import deserialize

    try:
        _, error = deserialize(payload)
    except Exception as exc:  # unpicklable here: the raylet lacks the user's modules
        return f"(error not readable by the raylet: {exc})"
    return str(error)
