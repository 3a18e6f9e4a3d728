"""Task state tracking inside a raylet: cheap on the task path, flushed in batches.

The raylet's hooks append `(task, state, time in us, extra)` tuples to a list
(nothing else on the task path). Once a second, or sooner once a burst has
filled the log (FULL_LOG), `flush` encodes them as small JSON arrays, one per
transition (see zray/common/task_records.py for the format), compressed into
one GCS write: the batch `node_id:seq`. Readers fold the events into records;
the raylet builds no per-task records itself.

History is bounded: the oldest batches are deleted once the batches hold more
than `max_events` events; a task still live when the batch with its first
event goes has that event and its latest state written again, so live tasks
never drop out.
"""

from __future__ import annotations

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
    SUBMITTED,
    TERMINAL,
    WAITING_ON,
    encode_batch,
)

MAX_EVENTS = 80_000
# Events that make a burst flush before its second is up: the log holds each
# event's task (spec, argument frames) until it is flushed, ~1.5 KB a task.
FULL_LOG = 4096
MAX_FAILURES = 10  # latest failures kept for the summary
WAITING = (PENDING_ARGS, PENDING_RESOURCES, QUEUED, RETRYING)
# (task, state, time in us, extra, attempt): the attempt as of the event, since a
# retry replaces the task's spec before the log is flushed.
Event = tuple[Any, str, int, Any, int]


def batch_key(node_id: str, seq: int) -> str:
    return f"{node_id}:{seq:012d}"


def _now_us() -> int:
    return time.time_ns() // 1000


class _Live:
    """What the raylet remembers of a task that has not ended."""

    __slots__ = ("submitted", "last", "state", "seq", "waiting_on")

    def __init__(self, submitted: list[Any], seq: int) -> None:
        self.submitted = submitted  # its SUBMITTED event
        self.last: list[Any] | None = None  # its latest state event since
        self.state: str = submitted[-1]
        self.seq = seq  # the batch holding `submitted`
        self.waiting_on = ""


