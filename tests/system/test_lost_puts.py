"""Objects stored with `zray.put` on a node that dies: a put has no lineage,
so a get of one whose only copy was there raises ObjectLostError naming the
object and why; a small put that travelled inline with the result survives."""

from __future__ import annotations

import pytest

from tests.system.clusters import Head
from tests.system.node_faults import (  # noqa: F401  (three_nodes: the fixture `cluster`)
    Driver,
    kill_node,
    three_nodes,
    wait_declared_dead,
)

pytestmark = pytest.mark.timeout(240)


def test_a_put_lost_with_its_node_raises_object_lost(cluster: Head) -> None:
    driver = Driver(cluster, """
        @zray.remote
        def putter():
            # 1 MB into n2's store, and a small value that travels inline with the result.
            return [zray.put(np.ones(128 * 1024)), zray.put("small")]

        outer = zray.get(putter.options(scheduling_strategy=ON_N2).remote(), timeout=60)
        big, small = outer
        # Read once while n2 lives: the refs resolve across nodes.
        assert zray.get(small, timeout=60) == "small"
        step("ready")
        try:
            zray.get(big, timeout=90)
            error, kind = "", ""
        except zray.ObjectLostError as exc:
            error, kind = str(exc), type(exc).__name__
        print(json.dumps({"error": error, "kind": kind, "big": big.hex(),
                          "small": zray.get(small, timeout=60)}))
    """)
    try:
        driver.reached("ready")
        victim = kill_node(cluster, "n2")
        wait_declared_dead(cluster, victim["node_id"])
        driver.go("ready")
        out = driver.finish()
    finally:
        driver.kill()
    assert out["kind"] == "ObjectLostError", out
    assert out["big"] in out["error"], out
    assert "zray.put" in out["error"] and victim["node_id"][:12] in out["error"], out
    assert "cannot be rebuilt" in out["error"], out
    assert out["small"] == "small", out
