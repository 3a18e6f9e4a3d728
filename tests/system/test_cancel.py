"""zray.cancel: queued tasks, running tasks and force=True all end in TaskCancelledError."""

from __future__ import annotations

import functools
import os
import signal
import time
from pathlib import Path

import pytest

import zray
from tests.conftest import Gate, poll_for

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("cluster")]


@zray.remote
def echo(x: object) -> object:
    return x


@zray.remote
def busy_loop(started: str) -> str:
    """Runs Python code until interrupted (a cancel without force interrupts it)."""
    Path(started).touch()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return "finished"


@zray.remote(max_retries=3)
def ignores_interrupts(started: str) -> str:
    """Blocks with SIGINT ignored: only force=True stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    Path(started).touch()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return "finished"


def occupy_all_cpus(gate: Gate, n: int = 2) -> list[zray.ObjectRef]:
    """Start n blocking tasks and wait until each one runs."""
    refs = []
    for _ in range(n):
        ref, started = gate.blocking_task()
        poll_for(functools.partial(os.path.exists, started), 30, what="a blocking task to start")
        refs.append(ref)
    return refs


def test_cancel_a_queued_task(gate: Gate) -> None:
    blockers = occupy_all_cpus(gate)
    queued = echo.remote("never runs")
    sync_with_raylet()
    zray.cancel(queued)
    with pytest.raises(zray.TaskCancelledError):
        zray.get(queued, timeout=30)
    gate.open()
    assert zray.get(blockers, timeout=30) == ["released", "released"]


def sync_with_raylet() -> None:
    """A put into the store is a request/reply with the raylet: once it returns,
    the raylet has handled every message this driver sent before it."""
    zray.put(b"x" * 300_000)


def test_cancel_several_queued_tasks(gate: Gate) -> None:
    # Tasks waiting behind busy workers (some may already sit in a worker's
    # queue) must resolve as cancelled without waiting for the running tasks,
    # which may never end on their own.
    blockers = occupy_all_cpus(gate)
    queued = [echo.remote(i) for i in range(6)]
    sync_with_raylet()  # the raylet has queued them all before the cancels arrive
    for ref in queued:
        zray.cancel(ref)
    _, unresolved = zray.wait(queued, num_returns=len(queued), timeout=10)
    gate.open()
    assert zray.get(blockers, timeout=30) == ["released", "released"]
    for ref in queued:
        with pytest.raises(zray.TaskCancelledError):
            zray.get(ref, timeout=30)
    assert not unresolved, (f"{len(unresolved)} of {len(queued)} cancelled tasks resolved only "
                            f"after the running tasks ended")


def test_cancel_a_task_waiting_for_its_arguments(gate: Gate) -> None:
    blocker, started = gate.blocking_task()
    dependent = echo.remote(blocker)
    zray.cancel(dependent)
    with pytest.raises(zray.TaskCancelledError):
        zray.get(dependent, timeout=30)
    gate.open()
    assert zray.get(blocker, timeout=30) == "released"


def test_cancel_a_running_task(tmp_path: Path) -> None:
    started = str(tmp_path / "started")
    ref = busy_loop.remote(started)
    poll_for(lambda: os.path.exists(started), 30, what="the task to start")
    zray.cancel(ref)
    with pytest.raises(zray.TaskCancelledError) as info:
        zray.get(ref, timeout=30)
    assert "busy_loop" in str(info.value)
    # The worker survives a cancel without force and keeps serving.
    assert zray.get(echo.remote("alive"), timeout=30) == "alive"


def test_force_cancel_kills_the_worker_and_is_not_retried(tmp_path: Path) -> None:
    started = str(tmp_path / "started")
    ref = ignores_interrupts.remote(started)
    poll_for(lambda: os.path.exists(started), 30, what="the task to start")
    zray.cancel(ref, force=True)
    with pytest.raises(zray.TaskCancelledError):
        zray.get(ref, timeout=30)
    assert not isinstance(_error_of(ref), zray.WorkerCrashedError)
    # max_retries=3, but a cancelled task is never run again.
    os.unlink(started)
    ready, _ = zray.wait([echo.remote("after force")], timeout=30)
    assert len(ready) == 1
    assert not os.path.exists(started)
    assert zray.get(echo.remote("still serving"), timeout=30) == "still serving"


def test_cancel_a_finished_task_is_a_no_op() -> None:
    ref = echo.remote(7)
    assert zray.get(ref, timeout=30) == 7
    zray.cancel(ref)
    zray.cancel(ref, force=True)
    assert zray.get(ref, timeout=30) == 7


def test_cancel_argument_errors() -> None:
    with pytest.raises(TypeError):
        zray.cancel("not a ref")  # type: ignore[arg-type]


def _error_of(ref: zray.ObjectRef) -> BaseException | None:
    try:
        zray.get(ref, timeout=30)
    except BaseException as exc:  # noqa: BLE001 - returned for inspection
        return exc
    return None
