"""`zray <service> check` against the services of a live (embedded) cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from zray.common.messages.tables import NODES, NodeInfo
from zray.services.gcs.client import GcsClient

pytestmark = pytest.mark.timeout(120)


def test_every_service_of_a_cluster_passes_its_check(cluster: dict[str, Any]) -> None:
    gcs = GcsClient(cluster["address"], timeout=10.0)
    try:
        node = next(NodeInfo.model_validate_json(v) for _, v in gcs.scan(NODES))
        sched = next(json.loads(v)["address"] for _, v in gcs.scan("kv", "scheduler:"))
    finally:
        gcs.close()
    for args in (["zray.services.gcs", "check", cluster["address"]],
                 ["zray.services.global_sched", "check", sched],
                 ["zray.services.raylet", "check", node.local_address]):
        result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and result.stdout.startswith("ok: "), (args, result.stderr)
    assert f"({node.node_id[:12]})" in result.stdout
