"""A workload keeps running while the supervisor of `zray start` restarts
killed GCS shards: tasks keep completing, acknowledged kv writes survive,
and `zray status` reports the restarts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import (
    REPO_ROOT,
    poll_for,
    short_tmpdir,
    stop_popen,
)
from tests.system.clusters import Head, services, started_cluster

pytestmark = pytest.mark.timeout(180)

SHARDS = 2

WORKLOAD = textwrap.dedent("""
    import json, os, sys, time
    import zray

    progress, stop_file = sys.argv[1], sys.argv[2]
    zray.init("auto")

    @zray.remote
    def square(x):
        return x * x

    rounds, written = 0, []
    while not os.path.exists(stop_file):
        xs = list(range(rounds, rounds + 20))
        assert zray.get([square.remote(x) for x in xs], timeout=60) == [x * x for x in xs]
        key = f"round-{rounds}"
        zray.kv.put(key, str(rounds).encode())  # returns once the shard committed it
        written.append(key)
        rounds += 1
        with open(progress + ".tmp", "w") as f:
            f.write(str(rounds))
        os.replace(progress + ".tmp", progress)
    missing = [k for k in written if zray.kv.get(k) != k.split("-")[1].encode()]
    print(json.dumps({"rounds": rounds, "missing": missing}))
    zray.shutdown()
""")


@pytest.fixture
def head() -> Iterator[Head]:
    with started_cluster("zr-", ["--num-cpus", "2", "--gcs-shards", str(SHARDS)], shards=SHARDS) as h:
        yield h


def read_int(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read() or 0)
    except (OSError, ValueError):
        return 0


def test_workload_runs_through_gcs_shard_restarts(head: Head) -> None:
    assert {"gcs", "gcs-1"} <= set(services(head))
    folder = short_tmpdir("zw-")
    progress, stop_file = os.path.join(folder, "progress"), os.path.join(folder, "stop")
    env = dict(os.environ, ZRAY_SESSION_ROOT=head.root, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    driver = subprocess.Popen([sys.executable, "-c", WORKLOAD, progress, stop_file], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        poll_for(lambda: read_int(progress) >= 5, 60, what="the workload to run")
        for name in ("gcs-1", "gcs"):  # a non-zero shard, then the entry point
            before = services(head)[name]
            os.kill(before["pid"], signal.SIGKILL)

            def restarted(name: str = name, old: int = before["pid"]) -> dict[str, Any]:
                svc = services(head).get(name, {})
                return svc if svc.get("alive") and svc.get("pid") != old else {}

            svc = poll_for(restarted, 30, interval=0.2, what=f"the supervisor to restart {name}")
            assert svc["restarts"] == before["restarts"] + 1
            assert svc["last_exit"] == -signal.SIGKILL
            done = read_int(progress)
            poll_for(lambda done=done: read_int(progress) >= done + 5, 60,
                     what=f"tasks to keep completing after {name} restarted")
        text = head.cli("status")
        assert "restarted 1x" in text.stdout, text.stdout
    finally:
        open(stop_file, "w").close()
        try:
            out, err = driver.communicate(timeout=90)
        finally:
            stop_popen(driver)  # type: ignore[arg-type]
            shutil.rmtree(folder, ignore_errors=True)
    assert driver.returncode == 0, f"workload failed:\n{out}\n{err}"
    result = json.loads(out.strip().splitlines()[-1])
    assert result["rounds"] >= 15 and result["missing"] == []
