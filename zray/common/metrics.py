"""Prometheus exposition for services, off the task path.

A service registers a collector that reads its live state when scraped (in
the exporter's HTTP thread); nothing on the task path does more than the
counting the service already does. `serve` starts the standard
prometheus_client HTTP server on `port` (0: any free port) and records the
address in the GCS kv table under `metrics:<service>:<pid>`, so that tools
and tests find every exporter of a cluster.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from zray.common.errors import ConfigError

log = logging.getLogger(__name__)

METRICS_KEY_PREFIX = "metrics:"
# name, type (counter, gauge, summary), help, samples (labels, value; a summary's is (count, sum))
Sample = tuple[str, str, str, list[tuple[dict[str, str], Any]]]


class _Collector:
    def __init__(self, collect: Callable[[], Iterable[Sample]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

        kinds = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily,
                 "summary": SummaryMetricFamily}
        for name, kind, doc, samples in self._collect():
            labels = sorted(samples[0][0]) if samples else []
            family: Any = kinds[kind](name, doc, labels=labels)
            for label_values, value in samples:
                values = [label_values[k] for k in labels]
                if kind == "summary":  # value: (count, sum)
                    family.add_metric(values, count_value=value[0], sum_value=value[1])
                else:
                    family.add_metric(values, value)
            yield family


def serve(port: int, host: str, collect: Callable[[], Iterable[Sample]]) -> tuple[Any, int]:
    """Start the exporter; (server, bound port). ConfigError if the port is taken."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(collect))  # type: ignore[arg-type]
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; "
                          "choose another --metrics-port") from None
    bound = server.server_address[1]
    log.info("metrics for Prometheus at http://%s:%d/metrics", host, bound)
    return server, int(bound)


def record(service: str, host: str, port: int) -> tuple[str, bytes]:
    """The GCS kv entry announcing an exporter."""
    shown = socket.gethostname() if host in ("0.0.0.0", "") else host
    value = {"service": service, "url": f"http://{shown}:{port}/metrics", "pid": os.getpid(),
             "time": time.time()}
    return f"{METRICS_KEY_PREFIX}{service}:{os.getpid()}", json.dumps(value).encode()


def counter(name: str, doc: str, value: float, **labels: str) -> Sample:
    return (name, "counter", doc, [(labels, value)])


def gauge(name: str, doc: str, value: float, **labels: str) -> Sample:
    return (name, "gauge", doc, [(labels, value)])


def labelled(name: str, kind: str, doc: str, label: str, values: dict[str, float]) -> Sample:
    return (name, kind, doc, [({label: k}, v) for k, v in sorted(values.items())])
