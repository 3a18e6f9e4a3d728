"""Start services from `ZRAY_*` environment settings, without the CLI layer.

`embedded` is what `zray.init()` runs: one process imports what every
service and worker needs, forks the raylet (which forks its first workers),
then serves as the GCS shard with the global scheduler on a thread beside
it. Neither the raylet nor a worker pays Python's start-up and the shared
imports again, and the scheduler, idle on a one-node cluster, costs no
interpreter of its own.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def _prespawn_workers(fork: bool) -> object:
    from zray.services.raylet.worker_pool import WorkerPool

    session = os.environ["ZRAY_SESSION_DIR"]
    cpus = os.environ.get("ZRAY_NUM_CPUS")
    count = max(1, int(float(cpus))) if cpus else (os.cpu_count() or 1)
    pool = WorkerPool(os.environ["ZRAY_LOCAL_ADDRESS"], os.path.join(session, "logs"), {})
    for _ in range(count):
        pool.spawn(fork=fork)
    return pool


def _run_raylet(fork_workers: bool) -> None:
    # Workers first: forked before the raylet's own modules are imported, they
    # do not carry them (a forked child's RSS counts every page it shares).
    pool = _prespawn_workers(fork_workers)
    from zray.common.config import RayletSettings
    from zray.common.logs import configure_logging
    from zray.services.raylet.server import Raylet

    settings = RayletSettings.load()
    configure_logging("raylet", settings.log_level)
    Raylet(settings, pool=pool).run()  # type: ignore[arg-type]


def _run_gcs(children: dict[str, Any] | None = None) -> None:
    from zray.common.config import GcsSettings
    from zray.common.logs import configure_logging
    from zray.services.gcs.server import GcsShard
    from zray.services.metrics import serve_gcs

    settings = GcsSettings.load(env_prefix="ZRAY_GCS_")
    configure_logging("gcs", settings.log_level)
    shard = GcsShard(settings)
    serve_gcs(shard)
    if children:
        def watch() -> None:
            for name, child in children.items():
                if child.poll() is not None:
                    shard.close(f"embedded {name} exited with code {child.returncode}")
                    raise SystemExit(1)

        shard.every(0.2, watch)
    shard.run()


def _sched() -> Any:
    from zray.common.config import SchedSettings
    from zray.services.global_sched.server import GlobalScheduler
    from zray.services.metrics import serve_sched

    settings = SchedSettings.load(env_prefix="ZRAY_SCHED_",
                                  gcs_address=os.environ["ZRAY_GCS_ADDRESS"])
    sched = GlobalScheduler(settings)
    serve_sched(sched)
    return sched


def _run_sched() -> None:
    from zray.common.logs import configure_logging

    sched = _sched()
    configure_logging("global-sched", sched.settings.log_level)
    sched.run()


def _run_embedded() -> None:
    import signal
    import subprocess

    # What every process needs (pydantic, the messages, zmq, the worker) is
    # imported once, before the raylet is forked; each service imports its
    # own modules after the fork, so no process carries another's.
    import zray.client.worker  # noqa: F401
    import zray.services.raylet.worker_pool  # noqa: F401
    from zray.common.forking import fork_child

    logs = os.path.join(os.environ["ZRAY_SESSION_DIR"], "logs")
    # Fork before any thread exists; the scheduler's lines go to gcs.log.
    children: dict[str, Any] = {
        "raylet": fork_child(lambda: _run_raylet(fork_workers=True), os.path.join(logs, "raylet.log")),
    }
    from zray.common.config import GcsSettings
    from zray.common.logs import configure_logging
    from zray.common.service_thread import ServiceThread

    configure_logging("gcs", GcsSettings.load(env_prefix="ZRAY_GCS_").log_level)
    children["global-sched"] = ServiceThread(_sched()).start()
    try:
        _run_gcs(children)
    finally:
        # The GCS goes last: the others close first (the raylet stops its workers).
        for child in children.values():
            child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(10.0)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def main(role: str) -> None:
    from zray.common.lifetime import die_with_parent_from_env

    # An embedded cluster's services end with the driver that started them.
    die_with_parent_from_env("ZRAY_DIE_WITH_PID")
    runners = {
        "embedded": _run_embedded,
        "gcs": _run_gcs,
        "global-sched": _run_sched,
        "raylet": lambda: _run_raylet(fork_workers=False),
    }
    runner = runners.get(role)
    if runner is None:
        sys.exit(f"unknown service {role!r}; expected one of {', '.join(runners)}")
    runner()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
