"""Plain tasks sent straight to a worker the raylet leased to the driver.

Once a driver's task has left a worker idle with nothing else waiting, the
raylet leases the worker to the driver; the driver's next tasks of that
shape with inline arguments go to the worker directly, one at a time. These
tests check that results, errors, retries after a crash, cancellation,
nested gets and parallel bursts behave as on the path through the raylet,
and that an unused lease gives its resources back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import zray
from tests.conftest import poll_for, wait_for_file, zray_cluster
from zray.client import api

pytestmark = pytest.mark.timeout(120)

IDLE_SECONDS = 3.0  # long enough that a lease outlives each step of a test


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, Any]]:
    mp = pytest.MonkeyPatch()
    mp.setenv("ZRAY_LEASE_IDLE_SECONDS", str(IDLE_SECONDS))
    try:
        with zray_cluster(warm_workers=2, num_cpus=2) as info:
            yield info
    finally:
        mp.undo()


@zray.remote
def echo(x: Any, *, plus: int = 0) -> Any:
    return x + plus


@zray.remote
def pid() -> int:
    return os.getpid()


@zray.remote
def fail(text: str) -> None:
    raise KeyError(text)


@zray.remote
def crash_once(marker: str) -> int:
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
    return os.getpid()


@zray.remote
def rendezvous(mine: str, other: str) -> int:
    """Returns once the other task has started too: the two ran side by side."""
    open(mine, "w").close()
    deadline = time.monotonic() + 30
    while not os.path.exists(other):
        if time.monotonic() > deadline:
            raise TimeoutError("the other task never started")
        time.sleep(0.01)
    return os.getpid()


@zray.remote
def outer(x: int) -> int:
    return zray.get(echo.remote(x, plus=1), timeout=30) * 10


def leases() -> dict[str, dict[str, float]]:
    """The driver's leases, after reading what the raylet sent it (an idle
    driver reads only when it next calls zray)."""
    client = api._client()
    with client.lock:
        client._pump(0)
    return client.leased


def leased_worker() -> str:
    """Run a task and wait for the raylet to lease its worker to this driver."""
    zray.get(echo.remote(0), timeout=30)
    return poll_for(lambda: next(iter(leases()), ""), 10,
                    what="the raylet to lease a worker to the driver")


def went_direct(ref: Any) -> bool:
    return any(ref.hex() in returns for returns in api._client().lease_last.values())


@pytest.mark.usefixtures("cluster")
class TestLeasedWorker:
    def test_tasks_in_sequence_go_direct_with_their_results(self) -> None:
        leased_worker()
        for i in range(200):
            ref = echo.remote(i, plus=i)
            assert went_direct(ref)
            assert zray.get(ref, timeout=30) == 2 * i
        pids = {zray.get(pid.remote(), timeout=30) for _ in range(20)}
        assert len(pids) == 1, "tasks in sequence should all run on the leased worker"

    def test_an_error_keeps_its_type_and_the_lease_keeps_working(self) -> None:
        leased_worker()
        ref = fail.remote("missing-key")
        assert went_direct(ref)
        with pytest.raises(KeyError, match="missing-key"):
            zray.get(ref, timeout=30)
        assert zray.get(echo.remote(5), timeout=30) == 5

    def test_by_reference_arguments_go_through_the_raylet(self) -> None:
        leased_worker()
        ref = echo.remote(zray.put(20), plus=1)
        assert not went_direct(ref)
        assert zray.get(ref, timeout=30) == 21

    def test_a_task_whose_worker_dies_is_retried(self, tmp_path: Path) -> None:
        worker = leased_worker()
        ref = crash_once.remote(str(tmp_path / "crashed"))
        assert went_direct(ref)
        assert zray.get(ref, timeout=60) > 0  # the retry ran, on another worker
        poll_for(lambda: worker not in leases(), 10,
                 what="the lease on the dead worker to end")

    def test_a_task_without_retries_whose_worker_dies_fails(self, tmp_path: Path) -> None:
        leased_worker()
        ref = crash_once.options(max_retries=0).remote(str(tmp_path / "crashed"))
        assert went_direct(ref)
        with pytest.raises(zray.WorkerCrashedError, match="exited with code 3"):
            zray.get(ref, timeout=60)
        assert zray.get(echo.remote(1), timeout=30) == 1

    def test_cancel_a_running_direct_task(self, tmp_path: Path) -> None:
        leased_worker()
        release, started = str(tmp_path / "release"), str(tmp_path / "started")
        ref = wait_for_file.remote(release, started)
        assert went_direct(ref)
        poll_for(lambda: os.path.exists(started), 30, what="the task to start")
        zray.cancel(ref, force=True)
        with pytest.raises(zray.TaskCancelledError):
            zray.get(ref, timeout=30)
        assert zray.get(echo.remote(2), timeout=30) == 2

    def test_a_direct_task_may_wait_on_a_nested_task(self) -> None:
        leased_worker()
        ref = outer.remote(4)
        assert went_direct(ref)
        assert zray.get(ref, timeout=60) == 50

    def test_tasks_submitted_together_still_run_side_by_side(self, tmp_path: Path) -> None:
        leased_worker()
        a, b = str(tmp_path / "a"), str(tmp_path / "b")
        first, second = rendezvous.remote(a, b), rendezvous.remote(b, a)
        assert went_direct(first) and not went_direct(second)
        assert len(set(zray.get([first, second], timeout=60))) == 2

    def test_an_unused_lease_gives_its_cpu_back(self) -> None:
        leased_worker()
        poll_for(lambda: not leases(), IDLE_SECONDS + 10, what="the unused lease to end")
        poll_for(lambda: zray.available_resources().get("CPU") == 2.0, 15,
                 what="both CPUs to be free again",
                 on_timeout=lambda: f"available: {zray.available_resources()}")


@zray.remote
class Counter:
    def __init__(self) -> None:
        self.value = 0

    def incr(self) -> int:
        self.value += 1
        return self.value


@zray.remote
def incr_through(counter: Any, times: int) -> list[int]:
    return zray.get([counter.incr.remote() for _ in range(times)], timeout=60)


@pytest.mark.usefixtures("cluster")
def test_a_task_sent_as_the_lease_ends_does_not_wait_behind_an_actor() -> None:
    # The actor's constructor ends the lease; the task that went straight to
    # the leased worker meanwhile must not have the worker taken for the
    # actor it waits on. The function is exported first: exporting it between
    # the two submissions would give the raylet time to end the lease before
    # the task is sent.
    assert zray.get(incr_through.remote(None, 0), timeout=30) == []
    leased_worker()
    counter = Counter.remote()
    first = incr_through.remote(counter, 5)
    assert went_direct(first)
    rest = [incr_through.remote(counter, 5) for _ in range(2)]
    results = zray.get([first, *rest], timeout=60)
    assert sorted(v for seen in results for v in seen) == list(range(1, 16))
    zray.kill(counter)
