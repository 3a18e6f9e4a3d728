"""init options, is_initialized/shutdown, and a run that leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import psutil
import pytest

import zray
from tests.conftest import describe, poll_for, shm_entries, warm_up, zray_cluster, zray_processes
from zray.common.errors import ConfigError, ConnectionFailedError, ZrayError

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024
STORE = 300 * MiB


@zray.remote
def echo(x: object) -> object:
    return x


def test_not_initialized_errors() -> None:
    assert not zray.is_initialized()
    with pytest.raises(ZrayError, match="init"):
        zray.put(1)
    with pytest.raises(ZrayError, match="init"):
        zray.get(zray.ObjectRef("00" * 20), timeout=1)
    zray.shutdown()  # harmless when nothing runs


def test_init_options_are_reflected() -> None:
    with zray_cluster(num_cpus=3, resources={"widgets": 4, "gadgets": 0.5},
                      object_store_memory=STORE) as info:
        assert zray.is_initialized()
        assert info["job_id"] and info["node_id"]
        total = poll_for(zray.cluster_resources, 10, what="cluster resources")
        assert total["CPU"] == 3.0
        assert total["widgets"] == 4.0
        assert total["gadgets"] == 0.5
        # The store's capacity is advertised (Ray names it "object_store_memory").
        assert STORE in (total.get("object_store_memory"), total.get("memory")), total
        node = zray.nodes()[0]
        assert node["Resources"]["widgets"] == 4.0
        assert zray.get(echo.options(resources={"widgets": 4}).remote("ok"), timeout=60) == "ok"
        # The capacity is enforced: an object larger than the whole store cannot be put.
        with pytest.raises(zray.ObjectStoreFullError):
            zray.put(np.zeros(STORE // 8 + MiB, dtype=np.float64))
        # Objects that fit still do.
        assert zray.get(zray.put(np.ones(MiB)), timeout=60).sum() == MiB
    assert not zray.is_initialized()


def test_a_bad_option_fails_init_before_any_process_starts() -> None:
    root = os.environ.get("ZRAY_SESSION_ROOT", "/tmp/zray_sessions")
    before = set(os.listdir(root)) if os.path.isdir(root) else set()
    with pytest.raises(ConfigError, match="resource 'disk'"):
        zray.init(num_cpus=1, resources={"disk": "lots"})
    assert not zray.is_initialized()
    after = set(os.listdir(root)) if os.path.isdir(root) else set()
    assert not after - before, "no session folder was made"
    with zray_cluster(num_cpus=1):  # the next init starts as usual
        assert zray.get(echo.remote(3), timeout=60) == 3


def test_an_init_failing_after_its_cluster_started_stops_that_cluster(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from zray.client import api
    from zray.client.local_cluster import LocalCluster

    started: list[LocalCluster] = []
    real_start = LocalCluster.start.__func__  # type: ignore[attr-defined]

    def start(cls: type[LocalCluster], *args: object, **kwargs: object) -> LocalCluster:
        started.append(real_start(cls, *args, **kwargs))
        return started[-1]

    def refuse(*_: object) -> None:
        raise ConnectionFailedError("injected: the driver cannot connect")

    monkeypatch.setattr(LocalCluster, "start", classmethod(start))
    monkeypatch.setattr(api, "_connect", refuse)
    with pytest.raises(ConnectionFailedError, match="injected"):
        zray.init(num_cpus=1)
    (cluster,) = started
    poll_for(lambda: all(p.poll() is not None for p in cluster.procs.values()), 15,
             what="the cluster started for the failed init to stop")
    assert not os.path.exists(cluster.session_dir)
    assert not zray.is_initialized()


def test_init_twice_and_shutdown() -> None:
    with zray_cluster(num_cpus=1):
        with pytest.raises(ZrayError, match="already"):
            zray.init(num_cpus=1)
        info = zray.init(ignore_reinit_error=True)
        assert info["job_id"]
        assert zray.get(echo.remote(1), timeout=60) == 1
        zray.shutdown()
        assert not zray.is_initialized()
        zray.shutdown()  # idempotent
        with pytest.raises(ZrayError):
            zray.put(1)
    # A new cluster can start after a shutdown.
    with zray_cluster(num_cpus=1):
        assert zray.get(echo.remote(2), timeout=60) == 2


def test_a_run_leaves_nothing_behind(tmp_path: Path) -> None:
    shm_before = shm_entries()
    with zray_cluster(num_cpus=2) as info:
        session = info["session_dir"]
        assert session and os.path.isdir(session)
        workers = warm_up(2)
        refs = [echo.remote(i) for i in range(20)]
        big = zray.put(np.ones(2_000_000))  # lands in the shared-memory store
        assert zray.get(refs, timeout=60) == list(range(20))
        assert zray.get(big, timeout=60).sum() == 2_000_000
        assert shm_entries() - shm_before, "the store should live under /dev/shm"
        procs = zray_processes(session)
        pids = {p.pid for p in procs}
        # The GCS (with the global scheduler), the raylet and the two workers,
        # all found by the helper.
        assert len(pids) >= 4 and workers <= pids, describe(procs)
    assert not zray.is_initialized()

    def all_gone() -> bool:
        return not zray_processes(session, known_pids=pids)

    poll_for(all_gone, 15, what="every zray service and worker to exit",
             on_timeout=lambda: describe(zray_processes(session, known_pids=pids)))
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    poll_for(lambda: not (shm_entries() - shm_before), 15, what="/dev/shm entries to be removed",
             on_timeout=lambda: str(sorted(shm_entries() - shm_before)))
    assert not os.path.exists(session)
