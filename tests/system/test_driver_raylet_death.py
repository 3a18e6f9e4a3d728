"""A driver attached to a cluster (`zray.init(address)`) whose local raylet is
killed: a pending `get` with no timeout raises RayletDiedError at once (it
would otherwise wait forever), and later calls raise it too."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from tests.system.clusters import Head, started_cluster
from tests.system.node_faults import Driver, node

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def cluster() -> Iterator[Head]:
    with started_cluster("zr-", ["--num-cpus", "1", "--node-name", "head", "--no-dashboard"],
                         nodes=[["--num-cpus", "1", "--node-name", "n2"]]) as h:
        yield h


def test_a_pending_get_fails_when_the_drivers_raylet_dies(cluster: Head) -> None:
    driver = Driver(cluster, """
        ref = slow.options(scheduling_strategy=ON_N2).remote(600)
        print("waiting", flush=True)   # the test kills the raylet now
        try:
            zray.get(ref)       # no timeout: only the raylet's death can end it
            error, kind = "", ""
        except zray.RayletDiedError as exc:
            error, kind = str(exc), type(exc).__name__
        try:
            zray.put(1)
            later = ""
        except zray.RayletDiedError as exc:
            later = type(exc).__name__
        zray.shutdown()
        print(json.dumps({"error": error, "kind": kind, "later": later}))
    """)
    try:
        driver.reached("waiting")
        raylet = node(cluster, "head")
        os.kill(raylet["pid"], signal.SIGKILL)
        out = driver.finish(timeout=60)
    finally:
        driver.kill()
    assert out["kind"] == "RayletDiedError", out
    assert f"pid {raylet['pid']}" in out["error"] and raylet["node_id"][:12] in out["error"], out
    assert "zray.init" in out["error"], out
    assert out["later"] == "RayletDiedError", out
