"""Object lifetime and store memory on a real cluster: refs dropped free
memory, nested and borrowed refs keep objects exactly as long as needed,
spilling and restoring, and the errors of a full store and a full spill disk.

Store use is read as an operator would, from `zray status --json`; the
raylet publishes it once a second, so every check polls.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import zray
from tests.conftest import REPO_ROOT, Gate, poll_for, zray_cluster
from zray.common.errors import ObjectStoreFullError

pytestmark = pytest.mark.timeout(180)

MiB = 1024**2
STORE = 200 * MiB


def cli(*args: str) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, "-c", "from zray.cli import main; main()", *args,
                          "--address", zray.client.api._client().gcs.address, "--json"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def node() -> dict[str, Any]:
    nodes = [n for n in cli("status")["nodes"] if n["alive"]]
    assert len(nodes) == 1, nodes
    return nodes[0]


def wait_store(pred: Any, what: str) -> dict[str, Any]:
    """Poll `zray status --json` until pred(node record) holds."""
    def check() -> dict[str, Any] | None:
        n = node()
        return n if pred(n) else None

    return poll_for(check, 30, interval=0.3, what=what, on_timeout=lambda: json.dumps(node()))


def array(mib: int, fill: int) -> np.ndarray:
    return np.full(mib * MiB // 8, fill, dtype=np.int64)


@contextlib.contextmanager
def cluster(**env: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with zray_cluster(warm_workers=2, num_cpus=2, object_store_memory=STORE):
            yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@zray.remote
def first(x: Any) -> int:
    return int(x[0])


@zray.remote
def first_nested(box: list[Any]) -> int:
    return int(zray.get(box[0])[0])


@zray.remote
def make_boxed(mib: int, fill: int) -> list[Any]:
    return [zray.put(array(mib, fill))]


@zray.remote
class Keeper:
    def __init__(self) -> None:
        self.kept: list[Any] = []

    def keep(self, box: list[Any]) -> int:
        self.kept.extend(box)
        return len(self.kept)

    def read(self) -> list[int]:
        return [int(zray.get(r)[0]) for r in self.kept]

    def drop(self) -> int:
        self.kept.clear()
        return 0


@pytest.fixture(scope="module")
def small_store() -> Iterator[None]:
    with cluster(ZRAY_STORE_FULL_TIMEOUT="2"):
        yield


def test_dropped_refs_free_memory(small_store: None) -> None:
    refs = [zray.put(array(30, i)) for i in range(3)]
    wait_store(lambda n: n["store_used"] >= 90 * MiB, "3 x 30 MiB in the store")
    del refs
    wait_store(lambda n: n["store_used"] == 0 and n["spilled_bytes"] == 0, "the store to empty")
    # Many more bytes than the store holds, created and dropped one by one:
    # each is freed, so nothing ever needs to spill.
    for i in range(40):
        ref = zray.put(array(40, i))
        assert zray.get(first.remote(ref), timeout=60) == i
        del ref
    n = wait_store(lambda n: n["store_used"] == 0, "the store to empty after the loop")
    assert n["num_spilled"] == 0, n


def test_nested_ref_lives_as_long_as_its_container(small_store: None) -> None:
    inner = zray.put(array(30, 7))
    outer = zray.put([inner])
    del inner
    wait_store(lambda n: n["store_used"] >= 30 * MiB, "the nested object to stay")
    assert zray.get(first_nested.remote(outer), timeout=60) == 7
    box = zray.get(outer)
    assert int(zray.get(box[0])[0]) == 7
    del outer
    # The driver still holds the nested ref it got out of the container.
    assert int(zray.get(box[0])[0]) == 7
    del box
    wait_store(lambda n: n["store_used"] == 0, "both objects to be freed")


def test_ref_returned_by_a_task_outlives_the_task(small_store: None) -> None:
    box = zray.get(make_boxed.remote(30, 5), timeout=60)
    assert int(zray.get(box[0], timeout=60)[0]) == 5
    wait_store(lambda n: n["store_used"] >= 30 * MiB, "the returned object to stay")
    del box
    wait_store(lambda n: n["store_used"] == 0, "the returned object to be freed")


def test_actor_borrowing_a_ref_keeps_it_until_it_drops_it(small_store: None) -> None:
    keeper = Keeper.remote()
    ref = zray.put(array(30, 3))
    assert zray.get(keeper.keep.remote([ref]), timeout=60) == 1
    del ref
    assert zray.get(keeper.read.remote(), timeout=60) == [3]
    wait_store(lambda n: n["store_used"] >= 30 * MiB, "the borrowed object to stay")
    doc = cli("memory")
    objects = doc["nodes"][0]["objects"]
    held = [o for o in objects if o["size"] >= 30 * MiB]
    assert held and any(h.startswith("actor ") for h in held[0]["holders"]), objects
    assert zray.get(keeper.drop.remote(), timeout=60) == 0
    wait_store(lambda n: n["store_used"] == 0, "the object to be freed once the actor drops it")
    zray.kill(keeper)


def test_memory_lists_the_driver_as_holder(small_store: None) -> None:
    ref = zray.put(array(20, 1))
    doc = cli("memory")
    objects = doc["nodes"][0]["objects"]
    mine = [o for o in objects if o["object_id"] == ref.hex()]
    assert mine and mine[0]["holders"] == [f"driver pid {os.getpid()}"], objects
    assert mine[0]["where"] == "memory" and mine[0]["size"] >= 20 * MiB
    del ref
    wait_store(lambda n: n["store_used"] == 0, "the store to empty")


def test_spill_and_restore_more_than_the_store_holds(small_store: None) -> None:
    refs = [zray.put(array(40, i)) for i in range(10)]  # 400 MiB into a 200 MiB store
    n = wait_store(lambda n: n["spilled_bytes"] > 0, "objects to be spilled")
    assert n["store_used"] <= STORE
    assert [int(zray.get(r, timeout=60)[-1]) for r in refs] == list(range(10))
    assert zray.get([first.remote(r) for r in refs], timeout=120) == list(range(10))
    del refs
    wait_store(lambda n: n["store_used"] == 0 and n["spilled_bytes"] == 0,
               "memory and spill folder to empty")


def test_full_store_error_says_what_holds_the_memory(small_store: None, gate: Gate) -> None:
    with pytest.raises(ObjectStoreFullError, match="larger than the whole store"):
        zray.put(np.zeros(300 * MiB // 8))
    pinned = zray.put(array(150, 1))
    started = gate.started_path()
    # A running task's argument cannot be spilled.
    busy = first_until_gate.remote(pinned, gate.release_path, started)
    poll_for(lambda: os.path.exists(started), 60, what="the task to start")
    with pytest.raises(ObjectStoreFullError) as info:
        zray.put(array(100, 2))
    text = str(info.value)
    assert "object store full" in text and "pinned as arguments of 1" in text, text
    assert "after waiting 2." in text and "--object-store-memory" in text, text
    gate.open()
    assert zray.get(busy, timeout=60) == 1
    del pinned
    wait_store(lambda n: n["store_used"] == 0, "the store to empty")


@zray.remote
def first_until_gate(x: Any, release: str, started: str) -> int:
    import time

    Path(started).touch()
    deadline = time.monotonic() + 120
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)  # a task waiting for the test to open its gate
    return int(x[0])
