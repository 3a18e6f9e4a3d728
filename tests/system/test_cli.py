"""`zray start --head`, `zray start --address`, `zray status [--json]` and
`zray stop` on real service processes, under a private ZRAY_SESSION_ROOT."""

from __future__ import annotations

import json
import shutil
from typing import Any

import psutil
import pytest

from tests.conftest import describe, poll_for, short_tmpdir, stop_processes, zray_processes
from tests.system.test_actors_cli import Head, free_port_pair

pytestmark = pytest.mark.timeout(150)


def status_json(head: Head) -> dict[str, Any]:
    out = head.cli("status", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)


def alive_nodes(head: Head) -> int:
    return sum(1 for n in status_json(head)["nodes"] if n["alive"])


def test_start_status_stop_lifecycle() -> None:
    port = free_port_pair()
    head = Head(root=short_tmpdir("zc-"), address=f"127.0.0.1:{port}")
    try:
        started = head.cli("start", "--head", "--port", str(port), "--num-cpus", "2")
        assert started.returncode == 0, started.stdout + started.stderr
        assert head.address in started.stdout and "zray.init" in started.stdout, started.stdout

        again = head.cli("start", "--head", "--port", str(port))
        assert again.returncode == 1, "a second head on the same host must be refused"
        assert "already runs" in again.stdout + again.stderr, again.stdout + again.stderr

        head.driver("""
            zray.init("auto")

            @zray.remote
            def square(x):
                return x * x

            assert zray.get([square.remote(i) for i in range(10)], timeout=60) == [i * i for i in range(10)]
            assert zray.cluster_resources()["CPU"] == 2
            zray.shutdown()
        """)
        text = head.cli("status")
        assert text.returncode == 0, text.stderr
        assert "1 node alive" in text.stdout and "finished" in text.stdout, text.stdout

        doc = status_json(head)
        services = {s["name"]: s for s in doc["services"]}
        assert {"gcs", "global-sched", "raylet"} <= set(services), services
        assert all(s["alive"] and psutil.pid_exists(s["pid"]) for s in services.values()), services
        assert doc["nodes"][0]["resources_total"]["CPU"] == 2
        pids = [s["pid"] for s in services.values()]

        joined = head.cli("start", "--address", head.address, "--num-cpus", "1",
                          "--node-name", "extra")
        assert joined.returncode == 0, joined.stdout + joined.stderr
        poll_for(lambda: alive_nodes(head) == 2, 30, what="the second raylet to register")
        assert status_json(head)["resources"]["CPU"]["total"] == 3

        stopped = head.cli("stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        poll_for(lambda: not any(psutil.pid_exists(p) for p in pids), 15,
                 what="the services to exit after zray stop")
        poll_for(lambda: not zray_processes(session_dir=head.root), 15, interval=0.1,
                 what="no process of the cluster to be left",
                 on_timeout=lambda: describe(zray_processes(session_dir=head.root)))
        after = head.cli("status")
        assert after.returncode == 1 and "no zray cluster" in (after.stdout + after.stderr)
        assert head.cli("stop").returncode == 0, "stop with nothing running is not an error"
    finally:
        head.cli("stop")
        stop_processes(zray_processes(session_dir=head.root))
        shutil.rmtree(head.root, ignore_errors=True)
