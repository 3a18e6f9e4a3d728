"""A node cut off the network (root only): two hosts in their own network
namespaces on one bridge (tests/netns.py), the head (GCS, global scheduler,
raylet, driver) and n2 (a raylet), each started by `zray start` as on two
machines. Taking n2's link down makes it silent: it is declared dead within
the ~2 s timeout, the task it was running reruns on the head, and an object
only n2 held is rebuilt by lineage replay. When the link comes back, n2 learns
it was declared dead, stops (its results are no longer trusted), and its
supervisor starts a raylet that joins as a new node."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import netns
from tests.conftest import REPO_ROOT, poll_for

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(netns.available() is not None, reason=str(netns.available()))]

PORT = 6379
SESSIONS = "/tmp/zs"  # each host's own /tmp

DRIVER = textwrap.dedent("""
    import json, os, time
    import numpy as np
    import zray
    from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    zray.init("auto")
    names = {n["NodeID"]: n["NodeName"] for n in zray.nodes() if n["Alive"]}
    ON_N2 = NodeAffinitySchedulingStrategy(next(k for k, v in names.items() if v == "n2"), soft=True)

    @zray.remote
    def make(mb):
        return np.ones(mb * 1024 * 1024 // 8)

    @zray.remote
    def slow(seconds):
        time.sleep(seconds)
        return zray.get_runtime_context().get_node_id()

    kept = make.options(scheduling_strategy=ON_N2).remote(2)     # 2 MB, kept in n2's store
    zray.wait([kept], fetch_local=False)
    running = slow.options(scheduling_strategy=ON_N2, max_retries=2).remote(5)
    print("ready", flush=True)
    while not os.path.exists("/tmp/go"):   # the test cuts n2 off, then says go
        time.sleep(0.05)
    value = zray.get(kept, timeout=120)
    print(json.dumps({"ok": bool((value == 1.0).all()), "size": int(value.size),
                      "rerun_on": names.get(zray.get(running, timeout=120), "?")}))
""")


class TwoHosts:
    def __init__(self, segment: netns.Segment) -> None:
        self.segment = segment
        self.head = segment.add_host("head")
        self.n2 = segment.add_host("n2")
        segment.write_hosts()
        from zray.common.security import new_token

        self.env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
                    "PYTHONPATH": str(REPO_ROOT), "HOME": "/tmp", "LANG": "C.UTF-8",
                    "ZRAY_SESSION_ROOT": SESSIONS, "ZRAY_TOKEN": new_token(),
                    "ZRAY_SCHED_NODE_TIMEOUT": "2.0", "PYTHONUNBUFFERED": "1"}

    def zray(self, host: netns.Host, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-c", "from zray.cli import main; main()", *args]
        out = self.segment.run(host, argv, self.env, str(REPO_ROOT), timeout)
        assert out.returncode == 0, f"zray {' '.join(args)} on {host.name}:\n{out.stdout}{out.stderr}"
        return out

    def nodes(self) -> list[dict[str, Any]]:
        return list(json.loads(self.zray(self.head, "status", "--json").stdout)["nodes"])

    def link(self, host: netns.Host, state: str) -> None:
        """Its cable: the switch side of its veth (v<index>), up or down."""
        index = list(self.segment.hosts).index(host.name) + 1
        netns._ip("link", "set", f"v{index}", state, netns=self.segment.switch)


@pytest.fixture
def hosts() -> Iterator[TwoHosts]:
    with netns.Segment("zn") as segment:
        two = TwoHosts(segment)
        two.zray(two.head, "start", "--head", "--host", "0.0.0.0", "--port", str(PORT),
                 "--num-cpus", "1", "--node-name", "head", "--no-dashboard")
        two.zray(two.n2, "start", "--address", f"head:{PORT}", "--num-cpus", "1", "--node-name", "n2")
        try:
            yield two
        finally:
            for host in (two.n2, two.head):
                two.segment.run(host, [sys.executable, "-c", "from zray.cli import main; main()",
                                       "stop"], two.env, str(REPO_ROOT), 60)


def test_a_node_cut_off_is_declared_dead_its_work_reruns_and_it_rejoins_fenced(hosts: TwoHosts) -> None:
    driver = hosts.segment.popen(hosts.head, [sys.executable, "-c", DRIVER], hosts.env, str(REPO_ROOT))
    assert driver.stdout is not None
    try:
        line = driver.stdout.readline()
        assert line.strip() == "ready", line + driver.stdout.read()
        victim = next(n for n in hosts.nodes() if n["node_name"] == "n2" and n["alive"])
        hosts.link(hosts.n2, "down")
        poll_for(lambda: any(n["node_id"] == victim["node_id"] and not n["alive"] for n in hosts.nodes()),
                 60, interval=0.2, what="the cut-off node to be declared dead")
        (hosts.head.tmp / "go").touch()
        out_text, _ = driver.communicate(timeout=150)
        assert driver.returncode == 0, out_text
        out = json.loads(out_text.strip().splitlines()[-1])
        assert out["ok"] and out["size"] == 2 * 1024 * 1024 // 8, out
        assert out["rerun_on"] == "head", out

        hosts.link(hosts.n2, "up")
        fresh = poll_for(lambda: next((n for n in hosts.nodes() if n["node_name"] == "n2" and n["alive"]
                                       and n["node_id"] != victim["node_id"]), None), 90, interval=0.5,
                         what="n2 to come back as a new node")
        assert fresh["pid"] != victim["pid"]
        assert not any(n["node_id"] == victim["node_id"] and n["alive"] for n in hosts.nodes())
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
