"""References across nodes on a real two-raylet cluster: a ref the driver owns
on the head, kept by an actor on another node, stays alive there after the
driver drops it and is freed on the head once the actor lets go (or dies);
a borrower's get of an object whose owner is gone (its process exited, or its
node died) fails with OwnerDiedError instead of waiting."""

from __future__ import annotations

import json
import os
import signal
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import poll_for
from tests.system.clusters import Head, started_cluster
from tests.system.node_faults import Driver

pytestmark = pytest.mark.timeout(240)

MiB = 1024 * 1024

PRELUDE = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    import zray
    from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    zray.init("auto")
    NODES = {n["NodeName"]: n["NodeID"] for n in zray.nodes() if n["Alive"]}
    ON_N2 = NodeAffinitySchedulingStrategy(NODES["n2"], soft=False)

    @zray.remote
    class Keeper:
        def __init__(self):
            self.kept = []

        def keep(self, box):
            self.kept.extend(box)
            return len(self.kept)

        def read(self):
            try:
                return [float(zray.get(r, timeout=60)[0]) for r in self.kept]
            except zray.OwnerDiedError as exc:
                return {"error": type(exc).__name__, "lost": isinstance(exc, zray.ObjectLostError),
                        "text": str(exc)}

        def drop(self):
            self.kept.clear()
            return 0

    @zray.remote
    def start_keeper(name, box, detached=False):
        options = {"name": name, "lifetime": "detached"} if detached else {"name": name}
        keeper = Keeper.options(**options).remote()
        return zray.get(keeper.keep.remote(box), timeout=60)

    @zray.remote
    def call(name, method):  # actors are called from their own node
        return zray.get(getattr(zray.get_actor(name), method).remote(), timeout=90)

    @zray.remote
    def kill(name):
        zray.kill(zray.get_actor(name))
        return 0

    @zray.remote
    def put_here(value):  # the ref is owned by this task's worker, on its node
        return [zray.put(value)]

    def step(name):  # tell the test where the driver is, then wait for its go-ahead
        print(name, flush=True)
        go = os.path.join(sys.argv[1], name)
        while not os.path.exists(go):
            time.sleep(0.05)
