"""Actors placed like tasks, on a real three-node cluster whose drivers run
on the head: a custom resource only one node has, node affinity (hard and
soft) and SPREAD decide an actor's node; its row names that node, calls from
the driver and from other nodes reach it in order, zray.get_actor finds it,
it ends with its job, and it restarts elsewhere when its node dies. An actor
whose resources no node has waits, `zray status` says so, and it starts on a
node with them that joins later."""

from __future__ import annotations

import json
import signal
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import poll_for
from tests.system.clusters import Head, started_cluster
from tests.system.node_faults import Driver, kill_node, wait_declared_dead

pytestmark = pytest.mark.timeout(240)

INIT = """
import json, os, sys, time
import zray
from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

zray.init("auto")
NODES = {n["NodeName"]: n["NodeID"] for n in zray.nodes() if n["Alive"]}
"""

# After INIT here, or after the step-by-step driver's own prelude (node_faults.py).
DEFS = """
from zray.util.state import list_actors

NAMES = {v: k for k, v in NODES.items()}

@zray.remote
class Keeper:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n

    def where(self):
        return zray.get_runtime_context().get_node_id()

@zray.remote
def poke(keeper):  # a call from a task, placed on another node than the actor's
    return zray.get(keeper.incr.remote())

def rows():
    return {a["name"] or a["actor_id"]: a for a in list_actors()}
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Head]:
    """head, n2 (with the custom resource "n2_only") and n3, one CPU each."""
    with started_cluster("zp-", ["--num-cpus", "1", "--node-name", "head", "--no-dashboard"],
                         nodes=[["--num-cpus", "1", "--node-name", "n2",
                                 "--resources", '{"n2_only": 1}'],
                                ["--num-cpus", "1", "--node-name", "n3"]],
                         env={"ZRAY_SCHED_NODE_TIMEOUT": "2.0"}) as h:
        yield h


def run(head: Head, body: str) -> dict[str, Any]:
    """Run a driver on the head's node; its last output line is JSON."""
    result = head.driver(INIT + DEFS + textwrap.dedent(body), timeout=180)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_an_actor_needing_a_resource_only_n2_has_starts_there(cluster: Head) -> None:
    out = run(cluster, """
        keeper = Keeper.options(name="keeper", resources={"n2_only": 1}).remote()
        counts = zray.get([keeper.incr.remote() for _ in range(20)], timeout=90)
        where = NAMES[zray.get(keeper.where.remote(), timeout=60)]
        found = zray.get_actor("keeper")
        by_name = zray.get(found.incr.remote(), timeout=60)
        only_n3 = NodeAffinitySchedulingStrategy(NODES["n3"], soft=False)
        from_task = zray.get(poke.options(scheduling_strategy=only_n3).remote(keeper), timeout=60)
        after = zray.get(keeper.incr.remote(), timeout=60)
        row = rows()["keeper"]
        print(json.dumps({"counts": counts, "where": where, "by_name": by_name,
                          "from_task": from_task, "after": after, "row_node": NAMES[row["node_id"]],
                          "row_state": row["state"]}))
    """)
    assert out["counts"] == list(range(1, 21)), out
    assert out["where"] == "n2" and out["row_node"] == "n2", out
    assert out["row_state"] == "ALIVE", out
    assert [out["by_name"], out["from_task"], out["after"]] == [21, 22, 23], out
    # The driver is gone: the actor, though on n2, ended with its job.
    poll_for(lambda: cluster.actors()["keeper"]["state"] == "DEAD", 30, interval=0.2,
             what="the job's actor on n2 to end with it", on_timeout=lambda: str(cluster.actors()))
    assert "the job that created it ended" in cluster.actors()["keeper"]["death_cause"]


