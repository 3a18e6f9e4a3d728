"""Node failures on a real three-node cluster: a raylet killed or frozen is
declared dead, its running tasks rerun elsewhere, objects whose only copy it
held are rebuilt by lineage replay (recursively), a task with max_retries=0
gives ObjectLostError, and a frozen node that wakes up is fenced: it comes
back as a new node."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from tests.conftest import poll_for
from tests.system.clusters import Head
from tests.system.node_faults import (  # noqa: F401  (three_nodes: the fixture `cluster`)
    Driver,
    kill_node,
    nodes,
    three_node_cluster,
    three_nodes,
    wait_declared_dead,
)

pytestmark = pytest.mark.timeout(240)


def test_lost_chain_is_rebuilt_and_running_tasks_rerun(cluster: Head) -> None:
    driver = Driver(cluster, """
        a = make.options(scheduling_strategy=ON_N2).remote(2)     # 2 MB each, kept on n2
        b = plus.options(scheduling_strategy=ON_N2).remote(a, 1)
        c = plus.options(scheduling_strategy=ON_N2).remote(b, 1)
        zray.wait([c], fetch_local=False)
        del a, b                     # only the end of the chain is referenced
        lost = make.options(scheduling_strategy=ON_N2, max_retries=0).remote(2)
        zray.wait([lost], fetch_local=False)
        running = slow.options(scheduling_strategy=ON_N2, max_retries=2).remote(20)  # outlasts the kill
        step("ready")
        value = zray.get(c, timeout=90)
        try:
            zray.get(lost, timeout=90)
            lost_error = ""
        except zray.ObjectLostError as exc:
            lost_error = str(exc)
        names = {v: k for k, v in NODES.items()}
        rerun_on = names.get(zray.get(running, timeout=90), "?")
        print(json.dumps({"ok": bool((value == 3.0).all()), "size": int(value.size),
                          "lost_error": lost_error, "rerun_on": rerun_on}))
    """)
    try:
        driver.reached("ready")
        victim = kill_node(cluster, "n2")
        wait_declared_dead(cluster, victim["node_id"])
        driver.go("ready")
        out = driver.finish()
    finally:
        driver.kill()
    assert out["ok"] and out["size"] == 2 * 1024 * 1024 // 8, out
    assert "max_retries=0" in out["lost_error"], out
    assert out["rerun_on"] in ("head", "n3"), out


def test_a_frozen_node_is_declared_dead_and_fenced(cluster: Head) -> None:
    victim = kill_node(cluster, "n3", signal.SIGSTOP)
    try:
        wait_declared_dead(cluster, victim["node_id"])
    finally:
        os.kill(victim["pid"], signal.SIGCONT)
    # Awake again, it learns it was declared dead, stops, and its supervisor
    # starts a raylet that joins as a new node.
    fresh = poll_for(lambda: next((n for n in nodes(cluster) if n["node_name"] == "n3" and n["alive"]
                                   and n["node_id"] != victim["node_id"]), None), 60, interval=0.2,
                     what="n3 to come back as a new node")
    assert fresh["pid"] != victim["pid"]
    assert not any(n["node_id"] == victim["node_id"] and n["alive"] for n in nodes(cluster))


def test_a_restarted_raylet_starts_without_its_killed_predecessors_objects(cluster: Head) -> None:
    # The supervisor restarts a killed raylet on the same store folder. The old
    # object files hold memory, and a rerun there of the task that made one
    # must write it anew: the new raylet removes them as it starts.
    driver = Driver(cluster, """
        a = make.options(scheduling_strategy=ON_N2).remote(2)    # 2 MB, in n2's store
        zray.wait([a], fetch_local=False)
        print(a.hex(), flush=True)
        step("made")
        value = zray.get(a, timeout=90)                          # rebuilt by lineage replay
        print(json.dumps({"ok": bool((value == 1.0).all())}))
    """)
    try:
        driver.reached("made")
        victim = kill_node(cluster, "n2")
        leftover = os.path.join(victim["store_dir"], _printed_object_id(driver))
        assert os.path.exists(leftover)  # nothing removes a SIGKILLed raylet's files
        fresh = poll_for(lambda: next((n for n in nodes(cluster) if n["node_name"] == "n2" and n["alive"]
                                       and n["node_id"] != victim["node_id"]), None), 60, interval=0.2,
                         what="n2 to come back as a new node")
        assert fresh["store_dir"] == victim["store_dir"]
        assert not os.path.exists(leftover)
        driver.go("made")
        out = driver.finish()
    finally:
        driver.kill()
    assert out["ok"], out


def _printed_object_id(driver: Driver) -> str:
    # reached() consumed the lines up to the step; the object id was printed before it.
    return next(line.strip() for line in driver.lines if len(line.strip()) == 40)


@pytest.fixture
def remote_only() -> Iterator[Head]:
    """head, n2 and n3 with one CPU each; only n2 and n3 have the resource `r`."""
    with three_node_cluster(["--resources", '{"r": 1}']) as h:
        yield h


def test_a_get_waiting_on_a_dead_node_receives_the_object_rebuilt_on_another(remote_only: Head) -> None:
    # The driver asks for an object kept on n2; n2 freezes before sending it and is
    # declared dead; the object is rebuilt on a node other than the driver's, so
    # the driver's node hears where it is again and the get must still end with it.
    driver = Driver(remote_only, """
        a = make.options(scheduling_strategy=ON_N2, resources={"r": 1}).remote(2)
        zray.wait([a], fetch_local=False)
        step("made")
        print("getting", flush=True)
        value = zray.get(a, timeout=90)
        print(json.dumps({"ok": bool((value == 1.0).all())}))
    """)
    try:
        driver.reached("made")
        victim = kill_node(remote_only, "n2", signal.SIGSTOP)
        try:
            driver.go("made")
            driver.reached("getting")
            wait_declared_dead(remote_only, victim["node_id"])
        finally:
            os.kill(victim["pid"], signal.SIGKILL)
        out = driver.finish()
    finally:
        driver.kill()
    assert out["ok"], out
