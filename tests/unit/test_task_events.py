"""The raylet's task state log folded into records and bounded GCS batches (pure)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from zray.common.messages.task import ObjectLoc, TaskSpec
from zray.common.serialization import serialize_error
from zray.common.task_records import decode_batch, merge_batches
from zray.services.raylet.state import Task
from zray.services.raylet.task_events import FULL_LOG, TaskEvents, batch_key


def task(n: int, missing: int = 0, name: str = "f") -> Task:
    spec = TaskSpec(task_id=f"{n:032x}", job_id="01000000", parent_task_id="0" * 32,
                    function_id="fn", function_name=name, owner="o")
    return Task(spec, [], b"owner", {"CPU": 1.0}, missing=missing)


def worker(n: int) -> Any:
    return SimpleNamespace(worker_id=bytes([n]) * 16, pid=1000 + n)


def never_waits(state: str, task_id: str) -> str:
    return "something"


def flush(events: TaskEvents, live: set[str] | None = None) -> list[tuple[str, bytes | None]]:
    return events.flush(lambda tid: tid in (live or set()), never_waits)


def records(writes: list[tuple[str, bytes | None]], before: Any = ()) -> list[Any]:
    """Records folded from earlier batches (`before`) and these writes."""
    batches = [*before, *((k, v) for k, v in writes if v is not None)]
    return merge_batches(batches)


def test_transitions_fold_into_one_record_with_its_run() -> None:
    ev = TaskEvents("node")
    t = task(1)
    ev.submitted(t)
    ev.queued(t, feasible=True)
    ev.running(t, worker(1))
    ev.finished(t, [ObjectLoc(object_id="x", size=1)], [])
    writes = flush(ev)
    assert [k for k, _ in writes] == [batch_key("node", 1)]
    (rec,) = records(writes)
    assert [e[0] for e in decode_batch(writes[0][1] or b"")["events"]] == ["SUBMITTED", "RUNNING", "FINISHED"]
    assert rec["state"] == "FINISHED" and rec["pid"] == 1001 and rec["worker_id"] == (b"\1" * 16).hex()
    assert len(rec["runs"]) == 1 and rec["runs"][0]["end"] >= rec["runs"][0]["start"]
    assert ev.live == {}, "finished tasks leave the raylet's memory"
    assert flush(ev) == [], "nothing changed, nothing written"
    assert ev.summary() == {"counts": {"FINISHED": 1, "FAILED": 0}, "failures": []}


def test_a_burst_asks_for_an_early_flush_once() -> None:
    ev = TaskEvents("node")
    asked: list[int] = []
    ev.on_full = lambda: asked.append(len(ev.log))
    n = 0
    while len(ev.log) < FULL_LOG + 100:
        n += 1
        ev.submitted(task(n))
        ev.finished(task(n), [], [])
    assert len(asked) == 1 and asked[0] >= FULL_LOG, "asked once, when the log was full"
    assert len(records(flush(ev))) == n
    for i in range(FULL_LOG // 2 + 1):
        ev.submitted(task(n + 1 + i))
        ev.finished(task(n + 1 + i), [], [])
    assert len(asked) == 2, "asked again once the flushed log filled up anew"

def test_pending_states_and_waits() -> None:
    ev = TaskEvents("node")
    a, b = task(1, missing=1), task(2)
    ev.submitted(a)
    ev.submitted(b)
    ev.queued(b, feasible=False)
    live = {a.spec.task_id, b.spec.task_id}
    recs = {r["task_id"][-1]: r for r in records(flush(ev, live))}
    assert recs["1"]["state"] == "PENDING_ARGS" and recs["1"]["waiting_on"] == "something"
    assert recs["2"]["state"] == "PENDING_RESOURCES"


def test_failure_keeps_the_error_text_and_retries_keep_each_attempt() -> None:
    ev = TaskEvents("node")
    t = task(1)
    ev.submitted(t)
    ev.running(t, worker(1))
    ev.retried(t, "lost its worker")
    t.spec = t.spec.model_copy(update={"attempt": 1})
    ev.queued(t, True)
    ev.running(t, worker(2))
    payload = serialize_error(ValueError("bad input")).to_bytes()
    ev.finished(t, [ObjectLoc(object_id="x", size=len(payload), buf=0, is_error=True)], [payload])
    writes = flush(ev)
    (batch,) = [decode_batch(v) for _, v in writes if v is not None]
    # Each event carries the attempt it was about, though the retry came before the flush.
    assert [e[3] for e in batch["events"] if e[0] == "RUNNING"] == [0, 1]
    (rec,) = records(writes)
    assert rec["state"] == "FAILED" and "bad input" in rec["error"] and rec["attempt"] == 1
    assert [(r["state"], r["attempt"], r["pid"]) for r in rec["runs"]] == \
        [("RETRYING", 0, 1001), ("FAILED", 1, 1002)]
    (failure,) = ev.summary()["failures"]
    assert failure["error"] == rec["error"] and ev.summary()["counts"]["FAILED"] == 1


def test_pipelined_task_starts_when_the_one_before_it_ends() -> None:
    ev = TaskEvents("node")
    first, second = task(1), task(2)
    w = worker(1)
    for t in (first, second):
        ev.submitted(t)
        ev.running(t, w)
    ev.finished(first, [], [])
    ev.finished(second, [], [])
    recs = sorted(records(flush(ev)), key=lambda r: r["task_id"])
    assert recs[1]["runs"][0]["start"] == recs[0]["runs"][0]["end"]


def test_dropped_tasks_end_as_failed() -> None:
    ev = TaskEvents("node")
    t = task(1)
    ev.submitted(t)
    first = flush(ev, live={t.spec.task_id})
    (rec,) = records(flush(ev, live=set()), before=first)
    assert rec["state"] == "FAILED" and "job" in rec["error"]


def test_history_is_bounded_and_live_tasks_are_carried_forward() -> None:
    ev = TaskEvents("node", max_events=20)
    stuck = task(0, missing=1)
    ev.submitted(stuck)
    live = {stuck.spec.task_id}
    stored: dict[str, bytes] = {}
    for batch in range(5):
        for i in range(4):
            t = task(100 + batch * 10 + i)
            ev.submitted(t)
            ev.finished(t, [], [])
        for key, value in flush(ev, live):
            if value is None:
                stored.pop(key)
            else:
                stored[key] = value
    assert sum(len(decode_batch(v)["events"]) for v in stored.values()) <= 20
    merged = merge_batches(sorted(stored.items()))
    assert stuck.spec.task_id in {r["task_id"] for r in merged}, "a live task never drops out"
    assert len(merged) < 21
