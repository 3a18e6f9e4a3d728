"""Metrics of the GCS shard and the global scheduler, and how a service
starts its exporter (see zray/common/metrics.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from zray.common import metrics
from zray.common.messages.tables import KV


def attach(service: Any, name: str, port: int | None, host: str, gcs_address: str,
           collect: Callable[[], Iterable[metrics.Sample]]) -> None:
    """Serve `collect` on port (None: off) and announce it in the GCS kv table.

    The announcement goes from a short-lived thread with a blocking client, so
    it also works for the GCS shard, whose own loop is not running yet.
    """
    if port is None:
        return
    server, bound = metrics.serve(port, host, collect)
    key, value = metrics.record(name, host, bound)

    def announce() -> None:
        from zray.common.errors import ZrayError
        from zray.services.gcs.client import GcsClient

        gcs = GcsClient(gcs_address, timeout=10.0)
        try:
            gcs.put(KV, key, value)
        except ZrayError:
            pass  # tools then do not find this exporter; it still serves
        finally:
            gcs.close()

    threading.Thread(target=announce, name="zray-metrics-announce", daemon=True).start()
    service.metrics_server = server


def message_samples(service: Any, prefix: str) -> Iterable[metrics.Sample]:
    """Messages the service handled, by kind, with handler seconds when timed."""
    stats: dict[str, tuple[float, float]] = {}
    bad = 0.0
    for reader in list(service._readers.values()):
        bad += reader.bad_messages
        for kind, (count, seconds) in list(reader.stats.items()):
            old = stats.get(kind, (0.0, 0.0))
            stats[kind] = (old[0] + count, old[1] + seconds)
    if service.time_handlers:
        yield (f"{prefix}_request_seconds", "summary", "Requests handled and seconds spent, by kind",
               [({"kind": k}, v) for k, v in sorted(stats.items())])
    else:
        yield metrics.labelled(f"{prefix}_messages_handled", "counter", "Messages handled, by kind",
                               "kind", {k: v[0] for k, v in stats.items()})
    yield metrics.counter(f"{prefix}_messages_bad", "Undecodable messages dropped", bad)


def gcs_samples(shard: Any) -> Iterable[metrics.Sample]:
    yield from message_samples(shard, "zray_gcs")
    yield metrics.gauge("zray_gcs_uptime_seconds", "Seconds since the shard started",
                        time.time() - shard.started_at)
    yield metrics.labelled("zray_gcs_rows", "gauge", "Rows per table on this shard", "table",
                           {k: float(v) for k, v in shard.storage.counts().items()})
    yield metrics.gauge("zray_gcs_data_bytes", "LMDB pages in use on this shard",
                        shard.storage.data_bytes())
    yield metrics.counter("zray_gcs_sequence", "Changes this shard has committed", shard.storage.seq)


def sched_samples(sched: Any) -> Iterable[metrics.Sample]:
    now = time.monotonic()
    yield from message_samples(sched, "zray_sched")
    yield ("zray_node_heartbeat_age_seconds", "gauge", "Seconds since each node's last heartbeat",
           [({"node_id": node_id[:12]}, now - seen) for node_id, seen in list(sched.last_seen.items())])
    yield metrics.gauge("zray_sched_nodes", "Live nodes this scheduler places on", len(sched.nodes))
    yield metrics.gauge("zray_sched_waiting_placements", "Spilled tasks no live node can take yet",
                        len(sched.waiting))


def serve_gcs(shard: Any) -> None:
    settings = shard.settings
    shard.time_handlers = settings.metrics_port is not None
    attach(shard, "gcs", settings.metrics_port, settings.metrics_host,
           settings.head_address or settings.address, lambda: gcs_samples(shard))


def serve_sched(sched: Any) -> None:
    settings = sched.settings
    attach(sched, "global-sched", settings.metrics_port, settings.metrics_host, settings.gcs_address,
           lambda: sched_samples(sched))