class TaskEvents:
    def __init__(self, node_id: str, max_events: int = MAX_EVENTS) -> None:
        self.node_id = node_id
        self.max_events = max_events
        self.log: list[Event] = []
        self.live: dict[str, _Live] = {}
        self.seq = 0
        self.batches: deque[tuple[int, int]] = deque()  # (seq, events) in the GCS
        self.ended: dict[str, int] = {FINISHED: 0, FAILED: 0}
        self.failures: deque[dict[str, Any]] = deque(maxlen=MAX_FAILURES)
        # Called once when the log reaches FULL_LOG events, until the next flush.
        self.on_full: Callable[[], None] | None = None
        self._full_told = False

    # hooks: called by the raylet on the task path -------------------------
    def submitted(self, task: Any) -> None:
        self.log.append((task, PENDING_ARGS if task.missing else QUEUED, _now_us(), None,
                         task.spec.attempt))

    def queued(self, task: Any, feasible: bool) -> None:
        self.log.append((task, QUEUED if feasible else PENDING_RESOURCES, _now_us(), None,
                         task.spec.attempt))

    def running(self, task: Any, worker: Any) -> None:
        self.log.append((task, RUNNING, _now_us(), worker, task.spec.attempt))

    def retried(self, task: Any, why: str) -> None:
        """Before the raylet bumps the attempt number."""
        self.log.append((task, RETRYING, _now_us(), why, task.spec.attempt))

    def finished(self, task: Any, returns: list[ObjectLoc], bufs: list[Any]) -> None:
        for loc in returns:
            if loc.is_error:
                error = bufs[loc.buf] if loc.buf >= 0 else b""
                self.log.append((task, FAILED, _now_us(), error, task.spec.attempt))
                break
        else:
            self.log.append((task, FINISHED, _now_us(), None, task.spec.attempt))
        if len(self.log) >= FULL_LOG and not self._full_told and self.on_full is not None:
            self._full_told = True
            self.on_full()

    # flushing (once a second, off the task path) ---------------------------
    def flush(self, is_live: Callable[[str], bool], describe_wait: Callable[[str, str], str]) -> \
            list[tuple[str, bytes | None]]:
        """(key, value) writes of the TASK_EVENTS table: a new batch, deletions of old ones."""
        log, self.log = self.log, []
        self._full_told = False
        seq = self.seq + 1
        live = self.live
        events: list[list[Any]] = []
        for task, state, when, extra, attempt in log:
            task_id = task.spec.task_id
            entry = live.get(task_id)
            if entry is None:
                entry = live[task_id] = _Live(_submitted_event(task, when), seq)
                events.append(entry.submitted)
                if state == entry.state:
                    continue  # the submit hook's own state: the SUBMITTED event says it
            elif state == entry.state and state in WAITING:
                continue  # e.g. queued on submit, then enqueued: nothing new
            event = _state_event(task_id, state, when, extra, attempt)
            events.append(event)
            entry.last, entry.state = event, state
            if state in TERMINAL:
                del live[task_id]
                self._ended(task, event)
        now = _now_us()
        for task_id, entry in list(live.items()):
            state = entry.state
            if not is_live(task_id):  # dropped by the raylet without a result (its job ended)
                events.append([FAILED, task_id, now, 0, "dropped: the job that submitted it ended"])
                del live[task_id]
                self.ended[FAILED] += 1
            elif state in WAITING:
                text = describe_wait(state, task_id)
                if text != entry.waiting_on:
                    entry.waiting_on = text
                    events.append([WAITING_ON, task_id, text])
        writes: list[tuple[str, bytes | None]] = []
        total = sum(n for _, n in self.batches)
        while self.batches and total + len(events) > self.max_events:
            old_seq, count = self.batches.popleft()
            total -= count
            writes.append((batch_key(self.node_id, old_seq), None))
            for entry in live.values():
                if entry.seq == old_seq:  # still live: its first and latest events go again
                    entry.seq = seq
                    events.append(entry.submitted)
                    if entry.last is not None:
                        events.append(entry.last)
        if not events:
            return writes
        self.seq = seq
        self.batches.append((seq, len(events)))
        writes.append((batch_key(self.node_id, seq), encode_batch(self.node_id, events)))
        return writes

    def _ended(self, task: Any, event: list[Any]) -> None:
        state = event[0]
        self.ended[state] += 1
        if state == FAILED:
            spec = task.spec
            self.failures.append({"task_id": spec.task_id, "name": spec.name or spec.function_name,
                                  "node_id": self.node_id, "pid": getattr(task.worker, "pid", None),
                                  "ended": event[2] / 1e6, "error": event[4]})

    def summary(self) -> dict[str, Any]:
        """Counts by state (live tasks now, ended ones in total) and the latest failures."""
        counts = dict(self.ended)
        for entry in self.live.values():
            counts[entry.state] = counts.get(entry.state, 0) + 1
        return {"counts": counts, "failures": list(self.failures)}


def _submitted_event(task: Any, when: int) -> list[Any]:
    spec = task.spec
    if spec.actor_creation is not None:
        kind, actor_id = "ACTOR_CREATION_TASK", spec.actor_creation.actor_id
        name = f"{spec.actor_creation.class_name}.__init__"
    elif spec.actor_id is not None:
        kind, actor_id, name = "ACTOR_TASK", spec.actor_id, spec.function_name
    else:
        kind, actor_id, name = "NORMAL_TASK", None, spec.function_name
    return [SUBMITTED, spec.task_id, when, spec.job_id, spec.name or name, name, kind, actor_id,
            task.resources, PENDING_ARGS if task.missing else QUEUED]


def _state_event(task_id: str, state: str, when: int, extra: Any, attempt: int) -> list[Any]:
    if state == RUNNING:
        return [RUNNING, task_id, when, attempt, extra.worker_id.hex(), extra.pid]
    if state == RETRYING:
        return [RETRYING, task_id, when, attempt, str(extra)]
    if state == FAILED:
        return [FAILED, task_id, when, attempt, error_text(extra)]
    return [state, task_id, when, attempt]


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