def test_node_affinity_places_actors(cluster: Head) -> None:
    out = run(cluster, """
        hard = Keeper.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            NODES["n3"], soft=False)).remote()
        soft = Keeper.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            "0" * 32, soft=True)).remote()
        nowhere = Keeper.options(name="nowhere", scheduling_strategy=NodeAffinitySchedulingStrategy(
            "0" * 32, soft=False)).remote()
        try:
            zray.get(nowhere.incr.remote(), timeout=60)
            failed = "ran"
        except zray.ActorDiedError as exc:
            failed = str(exc)
        print(json.dumps({
            "hard": [zray.get(hard.incr.remote(), timeout=60),
                     NAMES[zray.get(hard.where.remote(), timeout=60)]],
            "soft": NAMES[zray.get(soft.where.remote(), timeout=60)], "failed": failed,
            "row": rows()["nowhere"]["state"]}))
    """)
    assert out["hard"] == [1, "n3"], out
    assert out["soft"] in ("head", "n2", "n3"), out
    assert "cannot be placed" in out["failed"] and "must run on node 0000" in out["failed"], out
    assert out["row"] == "DEAD", out


def test_spread_places_actors_over_the_nodes(cluster: Head) -> None:
    out = run(cluster, """
        actors = [Keeper.options(scheduling_strategy="SPREAD").remote() for _ in range(3)]
        where = zray.get([a.where.remote() for a in actors], timeout=90)
        print(json.dumps({"nodes": sorted(NAMES[w] for w in where)}))
    """)
    assert out["nodes"] == ["head", "n2", "n3"], out


def test_an_actor_no_node_can_host_waits_until_a_node_with_its_resource_joins(cluster: Head) -> None:
    driver = Driver(cluster, DEFS + textwrap.dedent("""
    late = Keeper.options(name="late", resources={"later": 1}).remote()
    first = late.incr.remote()
    step("created")
    count = zray.get(first, timeout=90)
    where = zray.get(late.where.remote(), timeout=60)
    names = {n["NodeID"]: n["NodeName"] for n in zray.nodes()}
    print(json.dumps({"count": count, "where": names.get(where, where),
                      "row_node": names.get(rows()["late"]["node_id"], "?")}))
    """))
    try:
        driver.reached("created")

        def waiting() -> dict[str, Any] | None:
            row = cluster.actors().get("late")
            return row if row is not None and row["state"] == "PENDING" and row["waiting"] else None

        row = poll_for(waiting, 30, interval=0.2, what="zray status to show the actor waiting",
                       on_timeout=lambda: str(cluster.actors().get("late")))
        assert "later 1" in row["waiting"], row
        text = cluster.cli("status").stdout
        assert "waiting for a node with later 1" in text, text
        joined = cluster.cli("start", "--address", cluster.address, "--num-cpus", "1",
                             "--node-name", "n4", "--resources", '{"later": 1}')
        assert joined.returncode == 0, joined.stdout + joined.stderr
        driver.go("created")
        out = driver.finish()
    finally:
        driver.kill()
    assert out == {"count": 1, "where": "n4", "row_node": "n4"}, out


def test_a_placed_actor_restarts_elsewhere_when_its_node_dies(cluster: Head) -> None:
    driver = Driver(cluster, DEFS + textwrap.dedent("""
    only_n3 = NodeAffinitySchedulingStrategy(NODES["n3"], soft=False)
    phoenix = Keeper.options(name="phoenix", max_restarts=1, scheduling_strategy=only_n3).remote()
    before = [zray.get(phoenix.incr.remote(), timeout=60) for _ in range(3)]
    first_node = NAMES[zray.get(phoenix.where.remote(), timeout=60)]
    step("placed")
    again = zray.get_actor("phoenix")
    after = zray.get(again.incr.remote(), timeout=90)
    row = rows()["phoenix"]
    print(json.dumps({"before": before, "first_node": first_node, "after": after,
                      "now_on": zray.get(again.where.remote(), timeout=60),
                      "dead_n3": NODES["n3"], "restarts": row["restarts"], "state": row["state"]}))
    """))
    try:
        driver.reached("placed")
        victim = kill_node(cluster, "n3", signal.SIGKILL)
        wait_declared_dead(cluster, victim["node_id"])
        driver.go("placed")
        out = driver.finish()
    finally:
        driver.kill()
    assert out["before"] == [1, 2, 3] and out["first_node"] == "n3", out
    assert out["after"] == 1, out  # its constructor ran again on another node
    assert out["now_on"] != out["dead_n3"], out
    assert out["restarts"] == 1 and out["state"] == "ALIVE", out
