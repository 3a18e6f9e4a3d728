"""Task state tracking inside a raylet: cheap on the task path, flushed in batches.

The raylet's hooks append `(task, state, wall time, extra)` tuples to a list
(one tuple per transition, nothing else on the task path). Once a second
`flush` folds them into one record per task and returns one GCS write: a
batch `node_id:seq` holding the records that changed. Readers merge batches
in key order (a later batch's record of a task wins; see
zray/common/task_records.py). History is bounded: the oldest batches are
deleted once the batches hold more than `max_records` records; a task that is
still live when its batch goes is written again in the next batch, so live
tasks never drop out.
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
)

MAX_RECORDS = 20_000
MAX_RUNS = 10  # attempts kept per task for the timeline
MAX_FAILURES = 10  # latest failures kept for the summary
Event = tuple[Any, str, float, Any]


def batch_key(node_id: str, seq: int) -> str:
    return f"{node_id}:{seq:012d}"


class TaskEvents:
    def __init__(self, node_id: str, max_records: int = MAX_RECORDS) -> None:
        self.node_id = node_id
        self.max_records = max_records
        self.log: list[Event] = []
        self.live: dict[str, TaskRecord] = {}  # records of tasks not finished yet
        self.seq = 0
        self.batches: deque[tuple[int, int]] = deque()  # (seq, records) in the GCS
        self.written_in: dict[str, int] = {}  # live task id -> seq of its last batch
        self.worker_last_end: dict[str, float] = {}
        self.ended: dict[str, int] = {FINISHED: 0, FAILED: 0}
        self.failures: deque[TaskRecord] = deque(maxlen=MAX_FAILURES)

    # hooks: called by the raylet on the task path -------------------------
    def submitted(self, task: Any) -> None:
        self.log.append((task, PENDING_ARGS if task.missing else QUEUED, time.time(), None))

    def queued(self, task: Any, feasible: bool) -> None:
        self.log.append((task, QUEUED if feasible else PENDING_RESOURCES, time.time(), None))

    def running(self, task: Any, worker: Any) -> None:
        self.log.append((task, RUNNING, time.time(), worker))

    def retried(self, task: Any, why: str) -> None:
        """Before the raylet bumps the attempt number."""
        self.log.append((task, RETRYING, time.time(), (why, task.spec.attempt)))

    def finished(self, task: Any, returns: list[ObjectLoc], bufs: list[Any]) -> None:
        error = None
        for loc in returns:
            if loc.is_error:
                error = bufs[loc.buf] if loc.buf >= 0 else b""
                break
        if error is None:
            self.log.append((task, FINISHED, time.time(), None))
        else:
            self.log.append((task, FAILED, time.time(), error))

    # folding and flushing (once a second, off the task path) ----------------
    def fold(self, is_live: Callable[[str], bool], describe_wait: Callable[[Any, str], str]) -> \
            dict[str, TaskRecord]:
        """Apply the logged transitions; the records that changed, by task id."""
        log, self.log = self.log, []
        changed: dict[str, TaskRecord] = {}
        for task, state, when, extra in log:
            spec = task.spec
            rec = self.live.get(spec.task_id)
            if rec is None:
                rec = self.live[spec.task_id] = _new_record(task, self.node_id, when)
            changed[spec.task_id] = rec
            _apply(rec, state, when, extra, spec.attempt, self.worker_last_end)
        for task_id, rec in self.live.items():
            if rec["state"] not in TERMINAL and not is_live(task_id):
                # Dropped by the raylet without a result (its job ended).
                rec["state"] = FAILED
                rec["error"] = "dropped: the job that submitted it ended"
                rec["ended"] = time.time()
                changed[task_id] = rec
        for task_id, rec in changed.items():
            if rec["state"] in (PENDING_ARGS, PENDING_RESOURCES, QUEUED, RETRYING):
                rec["waiting_on"] = describe_wait(rec, task_id)
            else:
                rec["waiting_on"] = ""
        return changed

    def flush(self, is_live: Callable[[str], bool], describe_wait: Callable[[Any, str], str]) -> \
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
        for task_id, rec in changed.items():
            if rec["state"] in TERMINAL:
                self.live.pop(task_id, None)
                self.written_in.pop(task_id, None)
                self.ended[rec["state"]] += 1
                if rec["state"] == FAILED:
                    self.failures.append(rec)
            else:
                self.written_in[task_id] = self.seq
        self.batches.append((self.seq, len(changed)))
        writes.append((batch_key(self.node_id, self.seq), json.dumps(list(changed.values())).encode()))
        return writes

    def summary(self) -> dict[str, Any]:
        """Counts by state (live tasks now, ended ones in total) and the latest failures."""
        counts = dict(self.ended)
        for rec in self.live.values():
            counts[rec["state"]] = counts.get(rec["state"], 0) + 1
        return {"counts": counts, "failures": list(self.failures)}


def _new_record(task: Any, node_id: str, when: float) -> TaskRecord:
    spec = task.spec
    if spec.actor_creation is not None:
        kind, actor_id = "ACTOR_CREATION_TASK", spec.actor_creation.actor_id
        name = f"{spec.actor_creation.class_name}.__init__"
    elif spec.actor_id is not None:
        kind, actor_id = "ACTOR_TASK", spec.actor_id
        name = spec.function_name
    else:
        kind, actor_id, name = "NORMAL_TASK", None, spec.function_name
    return {
        "task_id": spec.task_id, "job_id": spec.job_id, "name": spec.name or name,
        "func": name, "type": kind, "actor_id": actor_id, "state": QUEUED, "node_id": node_id,
        "worker_id": None, "pid": None, "attempt": spec.attempt, "submitted": when,
        "started": None, "ended": None, "waiting_on": "", "resources": dict(task.resources),
        "error": None, "runs": [],
    }


def _apply(rec: TaskRecord, state: str, when: float, extra: Any, attempt: int,
           worker_last_end: dict[str, float]) -> None:
    rec["state"] = state
    rec["attempt"] = attempt
    if state == RUNNING:
        rec["worker_id"] = extra.worker_id.hex()
        rec["pid"] = extra.pid
        rec["started"] = when
        rec["ended"] = None
        return
    if state in (FINISHED, FAILED) or state == RETRYING:
        worker_id = rec["worker_id"]
        if rec["started"] is not None and worker_id is not None:
            # A task sent to a busy worker (pipelined) starts when the previous one ends.
            start = max(rec["started"], worker_last_end.get(worker_id, 0.0))
            rec["started"] = start
            worker_last_end[worker_id] = when
            runs = rec["runs"]
            runs.append({"worker_id": worker_id, "pid": rec["pid"], "start": start, "end": when,
                         "attempt": extra[1] if state == RETRYING else attempt, "state": state})
            del runs[:-MAX_RUNS]
        if state == RETRYING:
            rec["error"] = str(extra[0])
            rec["started"] = None
        else:
            rec["ended"] = when
        if state == FAILED:
            rec["error"] = error_text(extra)


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
