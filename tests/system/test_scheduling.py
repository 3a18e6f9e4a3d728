"""Local scheduling: a free CPU is used, and a short task never waits for an
unrelated long one (neither to start nor to report its result)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import zray
from tests.conftest import Gate, poll_for, warm_up, worker_pid, zray_cluster

pytestmark = pytest.mark.timeout(90)


@zray.remote
def rendezvous(mine: str, other: str, limit: float) -> bool:
    """Announce this task runs, then wait for the other one: both must run at once."""
    Path(mine).touch()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if os.path.exists(other):
            return True
        time.sleep(0.01)
    return False


@zray.remote
def square(x: int) -> int:
    return x * x


def started_pid(path: str) -> int:
    return int(poll_for(lambda: os.path.exists(path) and Path(path).read_text(), 30,
                        what="the blocking task to start"))


def test_tasks_run_in_parallel_right_after_init(tmp_path: Path) -> None:
    # Two tasks submitted right after init on two CPUs must run at the same
    # time, even though the workers are still starting when they arrive.
    with zray_cluster(num_cpus=2):
        a, b = str(tmp_path / "a"), str(tmp_path / "b")
        refs = [rendezvous.remote(a, b, 10.0), rendezvous.remote(b, a, 10.0)]
        assert zray.get(refs, timeout=60) == [True, True]


@zray.remote
def quick_after(_: object) -> int:
    return 49


@zray.remote
def slow_after(_: object, release: str) -> str:
    deadline = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    return "released"


def test_finished_result_is_not_held_back_by_the_next_task(gate: Gate, tmp_path: Path) -> None:
    # A worker that finished a short task and goes on to a long one must report
    # the short task's result now, not when the long one ends.
    with zray_cluster(warm_workers=1, num_cpus=1):
        release_slow = str(tmp_path / "release-slow")
        # Load both functions into the worker first, as a busy cluster would have.
        assert zray.get(quick_after.remote(0), timeout=30) == 49
        assert zray.get(slow_after.remote(0, str(tmp_path)), timeout=30) == "released"
        try:
            blocker, _ = gate.blocking_task()
            # Both wait for the blocker, so they become ready together and go,
            # in this order, to the node's only worker.
            quick = quick_after.remote(blocker)
            slow = slow_after.remote(blocker, release_slow)
            gate.open()
            ready, _ = zray.wait([quick], timeout=10)
            assert ready == [quick], "the short task's result waited for the next task to end"
            assert zray.get(quick, timeout=1) == 49
        finally:
            gate.open()
            Path(release_slow).touch()
        assert zray.get([blocker, slow], timeout=30) == ["released", "released"]


@pytest.fixture(scope="module")
def two_cpus() -> Iterator[dict[str, Any]]:
    with zray_cluster(num_cpus=2) as info:
        yield info


def test_task_is_not_stuck_behind_a_running_task_while_a_worker_starts(
        two_cpus: dict[str, Any], gate: Gate) -> None:
    # The situation right after init, made deterministic: one worker runs a long
    # task, the other is being replaced. A CPU is free, so a new task must run
    # as soon as the replacement is up, not after the long task.
    workers = warm_up(2)
    holder, started = gate.blocking_task()
    holder_pid = started_pid(started)
    assert holder_pid in workers
    (other,) = workers - {holder_pid}
    os.kill(other, signal.SIGKILL)
    poll_for(lambda: not psutil.pid_exists(other), 10, what="the raylet to reap the worker")
    ref = worker_pid.remote()
    try:
        ready, _ = zray.wait([ref], timeout=10)
    finally:
        gate.open()
    ran_on = zray.get(ref, timeout=30)
    assert ready == [ref], (f"the task waited for the long task to end; it then ran on pid "
                            f"{ran_on}, the long task's worker being pid {holder_pid}")
    assert zray.get(holder, timeout=30) == "released"


def test_short_tasks_are_not_queued_behind_a_long_one(two_cpus: dict[str, Any], gate: Gate) -> None:
    # One CPU runs a long task, the other is free: a burst of short tasks must
    # all finish on the free CPU while the long task still runs.
    warm_up(2)
    holder, started = gate.blocking_task()
    holder_pid = started_pid(started)
    refs = [worker_pid.remote() for _ in range(50)]
    try:
        ready, pending = zray.wait(refs, num_returns=len(refs), timeout=10)
    finally:
        gate.open()
    ran_on = zray.get(refs, timeout=30)
    assert not pending, (f"{len(pending)} of {len(refs)} short tasks waited for the long task; "
                         f"{ran_on.count(holder_pid)} of them then ran on its worker (pid {holder_pid})")
    assert zray.get(holder, timeout=30) == "released"
