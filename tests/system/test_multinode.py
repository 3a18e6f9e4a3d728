"""Several raylets on this host, joined with `zray start --address`: tasks
spread when a node is full, run where their large input is, pull objects
across nodes, follow SPREAD, node affinity and custom resources, and keep
running when a global scheduler dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from tests.conftest import (
    REPO_ROOT,
    stop_popen,
)
from tests.system.clusters import Head, started_cluster

pytestmark = pytest.mark.timeout(240)

PRELUDE = """
import json, os, sys, time
import numpy as np
import zray
from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

zray.init("auto")
NODES = {n["NodeName"]: n["NodeID"] for n in zray.nodes() if n["Alive"]}

@zray.remote
def where(seconds=0.0):
    time.sleep(seconds)
    return zray.get_runtime_context().get_node_id()

@zray.remote
def make(mb):
    return np.ones(mb * 1024 * 1024 // 8)

@zray.remote
def total(a):
    return float(a.sum()), zray.get_runtime_context().get_node_id()
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Head]:
    """A head ("head") and two nodes ("n2", "n3" with a custom resource), one CPU each."""
    with started_cluster("zm-", ["--num-cpus", "1", "--node-name", "head", "--no-dashboard"],
                         nodes=[["--num-cpus", "1", "--node-name", "n2"],
                                ["--num-cpus", "1", "--node-name", "n3",
                                 "--resources", '{"special": 1}']]) as h:
        yield h


def run(head: Head, body: str) -> dict:  # type: ignore[type-arg]
    """Run a driver on the head's node; its last output line is JSON."""
    result = head.driver(PRELUDE + textwrap.dedent(body), timeout=180)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_three_nodes_joined(cluster: Head) -> None:
    out = run(cluster, 'print(json.dumps({"nodes": sorted(NODES), "cpus": zray.cluster_resources()["CPU"]}))')
    assert out == {"nodes": ["head", "n2", "n3"], "cpus": 3.0}


def test_tasks_spread_when_the_node_is_full(cluster: Head) -> None:
    out = run(cluster, """
        ids = zray.get([where.remote(0.3) for _ in range(12)], timeout=120)
        names = {v: k for k, v in NODES.items()}
        print(json.dumps(sorted({names[i] for i in ids})))
    """)
    assert out == ["head", "n2", "n3"]


def test_spread_strategy_and_affinity(cluster: Head) -> None:
    out = run(cluster, """
        spread = zray.get([where.options(scheduling_strategy="SPREAD").remote(0.05)
                           for _ in range(6)], timeout=120)
        pinned = zray.get([where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            NODES["n2"], soft=False)).remote() for _ in range(3)], timeout=60)
        soft = zray.get(where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            "0" * 32, soft=True)).remote(), timeout=60)
        try:
            zray.get(where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                "0" * 32)).remote(), timeout=60)
            hard = "ran"
        except zray.exceptions.TaskUnschedulableError as exc:
            hard = str(exc)
        special = zray.get(where.options(resources={"special": 1}).remote(), timeout=60)
        names = {v: k for k, v in NODES.items()}
        print(json.dumps({"spread": sorted({names[i] for i in spread}),
                          "pinned": [names[i] for i in pinned], "soft": names[soft],
                          "hard": hard, "special": names[special]}))
    """)
    assert out["spread"] == ["head", "n2", "n3"]
    assert out["pinned"] == ["n2"] * 3
    assert out["soft"] in ("head", "n2", "n3")
    assert "must run on node 0000" in out["hard"] and "soft=True" in out["hard"]
    assert out["special"] == "n3"


def test_large_input_moves_the_task_to_it_and_objects_travel(cluster: Head) -> None:
    out = run(cluster, """
        on_n3 = make.options(resources={"special": 1}).remote(50)   # 50 MB kept on n3
        ref_total, ran_on = zray.get(total.remote(on_n3), timeout=120)
        # A task pinned to a third node pulls the object from n3.
        far_total, far_on = zray.get(total.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            NODES["n2"])).remote(on_n3), timeout=120)
        # The driver (on the head) pulls it too; many gets share one transfer.
        arrays = zray.get([on_n3] * 4, timeout=120)
        names = {v: k for k, v in NODES.items()}
        print(json.dumps({"total": ref_total, "ran_on": names[ran_on], "far_total": far_total,
                          "far_on": names[far_on], "driver": [float(a.sum()) for a in arrays]}))
    """)
    size = 50 * 1024 * 1024 // 8
    assert out["total"] == size and out["ran_on"] == "n3", out
    assert out["far_total"] == size and out["far_on"] == "n2", out
    assert out["driver"] == [size] * 4


def test_work_continues_when_a_global_scheduler_dies(cluster: Head) -> None:
    gcs = cluster.address
    log = os.path.join(cluster.root, "sched2.log")
    env = dict(os.environ, ZRAY_SESSION_ROOT=cluster.root,
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    with open(log, "ab") as out:
        second = subprocess.Popen([sys.executable, "-m", "zray.services.global_sched", "start",
                                   "--gcs-address", gcs, "--address", "tcp://127.0.0.1:0"],
                                  stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        first = json.loads(cluster.cli("status", "--json").stdout)
        sched = next(s for s in first["services"] if s["name"] == "global-sched")
        os.kill(sched["pid"], signal.SIGKILL)  # the supervisor restarts it, but not at once
        out = run(cluster, """
            ids = zray.get([where.remote(0.2) for _ in range(12)], timeout=120)
            names = {v: k for k, v in NODES.items()}
            print(json.dumps(sorted({names[i] for i in ids})))
        """)
        assert len(out) >= 2, "spilled tasks still reach other nodes"
    finally:
        stop_popen(second)


def test_a_task_no_node_can_run_waits_and_status_says_so(cluster: Head) -> None:
    out = run(cluster, """
        import subprocess
        ref = where.options(resources={"nowhere": 1}).remote()
        deadline = time.time() + 60
        text = ""
        while time.time() < deadline and "nowhere" not in text:
            time.sleep(0.3)
            text = subprocess.run([sys.executable, "-c", "from zray.cli import main; main()", "status"],
                                  capture_output=True, text=True).stdout
        ready, _ = zray.wait([ref], timeout=0.5)
        zray.cancel(ref)
        print(json.dumps({"status": text, "ready": len(ready)}))
    """)
    assert out["ready"] == 0
    assert "waiting" in out["status"] and "'nowhere': 1.0" in out["status"], out["status"]
