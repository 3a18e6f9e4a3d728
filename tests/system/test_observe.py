"""`zray list/summary/logs/timeline`, the state API and the metrics exporters,
against a `zray start --head` cluster whose driver holds tasks in every state:
finished, failed, retried (its worker crashed once), running (blocked on a
file), queued behind it, pending on its result, and pending on a GPU the node
lacks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    REPO_ROOT,
    describe,
    poll_for,
    short_tmpdir,
    stop_popen,
    stop_processes,
    zray_processes,
)
from tests.system.test_actors_cli import Head, free_port_pair
from zray.common import security

pytestmark = pytest.mark.timeout(180)

DRIVER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import zray
    from tests.conftest import wait_for_file

    folder = sys.argv[1]
    zray.init("auto")

    @zray.remote
    def square(x):
        print(f"square says {x}", flush=True)
        return x * x

    @zray.remote
    def bad():
        raise ValueError("observed failure")

    @zray.remote(max_retries=1)
    def flaky(marker):
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(3)  # the worker dies: the raylet retries the task
        return "second attempt"

    @zray.remote(num_gpus=1)
    def needs_gpu():
        return "never"

    @zray.remote
    def queued_behind():
        return "queued"

    @zray.remote
    def consume(x):
        return x

    @zray.remote
    def ticker(release):
        n = 0
        while not os.path.exists(release):
            n += 1
            print(f"tick {n}", flush=True)
            time.sleep(0.1)
        return n

    @zray.remote(num_cpus=0)
    class Greeter:
        def hello(self):
            print("greeter says hello", flush=True)
            return os.getpid()

    greeter = Greeter.remote()
    assert zray.get(greeter.hello.remote(), timeout=60)
    assert zray.get([square.remote(i) for i in range(5)], timeout=60) == [0, 1, 4, 9, 16]
    try:
        zray.get(bad.remote(), timeout=60)
    except ValueError:
        pass
    assert zray.get(flaky.remote(os.path.join(folder, "flaky")), timeout=60) == "second attempt"
    big = zray.put(np.zeros(1_000_000))  # lives in the shared-memory store
    release = os.path.join(folder, "release")
    gpu = needs_gpu.remote()
    running = ticker.remote(release)
    queued = queued_behind.remote()
    pending = consume.remote(running)
    print("READY", flush=True)
    while not os.path.exists(release):
        time.sleep(0.05)
    zray.get([running, queued, pending], timeout=60)
    zray.cancel(gpu)
    zray.shutdown()
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, head: Head, folder: Path, driver: subprocess.Popen[str], dashboard: int) -> None:
        self.head, self.folder, self.driver, self.dashboard = head, folder, driver, dashboard

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.head.cli(*args)

    def json(self, *args: str) -> Any:
        out = self.cli(*args, "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        return json.loads(out.stdout)

    def tasks(self) -> dict[str, dict[str, Any]]:
        """Latest record per function name (the first one for `square`)."""
        rows: dict[str, dict[str, Any]] = {}
        for row in self.json("list", "tasks", "--limit", "1000"):
            rows.setdefault(row["func"], row)
            if row["func"] != "square":
                rows[row["func"]] = row
        return rows


def _start_driver(head: Head, folder: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, ZRAY_SESSION_ROOT=head.root, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=str(REPO_ROOT))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    port = free_port_pair()
    head = Head(root=short_tmpdir("zo-"), address=f"127.0.0.1:{port}")
    folder = tmp_path_factory.mktemp("observe")
    dashboard = free_port()
    driver = None
    try:
        started = head.cli("start", "--head", "--port", str(port), "--num-cpus", "1",
                           "--metrics-port", "0", "--dashboard-port", str(dashboard))
        assert started.returncode == 0, f"zray start failed:\n{started.stdout}\n{started.stderr}"
        security.use_token(head.token())  # for this process's GCS clients
        driver = _start_driver(head, folder)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(driver.stdout or []), daemon=True)
        reader.start()
        poll_for(lambda: "READY\n" in lines or driver.poll() is not None, 90, interval=0.05,
                 what="the driver to set up its tasks")
        assert driver.poll() is None, "driver exited early:\n" + "".join(lines)
        yield Cluster(head, folder, driver, dashboard)
    finally:
        security.use_token(None)
        (folder / "release").touch()
        if driver is not None:
            try:
                driver.wait(60)
            except subprocess.TimeoutExpired:
                stop_popen(driver)
        stopped = head.cli("stop")
        try:
            poll_for(lambda: not zray_processes(session_dir=head.root), 15, interval=0.1,
                     what="the cluster's processes to exit after zray stop",
                     on_timeout=lambda: stopped.stdout + stopped.stderr
                     + describe(zray_processes(session_dir=head.root)))
        finally:
            stop_processes(zray_processes(session_dir=head.root))


ALL_STATES = {"FINISHED", "FAILED", "RUNNING", "QUEUED", "PENDING_ARGS", "PENDING_RESOURCES"}


def test_list_tasks_shows_every_state_and_what_pending_tasks_wait_on(cluster: Cluster) -> None:
    tasks = poll_for(lambda: (t := cluster.tasks()) and ALL_STATES <= {r["state"] for r in t.values()}
                     and t, 30, interval=0.2, what="tasks in every state",
                     on_timeout=lambda: json.dumps(cluster.tasks(), indent=1)[:3000])
    assert tasks["square"]["state"] == "FINISHED" and tasks["square"]["pid"]
    assert tasks["bad"]["state"] == "FAILED" and "observed failure" in tasks["bad"]["error"]
    flaky = tasks["flaky"]
    assert flaky["state"] == "FINISHED" and flaky["attempt"] == 1, flaky
    assert [r["state"] for r in flaky["runs"]] == ["RETRYING", "FINISHED"], flaky["runs"]
    assert tasks["ticker"]["state"] == "RUNNING"
    assert tasks["queued_behind"]["state"] == "QUEUED"
    assert "free worker" in tasks["queued_behind"]["waiting_on"]
    assert tasks["consume"]["state"] == "PENDING_ARGS"
    assert tasks["ticker"]["task_id"][:16] in tasks["consume"]["waiting_on"]
    gpu = tasks["needs_gpu"]
    assert gpu["state"] == "PENDING_RESOURCES" and "GPU: 1" in gpu["waiting_on"], gpu

    pending = cluster.json("list", "tasks", "--state", "pending_resources")
    assert [r["func"] for r in pending] == ["needs_gpu"]
    assert len(cluster.json("list", "tasks", "--limit", "2")) == 2
    table = cluster.cli("list", "tasks")
    assert table.returncode == 0 and "PENDING_RESOURCES" in table.stdout and "GPU: 1" in table.stdout

    from zray.util.state import list_tasks

    rows = list_tasks(address=cluster.head.address, filters=[("func", "=", "square")])
    assert len(rows) == 5 and {r["state"] for r in rows} == {"FINISHED"}


def test_summary_counts_tasks_by_function_and_state(cluster: Cluster) -> None:
    counts = poll_for(lambda: (c := cluster.json("summary", "tasks")).get("consume") and c, 30,
                      interval=0.2, what="the pending task in the summary")
    assert counts["square"] == {"FINISHED": 5}
    assert counts["bad"] == {"FAILED": 1}
    assert counts["needs_gpu"] == {"PENDING_RESOURCES": 1}
    text = cluster.cli("summary", "tasks").stdout
    assert "square" in text and "FINISHED" in text

    from zray.util.state import summarize_tasks

    assert summarize_tasks(cluster.head.address)["square"] == {"FINISHED": 5}


def test_list_nodes_actors_objects_workers(cluster: Cluster) -> None:
    nodes = cluster.json("list", "nodes")
    assert len(nodes) == 1 and nodes[0]["state"] == "ALIVE"
    actors = cluster.json("list", "actors", "--state", "ALIVE")
    assert [a["class_name"] for a in actors] == ["Greeter"]
    objects = cluster.json("list", "objects")
    assert any(o["size"] >= 8_000_000 and o["is_put"] for o in objects), objects
    ticker = cluster.tasks()["ticker"]
    workers = poll_for(lambda: [w for w in cluster.json("list", "workers")
                                if w["task_id"] == ticker["task_id"]], 10, interval=0.2,
                       what="the worker running the ticker")
    assert workers[0]["state"] == "BUSY" and workers[0]["pid"] == ticker["pid"]
    assert any(w["actor_id"] == actors[0]["actor_id"] for w in cluster.json("list", "workers"))
    for kind in ("nodes", "actors", "objects", "workers"):
        out = cluster.cli("list", kind)
        assert out.returncode == 0 and out.stdout.strip(), out.stderr


def test_logs_list_print_and_follow(cluster: Cluster) -> None:
    listing = cluster.cli("logs")
    assert listing.returncode == 0 and "worker-" in listing.stdout and "raylet.log" in listing.stdout
    tasks = cluster.tasks()
    square = cluster.cli("logs", "--task", tasks["square"]["task_id"][:12])
    assert square.returncode == 0 and "square says 0" in square.stdout, square.stdout + square.stderr
    actor_id = cluster.json("list", "actors")[0]["actor_id"]
    greeter = cluster.cli("logs", "--actor", actor_id[:10])
    assert "greeter says hello" in greeter.stdout, greeter.stdout + greeter.stderr
    by_worker = cluster.cli("logs", "--worker", tasks["square"]["worker_id"][:8])
    assert "square says" in by_worker.stdout

    env = dict(os.environ, **cluster.head.env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    follow = subprocess.Popen(
        [sys.executable, "-c", "from zray.cli import main; main()", "logs", "--task",
         tasks["ticker"]["task_id"], "--follow", "--tail", "1"],
        stdout=subprocess.PIPE, text=True, env=env)
    try:
        seen: list[str] = []
        threading.Thread(target=lambda: seen.extend(follow.stdout or []), daemon=True).start()
        first = poll_for(lambda: seen and int(seen[0].split()[1]), 20, what="the ticker's last line")
        poll_for(lambda: any(int(line.split()[1]) >= first + 3 for line in seen if line.startswith("tick")),
                 20, what="new ticks appended while following")
    finally:
        stop_popen(follow)


def test_bad_input_is_named(cluster: Cluster) -> None:
    for args, words in ((["list", "jobs"], "choose one of"), (["list", "tasks", "--state", "sleepy"],
                        "unknown task state"), (["logs", "--task", "ffffffffffff"], "no task with id"),
                        (["summary", "nodes"], "only `zray summary tasks`"),
                        (["list", "tasks", "--filter", "colour=red"], "cannot filter on")):
        out = cluster.cli(*args)
        assert out.returncode == 1 and words in out.stderr, (args, out.stdout, out.stderr)


def test_timeline_is_a_valid_chrome_trace(cluster: Cluster, tmp_path: Path) -> None:
    from zray.common.trace import validate_trace

    path = tmp_path / "trace.json"
    out = cluster.cli("timeline", "-o", str(path))
    assert out.returncode == 0, out.stderr
    events = json.loads(path.read_text())
    assert validate_trace(events) == []
    slices = [e for e in events if e["ph"] in ("X", "B")]
    names = {e["name"] for e in slices}
    assert {"square", "bad", "flaky", "Greeter.__init__"} <= names, names
    for e in slices:
        assert e["args"]["task_id"] and e["tid"] > 0
    threads = {(e["pid"], e["tid"]) for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {(e["pid"], e["tid"]) for e in slices} <= threads
    flaky = [e for e in slices if e["name"] == "flaky"]
    assert len(flaky) == 2 and flaky[0]["tid"] != flaky[1]["tid"], "one slice per attempt, per worker"


def test_metrics_are_scraped_and_parsed(cluster: Cluster) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from zray.common.messages.tables import KV
    from zray.services.gcs.client import GcsClient

    gcs = GcsClient(cluster.head.address, timeout=5.0)
    try:
        exporters = poll_for(lambda: {json.loads(v)["service"]: json.loads(v)["url"]
                                      for _, v in gcs.scan(KV, prefix="metrics:")}
                             if len(gcs.scan(KV, prefix="metrics:")) >= 3 else None, 20,
                             interval=0.2, what="three metrics exporters announced")
    finally:
        gcs.close()
    assert set(exporters) == {"gcs", "global-sched", "raylet"}
    samples: dict[str, list[Any]] = {}
    for url in exporters.values():
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append(sample)

    def value(name: str) -> float:
        return sum(s.value for s in samples[name])

    assert value("zray_tasks_submitted_total") >= 10
    assert value("zray_tasks_failed_total") >= 1
    assert value("zray_tasks_retried_total") >= 1
    assert value("zray_tasks_pending_resources") == 1
    assert value("zray_tasks_queued") >= 1
    assert value("zray_object_store_used_bytes") >= 8_000_000
    assert {s.labels["state"] for s in samples["zray_workers"]} >= {"BUSY", "IDLE"}
    assert value("zray_gcs_request_seconds_count") > 0 and "zray_gcs_request_seconds_sum" in samples
    assert [s.labels["node_id"] for s in samples["zray_node_heartbeat_age_seconds"]]
