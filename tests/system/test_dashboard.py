"""The web dashboard of `zray start --head`, in a real headless browser: it
shows the cluster's node, and its task counts move when tasks run. A
screenshot goes to test-output/dashboard.png."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import REPO_ROOT, describe, poll_for, short_tmpdir, stop_processes, zray_processes
from tests.system.test_actors_cli import Head, free_port_pair
from tests.system.test_observe import free_port
from tests.system.webdriver import Chrome, find_browser

pytestmark = pytest.mark.timeout(180)
OUTPUT = REPO_ROOT / "test-output"


@pytest.fixture(scope="module")
def head_with_dashboard() -> Iterator[tuple[Head, int]]:
    port, dashboard = free_port_pair(), free_port()
    head = Head(root=short_tmpdir("zd-"), address=f"127.0.0.1:{port}")
    try:
        started = head.cli("start", "--head", "--port", str(port), "--num-cpus", "2",
                           "--dashboard-port", str(dashboard))
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"http://127.0.0.1:{dashboard}/" in started.stdout, started.stdout
        yield head, dashboard
    finally:
        stopped = head.cli("stop")
        try:
            poll_for(lambda: not zray_processes(session_dir=head.root), 15, interval=0.1,
                     what="the cluster's processes to exit after zray stop",
                     on_timeout=lambda: stopped.stdout + describe(zray_processes(session_dir=head.root)))
        finally:
            stop_processes(zray_processes(session_dir=head.root))


def test_snapshot_endpoint_serves_the_cluster(head_with_dashboard: tuple[Head, int]) -> None:
    _, port = head_with_dashboard
    doc = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/snapshot", timeout=10).read())
    assert len(doc["nodes"]) == 1 and doc["nodes"][0]["state"] == "ALIVE"
    assert doc["nodes"][0]["resources"]["CPU"]["total"] == 2


def test_dashboard_in_a_headless_browser(head_with_dashboard: tuple[Head, int]) -> None:
    found = find_browser()
    if isinstance(found, str):
        pytest.skip(found)
    head, port = head_with_dashboard
    chrome = Chrome(*found, port=free_port())
    try:
        chrome.get(f"http://127.0.0.1:{port}/")
        poll_for(lambda: chrome.run("return document.querySelectorAll('tr.node').length") == 1, 30,
                 interval=0.2, what="the node row on the page")
        assert chrome.run("return document.querySelector('tr.node td.ALIVE') !== null")

        def finished() -> int:
            text = chrome.run("const e = document.getElementById('count-FINISHED');"
                              "return e ? e.textContent : ''")
            return int(text.split(":")[1]) if text else -1

        before = poll_for(lambda: finished() + 1, 30, interval=0.2, what="task counts") - 1
        head.driver("""
            zray.init("auto")

            @zray.remote
            def shown(x):
                return x

            @zray.remote
            def broken():
                raise KeyError("shown on the dashboard")

            assert zray.get([shown.remote(i) for i in range(20)], timeout=60) == list(range(20))
            try:
                zray.get(broken.remote(), timeout=60)
            except KeyError:
                pass
            zray.shutdown()
        """)
        poll_for(lambda: finished() >= before + 20, 30, interval=0.2,
                 what="the page to show the finished tasks")
        poll_for(lambda: "shown on the dashboard" in chrome.run(
            "return document.getElementById('failures').textContent"), 30, interval=0.2,
            what="the failure's traceback on the page")
        assert int(chrome.run("return document.getElementById('status').dataset.updates")) >= 2
        OUTPUT.mkdir(exist_ok=True)
        shot = OUTPUT / "dashboard.png"
        chrome.screenshot(str(shot))
        assert shot.stat().st_size > 1000
        print(f"dashboard screenshot: {shot}")
    finally:
        chrome.quit()
