"""docker-compose.yml for real, without Docker: every service of the compose
file runs in its own network namespace on a 198.18.0.0/24 segment (see
tests/compose_up.py and tests/netns.py), started in depends_on order and
gated by its own health check; then `docker compose run driver python
examples/monte_carlo_pi.py` runs the example on the cluster's raylets."""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

import pytest

from tests import netns
from tests.compose_up import ComposeProject
from tests.conftest import REPO_ROOT, poll_for
from zray.common.security import new_token

_unavailable = netns.available()
pytestmark = [pytest.mark.skipif(_unavailable is not None, reason=f"network namespaces: {_unavailable}"),
              pytest.mark.timeout(180)]

COMPOSE = REPO_ROOT / "docker-compose.yml"
PI_LINE = re.compile(r"pi ~ (\d+\.\d+)")


def test_compose_cluster_runs_the_example_driver() -> None:
    started = time.monotonic()
    # As `ZRAY_TOKEN=... docker compose up`: every TCP socket speaks CURVE.
    with ComposeProject(COMPOSE, env={"ZRAY_TOKEN": new_token()}) as project:
        project.up(timeout=90)
        up_seconds = time.monotonic() - started

        # Every raylet replica joined: the GCS lists three live nodes, and both
        # scheduler replicas hear their heartbeats.
        def nodes() -> dict[str, dict[str, Any]]:
            status = project.exec("sched1", ["zray", "status", "--address", "gcs0:6379", "--json"],
                                  timeout=30)
            assert status.returncode == 0, status.stderr
            return {n["node_name"]: n for n in json.loads(status.stdout)["nodes"] if n["alive"]}

        def live_nodes() -> list[str]:
            return sorted(nodes())

        poll_for(lambda: live_nodes() == ["raylet-1", "raylet-2", "raylet-3"], 30, interval=0.5,
                 what="three live raylet nodes", on_timeout=lambda: str(live_nodes()))
        for sched in ("sched1", "sched2"):
            def heard(sched: str = sched) -> str:
                check = project.exec(sched, ["zray", "global-sched", "check", "localhost:6390"],
                                     timeout=30)
                return check.stdout if "3 node(s)" in check.stdout else ""

            poll_for(heard, 30, interval=0.5, what=f"{sched} to hear three raylets")
        project.mark("cluster checked")
        run = project.run("driver", ["python", "examples/monte_carlo_pi.py"], timeout=120)
        assert run.returncode == 0, f"driver failed:\n{run.stdout}\n{run.stderr}"
        estimates = [float(v) for v in PI_LINE.findall(run.stdout)]
        assert len(estimates) == 2, run.stdout
        assert all(abs(e - math.pi) < 0.01 for e in estimates), run.stdout
        assert "cluster (auto) up" in run.stdout and "with 6 CPUs" in run.stdout, run.stdout
        # The driver's node has no CPUs: the raylets ran its 216 tasks, pulling
        # the array it put from the driver's store.
        def finished() -> dict[str, int]:  # node records are refreshed once a second
            return {name: n["tasks_finished"] for name, n in nodes().items() if name != "driver"}

        poll_for(lambda: sum(finished().values()) >= 216, 15, interval=0.5,
                 what="the raylets' records to count 216 finished tasks",
                 on_timeout=lambda: str(finished()))

        project.mark("driver done")
        timeline = project.timeline()
        # The driver's container joined as a node, with its store in its own /dev/shm.
        assert any(p.name.startswith("zray_") for p in project.host("driver").shm.iterdir())
        # The GCS shards keep their data in their volumes.
        assert (project.volume("gcs0-data") / "gcs" / "shard-0").is_dir()
        assert (project.volume("gcs1-data") / "gcs" / "shard-1").is_dir()
    print(f"\ncompose up {up_seconds:.1f}s, total {time.monotonic() - started:.1f}s\n{timeline}")
