"""Actors on an embedded two-CPU cluster: ordered calls, handles passed around,
names, kill, constructor failures, restarts with call retries, async and
threaded actors, the runtime context and the resources an actor holds.

Detached actors across drivers and `zray status` are in test_actors_cli.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import zray
from tests.conftest import Gate, poll_for, wait_for_file
from zray.client.actor import ActorHandle

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("cluster")]

H = TypeVar("H")


@pytest.fixture
def keep() -> Iterator[Callable[[H], H]]:
    """`keep(handle)` returns the handle and kills its actor after the test,
    so that the module's cluster does not accumulate dedicated workers."""
    handles: list[Any] = []

    def track(handle: H) -> H:
        handles.append(handle)
        return handle

    yield track
    for handle in handles:
        with contextlib.suppress(Exception):
            zray.kill(handle)


def no_live_actor(name: str, namespace: str | None = None) -> bool:
    try:
        zray.get_actor(name, namespace=namespace)
    except ValueError:
        return True
    return False


# actor classes -------------------------------------------------------------------

@zray.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.value = start

    def incr(self, by: int = 1) -> int:
        self.value += by
        return self.value

    def read(self) -> int:
        return self.value

    @zray.method(num_returns=2)
    def split(self, extra: int) -> tuple[int, int]:
        return self.value, self.value + extra

    def my_actor_id(self) -> str | None:
        return zray.get_runtime_context().get_actor_id()

    def pid(self) -> int:
        return os.getpid()

    def hold(self, release: str, started: str) -> str:
        Path(started).touch()
        return zray.get(wait_for_file.remote(release), timeout=60)

    def crash(self) -> None:
        os._exit(3)

    def crash_once_then_incr(self, marker: str) -> int:
        if not os.path.exists(marker):
            Path(marker).touch()
            os._exit(3)
        return self.incr()


@zray.remote
class CallLog:
    """Records (caller, sequence number) in the order the calls run."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, int]] = []

    def append(self, caller: str, seq: int) -> int:
        self.entries.append((caller, seq))
        return len(self.entries)

    def entries_of(self) -> list[tuple[str, int]]:
        return self.entries


@zray.remote
def numbered_calls(log: Any, caller: str, n: int) -> list[int]:
    """A task that holds a handle and makes n numbered calls without waiting in between."""
    return zray.get([log.append.remote(caller, i) for i in range(n)], timeout=60)


@zray.remote
def incr_through(counter: Any, times: int) -> list[int]:
    return zray.get([counter.incr.remote() for _ in range(times)], timeout=60)


@zray.remote
def actor_id_in_task() -> str | None:
    return zray.get_runtime_context().get_actor_id()


@zray.remote
def add(a: int, b: int) -> int:
    return a + b


@zray.remote
class Relay:
    """Holds another actor's handle and calls it."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def bump(self, times: int) -> list[int]:
        return zray.get([self.target.incr.remote() for _ in range(times)], timeout=60)

    def bump_other(self, other: Any) -> int:
        return zray.get(other.incr.remote(), timeout=60)


@zray.remote
class BadConfig:
    def __init__(self, setting: int) -> None:
        raise ValueError(f"setting {setting} is out of range")

    def ping(self) -> str:
        return "pong"


@zray.remote
class Rendezvous:
    """An async actor: each `meet` waits until `parties` calls have arrived,
    which completes only if the calls run concurrently."""

    def __init__(self) -> None:
        self.arrived = 0
        self.active = 0
        self.peak = 0
        self.everyone: asyncio.Event | None = None

    async def meet(self, parties: int) -> int:
        if self.everyone is None:
            self.everyone = asyncio.Event()
        self.arrived += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        if self.arrived >= parties:
            self.everyone.set()
        await asyncio.wait_for(self.everyone.wait(), 60)
        self.active -= 1
        return self.arrived

    async def peak_concurrency(self) -> int:
        return self.peak

    async def ping(self) -> str:
        return "pong"

    async def sum_remote(self, a: int, b: int) -> int:
        return await add.remote(a, b)  # a task's result awaited on the actor's loop

    async def await_all(self, refs: list[Any]) -> list[Any]:
        return [await ref for ref in refs]

    async def my_actor_id(self) -> str | None:
        return zray.get_runtime_context().get_actor_id()


