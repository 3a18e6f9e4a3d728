"""The chaos run as a test (not in the default run; `python -m pytest -m chaos
tests/chaos`): benchmarks/chaos.py's workload of thousands of tasks, chains of
store objects and actor calls on 4 raylets, while a killer SIGKILLs a random
non-head raylet every few seconds and the supervisor restarts it as a new
node. Every result must be correct, every resource free again at the end, and
no process, socket folder or /dev/shm file left behind. The report is printed
(faults, recovery time per fault, throughput with and without faults)."""

from __future__ import annotations

import json
import os

import pytest

from benchmarks.chaos import run
from tests.conftest import poll_for, short_tmpdir, zray_processes

CALM = float(os.environ.get("ZRAY_CHAOS_CALM", "20"))
CHAOS = float(os.environ.get("ZRAY_CHAOS_SECONDS", "60"))
EVERY = float(os.environ.get("ZRAY_CHAOS_EVERY", "4"))

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(int(CALM + CHAOS) + 900)]


def test_raylets_killed_and_restarted_under_load() -> None:
    root = short_tmpdir("zchaos-")
    report = run(CALM, CHAOS, EVERY, root=root)
    print(json.dumps({k: v for k, v in report.items() if k != "store_dirs"}, indent=1))
    assert report["faults"] >= max(1, int(CHAOS / EVERY) // 2), report
    assert report["wrong_results"] == 0, report
    assert report["tasks"] >= 1000, report
    assert report["all_resources_free_at_end"], report
    assert report["alive_nodes_at_end"] == 4, report
    poll_for(lambda: not zray_processes(session_dir=root), 20, interval=0.2,
             what="every process of the chaos cluster to exit")
    assert not os.path.exists(root)
    # Every node's store, the killed ones' too, is gone.
    poll_for(lambda: not [d for d in report["store_dirs"] if os.path.exists(d)], 10,
             what="the stores of the chaos cluster to be removed",
             on_timeout=lambda: str([d for d in report["store_dirs"] if os.path.exists(d)]))
