"""A GCS shard killed (-9) while a node dies: the supervisor of `zray start`
restarts the shard, the node is declared dead once the GCS takes writes
again, its tasks rerun and its objects are rebuilt, and the workload (the
chaos run's: spread tasks, chains of store objects, actor calls) goes on
with every result correct."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.chaos import driver_command
from tests.conftest import REPO_ROOT, poll_for, short_tmpdir, stop_popen
from tests.system.clusters import Head, services, started_cluster
from tests.system.node_faults import kill_node, wait_declared_dead

pytestmark = pytest.mark.timeout(300)

SHARDS = 2


@pytest.fixture
def cluster() -> Iterator[Head]:
    with started_cluster("zg-", ["--num-cpus", "1", "--node-name", "head", "--no-dashboard",
                                 "--gcs-shards", str(SHARDS)],
                         nodes=[["--num-cpus", "1", "--node-name", name] for name in ("n2", "n3")],
                         shards=SHARDS, env={"ZRAY_SCHED_NODE_TIMEOUT": "2.0"}) as h:
        yield h


def rounds(log: Path) -> int:
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return 0
    return int(lines[-1].split()[1]) if lines else 0


def driver_output(driver: subprocess.Popen[str]) -> str:
    """What a driver that does not get on printed (it is stopped first)."""
    if driver.poll() is None:
        driver.kill()
    out, err = driver.communicate(timeout=30)
    return f"driver exit {driver.returncode}:\n{out[-3000:]}\n{err[-3000:]}"


@pytest.mark.parametrize("shard", ["gcs-1", "gcs"])
def test_workload_survives_a_gcs_shard_restart_during_a_node_death(cluster: Head, shard: str) -> None:
    folder = Path(short_tmpdir("zw-"))
    log, stop = folder / "rounds.log", folder / "stop"
    env = dict(os.environ, ZRAY_SESSION_ROOT=cluster.root, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    driver = subprocess.Popen(driver_command(0, 600, str(log), 60, str(stop)), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO_ROOT))
    try:
        poll_for(lambda: rounds(log) >= 3, 90, interval=0.1, what="the workload to run",
                 on_timeout=lambda: driver_output(driver))
        before = services(cluster)[shard]
        os.kill(before["pid"], signal.SIGKILL)
        victim = kill_node(cluster, "n2")
        poll_for(lambda: services(cluster)[shard].get("pid") not in (None, before["pid"])
                 and services(cluster)[shard].get("alive"), 60, interval=0.2,
                 what=f"the supervisor to restart {shard}")
        wait_declared_dead(cluster, victim["node_id"])
        done = rounds(log)
        poll_for(lambda: rounds(log) >= done + 3, 120, interval=0.2,
                 what="rounds to keep completing after the shard restart and the node death",
                 on_timeout=lambda: driver_output(driver))
    finally:
        stop.touch()
        try:
            out, err = driver.communicate(timeout=120)
        finally:
            stop_popen(driver)  # type: ignore[arg-type]
            shutil.rmtree(folder, ignore_errors=True)
    assert driver.returncode == 0, f"workload failed:\n{out}\n{err}"
    result = json.loads(out.strip().splitlines()[-1])
    assert result["wrong"] == 0 and result["rounds"] >= 6, result