@zray.remote
class ThreadedMeeting:
    """A threaded actor: `meet` waits at a barrier of `parties` threads."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties)
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def meet(self) -> int:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        index = self.barrier.wait(timeout=60)
        with self.lock:
            self.active -= 1
        return index

    def peak_concurrency(self) -> int:
        return self.peak

    def my_actor_id(self) -> str | None:
        return zray.get_runtime_context().get_actor_id()


# ordering ---------------------------------------------------------------------------

def test_counter_hundred_ordered_calls(keep: Callable[[Any], Any]) -> None:
    counter = keep(Counter.remote(10))
    refs = [counter.incr.remote() for _ in range(100)]
    assert zray.get(refs, timeout=60) == list(range(11, 111))
    assert zray.get(counter.read.remote(), timeout=30) == 110


def test_each_callers_order_is_kept_under_concurrency(keep: Callable[[Any], Any]) -> None:
    log = keep(CallLog.remote())
    callers, per_caller = 4, 25
    task_refs = [numbered_calls.remote(log, f"task-{c}", per_caller) for c in range(callers)]
    driver_refs = [log.append.remote("driver", i) for i in range(per_caller)]
    positions = zray.get(task_refs, timeout=60) + [zray.get(driver_refs, timeout=60)]
    for seen in positions:  # each caller's calls ran in the order it made them
        assert seen == sorted(seen)
    entries = zray.get(log.entries_of.remote(), timeout=30)
    assert len(entries) == (callers + 1) * per_caller
    for caller in [f"task-{c}" for c in range(callers)] + ["driver"]:
        assert [seq for who, seq in entries if who == caller] == list(range(per_caller)), caller


def test_method_with_num_returns(keep: Callable[[Any], Any]) -> None:
    counter = keep(Counter.remote(5))
    refs = counter.split.remote(3)
    assert isinstance(refs, list) and len(refs) == 2
    assert zray.get(refs, timeout=30) == [5, 8]
    # Each return is its own object: one can be passed on to another call.
    assert zray.get(counter.incr.remote(refs[1]), timeout=30) == 13


def test_actor_arguments_by_reference(keep: Callable[[Any], Any]) -> None:
    counter = keep(Counter.remote(zray.put(100)))
    assert zray.get(counter.incr.remote(add.remote(1, 2)), timeout=30) == 103


# handles -----------------------------------------------------------------------------

def test_handle_passed_to_tasks(keep: Callable[[Any], Any]) -> None:
    counter = keep(Counter.remote())
    results = zray.get([incr_through.remote(counter, 10) for _ in range(3)], timeout=60)
    for seen in results:
        assert seen == sorted(seen)
    assert sorted(v for seen in results for v in seen) == list(range(1, 31))
    assert zray.get(counter.read.remote(), timeout=30) == 30  # one actor, shared state


def test_handle_passed_to_another_actor(keep: Callable[[Any], Any]) -> None:
    counter = keep(Counter.remote())
    relay = keep(Relay.remote(counter))  # a handle as a constructor argument
    assert zray.get(relay.bump.remote(5), timeout=60) == [1, 2, 3, 4, 5]
    other = keep(Counter.remote(41))
    assert zray.get(relay.bump_other.remote(other), timeout=60) == 42  # as a method argument
    assert zray.get(counter.read.remote(), timeout=30) == 5


def test_handle_survives_pickling_in_a_put_value(keep: Callable[[Any], Any]) -> None:
    counter = keep(Counter.remote())
    copy = zray.get(zray.put({"handle": counter}), timeout=30)["handle"]
    assert copy == counter and copy.actor_id == counter.actor_id
    assert zray.get(copy.incr.remote(), timeout=30) == 1


# names -------------------------------------------------------------------------------

def test_named_actor_found_by_get_actor(keep: Callable[[Any], Any]) -> None:
    counter = keep(Counter.options(name="tally").remote(7))
    found = zray.get_actor("tally")
    assert found.actor_id == counter.actor_id
    assert zray.get(found.incr.remote(), timeout=30) == 8
    assert zray.get_actor("tally", namespace="default").actor_id == counter.actor_id
    with pytest.raises(ValueError, match="tally"):
        zray.get_actor("tally", namespace="elsewhere")
    with pytest.raises(ValueError, match="no-such-actor"):
        zray.get_actor("no-such-actor")


def test_same_name_in_another_namespace_is_another_actor(keep: Callable[[Any], Any]) -> None:
    first = keep(Counter.options(name="shared-name").remote(1))
    second = keep(Counter.options(name="shared-name", namespace="team-b").remote(2))
    assert first.actor_id != second.actor_id
    assert zray.get(zray.get_actor("shared-name").read.remote(), timeout=30) == 1
    assert zray.get(zray.get_actor("shared-name", namespace="team-b").read.remote(),
                    timeout=30) == 2


def test_name_clash_and_get_if_exists(keep: Callable[[Any], Any]) -> None:
    original = keep(Counter.options(name="unique").remote(0))
    zray.get(original.incr.remote(), timeout=30)
    with pytest.raises(ValueError, match="already exists"):
        Counter.options(name="unique").remote(0)
    again = Counter.options(name="unique", get_if_exists=True).remote(100)
    assert again.actor_id == original.actor_id
    assert zray.get(again.incr.remote(), timeout=30) == 2  # no second constructor ran
    # Once the actor is dead its name is free again.
    zray.kill(original)
    poll_for(lambda: no_live_actor("unique"), 30, what="the killed actor's name to be released")
    fresh = keep(Counter.options(name="unique").remote(50))
    assert fresh.actor_id != original.actor_id
    assert zray.get(zray.get_actor("unique").read.remote(), timeout=30) == 50


@zray.remote(num_cpus=0)
def create_or_get(name: str, started: str, release: str) -> str:
    """Waits at the gate, so that several of these race to create one name."""
    Path(started).touch()
    deadline = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.005)
    return Counter.options(name=name, get_if_exists=True).remote().actor_id  # type: ignore[attr-defined]


@pytest.mark.parametrize("previous", ["none", "dead"])
def test_get_if_exists_from_concurrent_creators_yields_one_actor(gate: Gate, previous: str) -> None:
    name = f"raced-{previous}"
    if previous == "dead":  # the name is held by a dead actor, which creators take over
        dead = Counter.options(name=name).remote()
        zray.kill(dead)
        poll_for(lambda: no_live_actor(name), 30, what="the first holder of the name to die")
    started = [gate.started_path() for _ in range(6)]
    refs = [create_or_get.remote(name, path, gate.release_path) for path in started]
    poll_for(lambda: all(os.path.exists(path) for path in started), 60,
             what="all creators to wait at the gate")
    gate.open()
    ids = zray.get(refs, timeout=60)
    try:
        assert len(set(ids)) == 1, f"one name, {len(set(ids))} actors: {ids}"
    finally:
        for actor_id in set(ids):  # whatever was created, kill it
            with contextlib.suppress(Exception):
                zray.kill(ActorHandle(actor_id, "Counter", {}))


# death --------------------------------------------------------------------------------

def test_kill_makes_calls_raise_actor_died(keep: Callable[[Any], Any]) -> None:
    counter = keep(Counter.options(name="doomed").remote())
    assert zray.get(counter.incr.remote(), timeout=30) == 1
    zray.kill(counter)
    with pytest.raises(zray.ActorDiedError, match=r"zray\.kill"):
        zray.get(counter.incr.remote(), timeout=30)
    poll_for(lambda: no_live_actor("doomed"), 30, what="get_actor to stop finding a killed actor")


def test_kill_fails_the_call_in_flight(keep: Callable[[Any], Any], gate: Gate) -> None:
    counter = keep(Counter.remote())
    started = gate.started_path()
    held = counter.hold.remote(gate.release_path, started)
    poll_for(lambda: os.path.exists(started), 30, what="the held call to start")
    zray.kill(counter)
    with pytest.raises(zray.ActorDiedError, match=r"zray\.kill"):
        zray.get(held, timeout=30)


def test_constructor_failure_is_reported_by_calls(keep: Callable[[Any], Any]) -> None:
    bad = keep(BadConfig.options(name="misconfigured").remote(99))
    with pytest.raises(zray.ActorDiedError) as info:
        zray.get(bad.ping.remote(), timeout=30)
    text = str(info.value)
    assert "constructor" in text
    assert "Traceback (most recent call last)" in text
    assert "in __init__" in text
    assert "ValueError: setting 99 is out of range" in text
    # Later calls say the same, and the actor is dead for get_actor.
    with pytest.raises(zray.ActorDiedError, match="setting 99 is out of range"):
        zray.get(bad.ping.remote(), timeout=30)
    poll_for(lambda: no_live_actor("misconfigured"), 30, what="the failed actor to be DEAD")


def test_restart_resets_state_and_fails_the_call_in_flight(keep: Callable[[Any], Any]) -> None:
    counter = keep(Counter.options(name="phoenix", max_restarts=1).remote(0))
    assert zray.get([counter.incr.remote(), counter.incr.remote()], timeout=30) == [1, 2]
    first_pid = zray.get(counter.pid.remote(), timeout=30)
    with pytest.raises(zray.ActorDiedError) as info:
        zray.get(counter.crash.remote(), timeout=30)
    assert "max_task_retries=0" in str(info.value)
    # The constructor ran again on a new worker: the state starts over.
    assert zray.get(counter.incr.remote(), timeout=30) == 1
    assert zray.get(counter.pid.remote(), timeout=30) != first_pid
    assert zray.get_actor("phoenix").actor_id == counter.actor_id
    # The second crash uses up max_restarts=1: the actor is dead for good.
    with pytest.raises(zray.ActorDiedError):
        zray.get(counter.crash.remote(), timeout=30)
    with pytest.raises(zray.ActorDiedError) as info:
        zray.get(counter.incr.remote(), timeout=30)
    text = str(info.value)
    assert "exited with code 3" in text
    assert "restart" in text.lower(), f"the error should say the restarts are used up: {text}"
    poll_for(lambda: no_live_actor("phoenix"), 30, what="the actor to be DEAD")


def test_call_in_flight_is_retried_on_the_restarted_actor(
        keep: Callable[[Any], Any], tmp_path: Path) -> None:
    counter = keep(Counter.options(max_restarts=1, max_task_retries=1).remote(0))
    assert zray.get([counter.incr.remote() for _ in range(3)], timeout=30) == [1, 2, 3]
    marker = tmp_path / "crashed-once"
    # The first attempt kills the worker; the retry runs on the restarted actor,
    # whose constructor reset the count.
    assert zray.get(counter.crash_once_then_incr.remote(str(marker)), timeout=60) == 1
    assert marker.exists()
    assert zray.get(counter.incr.remote(), timeout=30) == 2


def test_kill_with_restart_allowed_restarts_the_actor(keep: Callable[[Any], Any]) -> None:
    counter = keep(Counter.options(max_restarts=1).remote(0))
    assert zray.get(counter.incr.remote(5), timeout=30) == 5
    zray.kill(counter, no_restart=False)

    def restarted_value() -> int | None:
        try:
            return zray.get(counter.incr.remote(), timeout=30)
        except zray.ActorDiedError:  # a call that met the dying worker
            return None

    assert poll_for(restarted_value, 30, interval=0.1, what="the restarted actor to answer") == 1


# concurrency --------------------------------------------------------------------------

def test_async_actor_runs_calls_concurrently(keep: Callable[[Any], Any]) -> None:
    meeting = keep(Rendezvous.remote())
    parties = 5
    # Each call waits for all the others: they finish only if they run together.
    assert sorted(zray.get([meeting.meet.remote(parties) for _ in range(parties)],
                           timeout=60)) == [parties] * parties
    assert zray.get(meeting.peak_concurrency.remote(), timeout=30) == parties


def test_await_ref_inside_async_method(keep: Callable[[Any], Any], gate: Gate) -> None:
    actor = keep(Rendezvous.remote())
    assert zray.get(actor.sum_remote.remote(20, 22), timeout=30) == 42
    ready = [add.remote(1, 1), zray.put("stored")]
    assert zray.get(actor.await_all.remote(ready), timeout=30) == [2, "stored"]  # refs nested in a list
    # A call awaiting an unfinished task does not block the actor's other calls.
    blocked, _ = gate.blocking_task()
    waiting = actor.await_all.remote([blocked])
    assert zray.get(actor.ping.remote(), timeout=30) == "pong"
    done, _ = zray.wait([waiting], timeout=0)
    assert not done
    gate.open()
    assert zray.get(waiting, timeout=30) == ["released"]


def test_threaded_actor_runs_calls_concurrently(keep: Callable[[Any], Any]) -> None:
    meeting = keep(ThreadedMeeting.options(max_concurrency=4).remote(4))
    # Eight calls at a barrier of four: two rounds, which need four threads each.
    indexes = zray.get([meeting.meet.remote() for _ in range(8)], timeout=60)
    assert sorted(indexes) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert zray.get(meeting.peak_concurrency.remote(), timeout=30) == 4  # never more than 4


def test_threaded_actor_from_decorator_options(keep: Callable[[Any], Any]) -> None:
    threaded = zray.remote(max_concurrency=2)(type("Pair", (), {
        "__init__": lambda self: setattr(self, "barrier", threading.Barrier(2)),
        "meet": lambda self: self.barrier.wait(timeout=60),
    }))
    pair = keep(threaded.remote())
    assert sorted(zray.get([pair.meet.remote(), pair.meet.remote()], timeout=60)) == [0, 1]


# context and resources -------------------------------------------------------------

def test_runtime_context_names_the_actor(keep: Callable[[Any], Any]) -> None:
    plain = keep(Counter.remote())
    asynchronous = keep(Rendezvous.remote())
    threaded = keep(ThreadedMeeting.options(max_concurrency=2).remote(2))
    for handle in (plain, asynchronous, threaded):
        assert zray.get(handle.my_actor_id.remote(), timeout=30) == handle.actor_id
    assert len({plain.actor_id, asynchronous.actor_id, threaded.actor_id}) == 3
    assert zray.get_runtime_context().get_actor_id() is None  # the driver
    assert zray.get(actor_id_in_task.remote(), timeout=30) is None  # a task


def available_cpus() -> float:
    return zray.available_resources().get("CPU", 0.0)


def test_actor_with_num_cpus_holds_a_cpu(keep: Callable[[Any], Any], tmp_path: Path) -> None:
    poll_for(lambda: available_cpus() == 2.0, 30, what="both CPUs to be free")
    holders = [keep(Counter.options(num_cpus=1).remote(i)) for i in range(2)]
    assert zray.get([h.read.remote() for h in holders], timeout=30) == [0, 1]
    poll_for(lambda: available_cpus() == 0.0, 30, what="the two actors to hold both CPUs",
             on_timeout=lambda: f"available: {zray.available_resources()}")
    started = tmp_path / "started"
    release = tmp_path / "release"
    release.touch()
    waiting = wait_for_file.remote(str(release), str(started))
    done, _ = zray.wait([waiting], timeout=0.5)
    assert not done and not started.exists(), "a task ran although actors held every CPU"
    zray.kill(holders[0])
    assert zray.get(waiting, timeout=30) == "released"  # it got the killed actor's CPU
    poll_for(lambda: available_cpus() == 1.0, 30, what="one CPU back after the task",
             on_timeout=lambda: f"available: {zray.available_resources()}")
    zray.kill(holders[1])
    poll_for(lambda: available_cpus() == 2.0, 30, what="both CPUs back",
             on_timeout=lambda: f"available: {zray.available_resources()}")


def test_default_actor_holds_no_cpu(keep: Callable[[Any], Any]) -> None:
    poll_for(lambda: available_cpus() == 2.0, 30, what="both CPUs to be free")
    actors = [keep(Counter.remote(i)) for i in range(3)]
    assert zray.get([a.read.remote() for a in actors], timeout=30) == [0, 1, 2]
    assert zray.get([add.remote(i, i) for i in range(4)], timeout=30) == [0, 2, 4, 6]
    poll_for(lambda: available_cpus() == 2.0, 30, what="both CPUs free with three actors alive")


def test_misuse_of_actor_classes_and_handles(keep: Callable[[Any], Any]) -> None:
    with pytest.raises(TypeError, match=r"Counter\.remote"):
        Counter()
    counter = keep(Counter.remote())
    with pytest.raises(AttributeError, match="no_such_method"):
        counter.no_such_method  # noqa: B018
    with pytest.raises(TypeError, match=r"\.incr\.remote"):
        counter.incr()
    with pytest.raises(TypeError, match="actor handle"):
        zray.kill("not a handle")  # type: ignore[arg-type]
