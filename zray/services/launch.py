"""Start a service from `ZRAY_*` environment settings, without the CLI layer.

Used by the embedded cluster, where start time matters: a raylet starts its
first workers before it imports anything heavy, so their start overlaps its own.
"""

from __future__ import annotations

import os
import sys


def _prespawn_workers() -> object:
    from zray.services.raylet.worker_pool import WorkerPool

    session = os.environ["ZRAY_SESSION_DIR"]
    cpus = os.environ.get("ZRAY_NUM_CPUS")
    count = max(1, int(float(cpus))) if cpus else (os.cpu_count() or 1)
    pool = WorkerPool(os.environ["ZRAY_LOCAL_ADDRESS"], os.path.join(session, "logs"), {})
    for _ in range(count):
        pool.spawn()
    return pool


def main(role: str) -> None:
    from zray.common.lifetime import die_with_parent_from_env

    # An embedded cluster's services end with the driver that started them.
    die_with_parent_from_env("ZRAY_DIE_WITH_PID")
    from zray.common.logs import configure_logging

    if role == "raylet":
        pool = _prespawn_workers()
        from zray.common.config import RayletSettings
        from zray.services.raylet.server import Raylet

        settings = RayletSettings.load()
        configure_logging("raylet", settings.log_level)
        Raylet(settings, pool=pool).run()  # type: ignore[arg-type]
    elif role == "gcs":
        from zray.common.config import GcsSettings
        from zray.services.gcs.server import GcsShard

        gcs_settings = GcsSettings.load(env_prefix="ZRAY_GCS_")
        configure_logging("gcs", gcs_settings.log_level)
        GcsShard(gcs_settings).run()
    elif role == "global-sched":
        from zray.common.config import SchedSettings
        from zray.services.global_sched.server import GlobalScheduler

        sched_settings = SchedSettings.load(env_prefix="ZRAY_SCHED_",
                                            gcs_address=os.environ["ZRAY_GCS_ADDRESS"])
        configure_logging("global-sched", sched_settings.log_level)
        GlobalScheduler(sched_settings).run()
    else:
        sys.exit(f"unknown service {role!r}; expected gcs, global-sched or raylet")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