""")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Head]:
    """A head and node "n2", one CPU each; a silent node is declared dead after ~2 s."""
    with started_cluster("zb-", ["--num-cpus", "1", "--node-name", "head", "--no-dashboard"],
                         nodes=[["--num-cpus", "1", "--node-name", "n2"]],
                         env={"ZRAY_SCHED_NODE_TIMEOUT": "2.0"}) as h:
        yield h


def status_nodes(head: Head) -> dict[str, dict[str, Any]]:
    out = head.cli("status", "--json")
    assert out.returncode == 0, out.stderr
    return {n["node_name"]: n for n in json.loads(out.stdout)["nodes"] if n["alive"]}


def holders_on_head(head: Head) -> list[list[str]]:
    """Holders of each store object of at least 8 MiB on the head (`zray memory --json`)."""
    out = head.cli("memory", "--json")
    assert out.returncode == 0, out.stderr
    head_id = status_nodes(head)["head"]["node_id"]
    node = next(n for n in json.loads(out.stdout)["nodes"] if n["node_id"] == head_id)
    return [o["holders"] for o in node["objects"] if o["size"] >= 8 * MiB]


def only_nodes_hold(head: Head) -> bool:
    holders = [h for each in holders_on_head(head) for h in each]
    return bool(holders) and all(h.startswith("node ") for h in holders)


def wait_head_store(head: Head, pred: Any, what: str) -> None:
    poll_for(lambda: pred(status_nodes(head)["head"]["store_used"]), 30, interval=0.3, what=what,
             on_timeout=lambda: json.dumps(status_nodes(head)["head"]))


@pytest.mark.parametrize("let_go", ["drop", "kill"])
def test_actor_on_another_node_keeps_a_borrowed_ref_alive(cluster: Head, let_go: str) -> None:
    driver = Driver(cluster, prelude=PRELUDE, body=f"""
        x = zray.put(np.full(1024 * 1024, 7.0))     # 8 MiB in the head's store
        assert zray.get(start_keeper.options(scheduling_strategy=ON_N2).remote("k-{let_go}", [x]),
                        timeout=90) == 1
        del x
        step("dropped")
        value = zray.get(call.options(scheduling_strategy=ON_N2).remote("k-{let_go}", "read"),
                         timeout=90)
        step("read")
        if "{let_go}" == "drop":
            zray.get(call.options(scheduling_strategy=ON_N2).remote("k-{let_go}", "drop"), timeout=90)
        step("let-go")
        zray.get(kill.options(scheduling_strategy=ON_N2).remote("k-{let_go}"), timeout=90)
        print(json.dumps({{"value": value}}))
    """)
    try:
        driver.reached("dropped")
        # The driver's hold is gone; the node the actor runs on still counts as a holder.
        poll_for(lambda: only_nodes_hold(cluster), 30, interval=0.3,
                 what="only the actor's node to hold the object",
                 on_timeout=lambda: json.dumps(holders_on_head(cluster)))
        driver.go("dropped")
        driver.reached("read")
        wait_head_store(cluster, lambda used: used >= 8 * MiB, "the object to stay on the head")
        driver.go("read")
        driver.reached("let-go")
        if let_go == "kill":
            driver.go("let-go")
            out = driver.finish()
        wait_head_store(cluster, lambda used: used == 0,
                        f"the object to be freed on the head once the actor {let_go}s it")
        if let_go == "drop":
            driver.go("let-go")
            out = driver.finish()
    finally:
        driver.kill()
    assert out["value"] == [7.0], out


def test_get_of_a_ref_whose_owner_exited_fails_at_once(cluster: Head) -> None:
    first = Driver(cluster, prelude=PRELUDE, body="""
        x = zray.put(np.full(10, 5.0))      # small: only the head's raylet has its value
        assert zray.get(start_keeper.options(scheduling_strategy=ON_N2).remote(
            "orphan", [x], detached=True), timeout=90) == 1
        print(json.dumps({"object_id": x.hex()}))
    """)
    try:
        object_id = first.finish()["object_id"]  # its owner, this driver, exits
    finally:
        first.kill()
    second = Driver(cluster, prelude=PRELUDE, body="""
        read = zray.get(call.options(scheduling_strategy=ON_N2).remote("orphan", "read"), timeout=90)
        zray.get(kill.options(scheduling_strategy=ON_N2).remote("orphan"), timeout=90)
        print(json.dumps(read))
    """)
    try:
        out = second.finish()
    finally:
        second.kill()
    assert out["error"] == "OwnerDiedError" and out["lost"], out
    assert object_id in out["text"] and "owner" in out["text"] and "exited" in out["text"], out


def test_get_of_a_ref_whose_owner_node_died_fails(cluster: Head) -> None:
    """Runs last in this module: it kills node n2."""
    driver = Driver(cluster, prelude=PRELUDE, body="""
        # Big enough for the store: only n2 keeps it (a small one would travel
        # with the result and survive).
        box = zray.get(put_here.options(scheduling_strategy=ON_N2).remote(np.full(1 << 18, 3.0)),
                       timeout=90)
        step("boxed")
        try:
            zray.get(box[0], timeout=120)
            out = {"error": ""}
        except zray.ObjectLostError as exc:
            out = {"error": type(exc).__name__, "text": str(exc), "object_id": box[0].hex()}
        print(json.dumps(out))
    """)
    try:
        driver.reached("boxed")
        victim = status_nodes(cluster)["n2"]
        os.kill(victim["pid"], signal.SIGKILL)
        driver.go("boxed")
        out = driver.finish()
    finally:
        driver.kill()
    # The object was a put whose owner and only copy were on n2.
    assert out["error"] in ("OwnerDiedError", "ObjectLostError"), out
    assert out["object_id"] in out["text"] and victim["node_id"][:12] in out["text"], out
