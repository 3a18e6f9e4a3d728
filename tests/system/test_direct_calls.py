"""Actor calls sent straight from the caller to the actor's worker.

After the raylet has dispatched a caller's first call to a live actor, the
caller sends calls with inline arguments to the actor's worker itself; these
tests check that order, errors, restarts, cancellation and task states are
the same as on the path through the raylet.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import zray
from tests.conftest import poll_for
from zray.client import api

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("cluster")]


@pytest.fixture
def actors() -> Iterator[list[Any]]:
    handles: list[Any] = []
    yield handles
    for handle in handles:
        with contextlib.suppress(Exception):
            zray.kill(handle)


@zray.remote
class Log:
    def __init__(self) -> None:
        self.entries: list[int] = []

    def add(self, value: int) -> int:
        self.entries.append(value)
        return len(self.entries)

    def read(self) -> list[int]:
        return list(self.entries)

    def add_blob(self, value: int, blob: bytes, progress: str) -> int:
        self.entries.append(value)
        with open(progress + ".tmp", "w") as f:
            f.write(f"{len(self.entries)} {len(blob)}")
        os.replace(progress + ".tmp", progress)
        return len(self.entries)

    def pid(self) -> int:
        return os.getpid()

    def fail(self, text: str) -> None:
        raise KeyError(text)

    def crash_once(self, marker: str) -> int:
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(3)
        return len(self.entries)

    def wait_for(self, release: str, started: str) -> str:
        open(started, "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
        return "released"


@zray.remote
def value(x: int) -> int:
    return x


def routed(actor: Any) -> bool:
    return actor.actor_id in api._client().actor_routes


def routed_log(actors: list[Any]) -> Any:
    """A new Log that has run one call (entries [0]), which this driver now calls directly."""
    log = Log.remote()
    actors.append(log)
    assert zray.get(log.add.remote(0), timeout=30) == 1
    poll_for(lambda: routed(log), 10, what="the raylet to say where the actor is")
    return log


def test_calls_go_direct_after_the_first_and_keep_their_order(actors: list[Any]) -> None:
    log = routed_log(actors)
    refs = [log.add.remote(i) for i in range(1, 300)]
    assert zray.get(refs, timeout=60) == list(range(2, 301))
    assert zray.get(log.read.remote(), timeout=30) == list(range(300))


def test_calls_the_link_cannot_take_at_once_reach_the_actor_while_the_driver_computes(
        actors: list[Any], tmp_path: Path) -> None:
    log = routed_log(actors)
    progress = str(tmp_path / "progress")
    blob = b"b" * 90_000  # inline: 300 of them are far more than the socket buffers hold
    refs = [log.add_blob.remote(i, blob, progress) for i in range(1, 301)]
    assert api._client().direct_links.backed_up, "the calls all fit: nothing waited to be sent"

    def delivered() -> bool:  # the driver makes no zray call meanwhile: its flusher sends
        with contextlib.suppress(FileNotFoundError):
            return open(progress).read() == f"301 {len(blob)}"
        return False

    poll_for(delivered, 60, what="the actor to receive all 300 calls")
    assert zray.get(refs, timeout=30) == list(range(2, 302))
    assert zray.get(log.read.remote(), timeout=30) == list(range(301))


def test_by_reference_arguments_between_direct_calls_keep_the_order(actors: list[Any]) -> None:
    log = routed_log(actors)
    refs = []
    for i in range(1, 61):
        # Every third call takes a ref: it goes through the raylet, the next ones wait for it.
        arg = value.remote(i) if i % 3 == 0 else i
        refs.append(log.add.remote(arg))
    assert zray.get(refs, timeout=60) == list(range(2, 62))
    assert zray.get(log.read.remote(), timeout=30) == list(range(61))


def test_errors_of_direct_calls_keep_their_type(actors: list[Any]) -> None:
    log = routed_log(actors)
    with pytest.raises(KeyError, match="missing-key"):
        zray.get(log.fail.remote("missing-key"), timeout=30)
    assert zray.get(log.add.remote(1), timeout=30) == 2


def test_direct_call_that_kills_the_worker_is_retried_on_the_restart(
        actors: list[Any], tmp_path: Path) -> None:
    log = Log.options(max_restarts=1, max_task_retries=1).remote()
    actors.append(log)
    first_pid = zray.get(log.pid.remote(), timeout=30)
    poll_for(lambda: routed(log), 10, what="the raylet to say where the actor is")
    zray.get([log.add.remote(i) for i in range(5)], timeout=30)
    # Sent straight to the worker, which dies running it; retried on the new worker.
    assert zray.get(log.crash_once.remote(str(tmp_path / "crashed")), timeout=60) == 0
    assert zray.get(log.pid.remote(), timeout=30) != first_pid
    # The caller learns the new worker and goes direct again.
    poll_for(lambda: routed(log), 10, what="the caller to learn the restarted worker")
    assert zray.get([log.add.remote(i) for i in range(3)], timeout=30) == [1, 2, 3]


def test_direct_call_on_a_dying_actor_raises_actor_died(actors: list[Any], tmp_path: Path) -> None:
    log = routed_log(actors)
    with pytest.raises(zray.ActorDiedError, match="exited with code 3"):
        zray.get(log.crash_once.remote(str(tmp_path / "crashed")), timeout=60)
    with pytest.raises(zray.ActorDiedError):
        zray.get(log.add.remote(1), timeout=30)
    assert not routed(log)


def test_answered_direct_calls_are_not_run_again_when_the_worker_dies_soon_after(
        actors: list[Any], tmp_path: Path) -> None:
    # The raylet may hear of answered direct calls a moment after their callers
    # did; a crash in that moment must neither re-run them nor undo the answers.
    log = Log.options(max_restarts=1).remote()
    actors.append(log)
    first_pid = zray.get(log.pid.remote(), timeout=30)
    poll_for(lambda: routed(log), 10, what="the raylet to say where the actor is")
    assert zray.get([log.add.remote(i) for i in range(5)], timeout=30) == [1, 2, 3, 4, 5]
    with pytest.raises(zray.ActorDiedError, match="the call is not retried"):
        zray.get(log.crash_once.remote(str(tmp_path / "crashed")), timeout=60)
    poll_for(lambda: zray.get(log.pid.remote(), timeout=30) != first_pid, 30,
             what="the actor to restart")
    assert zray.get(log.read.remote(), timeout=30) == []  # a fresh actor: no call ran again


def test_cancel_a_direct_call_queued_behind_a_running_one(
        actors: list[Any], tmp_path: Path) -> None:
    log = routed_log(actors)
    release, started = str(tmp_path / "release"), str(tmp_path / "started")
    running = log.wait_for.remote(release, started)
    queued = log.add.remote(1)
    poll_for(lambda: os.path.exists(started), 30, what="the first call to start")
    zray.cancel(queued)
    with pytest.raises(zray.TaskCancelledError):
        zray.get(queued, timeout=30)
    Path(release).touch()
    assert zray.get(running, timeout=30) == "released"
    assert zray.get(log.read.remote(), timeout=30) == [0]


def test_direct_calls_show_in_task_states(actors: list[Any]) -> None:
    from zray.util.state import list_tasks

    log = routed_log(actors)
    zray.get([log.read.remote() for _ in range(3)], timeout=30)

    def finished_reads() -> bool:
        rows = list_tasks(filters=[("func", "=", "Log.read")], limit=None)
        return sum(1 for r in rows if r["state"] == "FINISHED") >= 3

    poll_for(finished_reads, 30, what="the direct calls to show as FINISHED")
