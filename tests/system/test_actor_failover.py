"""Actors on a node that dies, on a real three-node cluster: restarted on
another node up to max_restarts (constructor re-run, state reset, found again
by name, reached by later calls); calls in flight retried up to
max_task_retries, else ActorDiedError naming the node's death; an actor
without restarts left fails every pending and later call with that cause.
Calls and zray.kill() reach actors on other nodes than the caller's, and a
job's actors end with it on every node."""

from __future__ import annotations

import os
import signal

import pytest

from tests.conftest import poll_for
from tests.system.clusters import Head
from tests.system.node_faults import (  # noqa: F401  (three_nodes: the fixture `cluster`)
    Driver,
    kill_node,
    three_nodes,
    wait_declared_dead,
)

pytestmark = pytest.mark.timeout(240)


BODY = """
    FOLDER = sys.argv[1]

    @zray.remote
    class Keeper:
        def __init__(self):
            self.n = 0
            self.node = zray.get_runtime_context().get_node_id()

        def incr(self):
            self.n += 1
            return self.n

        def where(self):
            return self.node

        def hold(self, tag):  # in flight until the test releases it
            open(os.path.join(FOLDER, "started-" + tag), "w").close()
            while not os.path.exists(os.path.join(FOLDER, "release")):
                time.sleep(0.02)
            return self.n

    @zray.remote
    def make(options):  # runs on the node the actor is to live on
        return Keeper.options(**options).remote()

    def on(node, **options):
        only = NodeAffinitySchedulingStrategy(NODES[node], soft=False)
        return zray.get(make.options(scheduling_strategy=only).remote(options))

    def died(ref):
        try:
            zray.get(ref, timeout=60)
            return "no error"
        except zray.ActorDiedError as exc:
            return str(exc)

    again = on("n2", name="again", max_restarts=1, max_task_retries=1)
    once = on("n2", name="once", max_restarts=1)         # max_task_retries=0
    gone = on("n2", name="gone")                          # max_restarts=0
    far = on("n3", max_restarts=1)  # killed from here, across nodes: not restarted
    far_before = zray.get(far.incr.remote())
    stay = on("n3", name="stay")  # ends with this job, though on another node
    zray.get(stay.incr.remote())
    zray.kill(far)
    far_after = died(far.incr.remote())
    before = zray.get([again.incr.remote(), again.incr.remote(), once.incr.remote(),
                       gone.incr.remote(), again.where.remote()])
    held = {tag: actor.hold.remote(tag) for tag, actor in
            (("again", again), ("once", once), ("gone", gone))}
    step("in_flight")
    later = {"again": again.incr.remote(), "gone": gone.incr.remote()}
    out = {"before": before, "far": [far_before, far_after], "retried": zray.get(held["again"], timeout=60),
           "later": zray.get(later["again"], timeout=60),
           "not_retried": died(held["once"]), "once_after": zray.get(once.incr.remote(), timeout=60),
           "gone_in_flight": died(held["gone"]), "gone_later": died(later["gone"]),
           "gone_after": died(gone.incr.remote())}
    found = zray.get_actor("again")
    out["found_where"] = zray.get(found.where.remote(), timeout=60)
    out["found_incr"] = zray.get(found.incr.remote(), timeout=60)
    try:
        zray.get_actor("gone")
        out["gone_lookup"] = "found"
    except ValueError as exc:
        out["gone_lookup"] = str(exc)
    from zray.util.state import list_actors
    out["table"] = {a["name"]: a for a in list_actors()}  # before the job's end kills them
    print(json.dumps(out))
"""


def test_actors_of_a_dead_node_restart_elsewhere_or_fail_with_the_cause(cluster: Head) -> None:
    driver = Driver(cluster, BODY)
    try:
        driver.reached("in_flight")
        for tag in ("again", "once", "gone"):
            poll_for(lambda tag=tag: os.path.exists(os.path.join(driver.folder, "started-" + tag)),  # type: ignore[misc]
                     60, what=f"the call to actor {tag} to start")
        victim = kill_node(cluster, "n2", signal.SIGKILL)
        wait_declared_dead(cluster, victim["node_id"])
        open(os.path.join(driver.folder, "release"), "w").close()
        driver.go("in_flight")
        out = driver.finish()
    finally:
        driver.kill()
    dead = victim["node_id"]
    before = out["before"]
    assert before[:4] == [1, 2, 1, 1] and before[4] == dead, out
    # Restarted elsewhere with its constructor re-run: the retried call and the
    # later ones see fresh state, in submission order.
    assert out["retried"] == 0 and out["later"] == 1, out
    assert out["found_where"] != dead and out["found_incr"] == 2, out
    assert out["once_after"] == 1, out
    assert "not retried (max_task_retries=0)" in out["not_retried"], out
    assert f"node {dead[:12]}" in out["not_retried"], out
    for key in ("gone_in_flight", "gone_later", "gone_after"):
        assert f"node {dead[:12]}" in out[key] and "died" in out[key], (key, out)
    assert "no restarts left" in out["gone_after"], out
    assert "no live actor named 'gone'" in out["gone_lookup"], out
    assert out["far"][0] == 1 and "zray.kill()" in out["far"][1], out
    actors = out["table"]
    for name in ("again", "once"):
        assert actors[name]["state"] == "ALIVE" and actors[name]["restarts"] == 1, actors[name]
        assert actors[name]["node_id"] != dead, actors[name]
    assert actors["gone"]["state"] == "DEAD" and dead in actors["gone"]["death_cause"], actors["gone"]
    # The driver is gone: its job's actors end on every node, restarted or not.
    poll_for(lambda: all(cluster.actors()[name]["state"] == "DEAD" for name in ("again", "once", "stay")),
             30, interval=0.2, what="the job's actors to end with it",
             on_timeout=lambda: str(cluster.actors()))
    assert "the job that created it ended" in cluster.actors()["stay"]["death_cause"]
