"""Running one GCS shard, or a group of shards on this host, in the foreground."""

from __future__ import annotations

import signal
import subprocess
from typing import TYPE_CHECKING

from zray.common.config import GcsSettings
from zray.common.logs import configure_logging
from zray.services.gcs.sharding import shard_address

if TYPE_CHECKING:
    from zray.services.gcs.server import GcsShard


def shard_settings(address: str, index: int, num_shards: int, data_dir: str, head_address: str,
                   advertise: str | None, fsync: bool, log_level: str,
                   metrics_port: int | None = None) -> GcsSettings:
    """Settings of shard `index`, which binds `address` and is reached at `advertise`."""
    return GcsSettings.load(env_prefix="ZRAY_GCS_", address=address,
                            data_dir=data_dir, shard_index=index, num_shards=num_shards,
                            head_address=head_address if index else "",
                            advertise_address=advertise or "", fsync=fsync, log_level=log_level,
                            metrics_port=metrics_port)


def _serve(settings: GcsSettings) -> GcsShard:
    from zray.services.gcs.server import GcsShard
    from zray.services.metrics import serve_gcs

    configure_logging(f"gcs[{settings.shard_index}]", settings.log_level)
    shard = GcsShard(settings)
    serve_gcs(shard)
    return shard


def run_shard(address: str, index: int, num_shards: int, data_dir: str, head_address: str,
              advertise: str | None, fsync: bool, log_level: str,
              metrics_port: int | None = None) -> None:
    settings = shard_settings(address, index, num_shards, data_dir, head_address, advertise, fsync,
                              log_level, metrics_port)
    _serve(settings).run()


def run_group(base: str, num_shards: int, data_dir: str, advertise: str | None, fsync: bool,
              log_level: str, metrics_port: int | None = None) -> None:
    """Shard 0 here, shards 1..N-1 in forked children (each its own process and
    LMDB environment, so they use separate cores). A child that dies ends the
    group with an error, for the supervisor to restart it."""
    from zray.common.forking import ForkedProcess, fork_child

    head = advertise or base
    children: dict[int, ForkedProcess] = {}
    for index in range(1, num_shards):
        def child(index: int = index) -> None:
            run_shard(shard_address(base, index), index, num_shards, data_dir, head,
                      shard_address(advertise, index) if advertise else None, fsync, log_level,
                      None if metrics_port is None else metrics_port + index if metrics_port else 0)

        children[index] = fork_child(child, None)
    shard = _serve(shard_settings(base, 0, num_shards, data_dir, "", advertise, fsync, log_level,
                                  metrics_port))

    def watch() -> None:
        for index, proc in children.items():
            if proc.poll() is not None:
                shard.close(f"shard {index} exited with code {proc.returncode}")
                raise SystemExit(1)

    shard.every(0.2, watch)
    try:
        shard.run()
    finally:
        for proc in children.values():
            proc.send_signal(signal.SIGTERM)
        for proc in children.values():
            try:
                proc.wait(10.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
