"""Settings models, one per service, overridable by `ZRAY_*` environment variables.

Precedence: explicit arguments (CLI flags) > environment > defaults.
"""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from zray.common.errors import ConfigError

INLINE_LIMIT = 100 * 1024

_S = TypeVar("_S", bound="Settings")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    log_level: str = "INFO"
    # Prometheus exporter: None is off, 0 any free port (announced in the GCS kv table).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # Fields read from a variable other than prefix + NAME.
    env_names: ClassVar[dict[str, str]] = {}

    @classmethod
    def load(cls: type[_S], env_prefix: str = "ZRAY_", **overrides: Any) -> _S:
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            raw = os.environ.get(cls.env_names.get(name, env_prefix + name.upper()))
            if raw is not None:
                values[name] = _parse_env(raw, field.annotation)
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(f"invalid {cls.__name__}: {exc}") from None


def _parse_env(raw: str, annotation: Any) -> Any:
    if "dict" in str(annotation) or "list" in str(annotation):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"expected JSON in environment value {raw!r}: {exc}") from None
    return raw


class GcsSettings(Settings):
    address: str = "tcp://127.0.0.1:6379"
    pub_address: str = ""
    # How other hosts reach this shard when it binds a wildcard address.
    advertise_address: str = ""
    data_dir: str = ""
    shard_index: int = 0
    num_shards: int = 1
    # Shard 0's address: where shards > 0 register themselves.
    head_address: str = ""
    fsync: bool = False
    # Publications queued per subscriber before the shard drops them (the
    # subscriber then sees a sequence gap and resyncs).
    pub_hwm: int = 100_000
    max_value_bytes: int = 64 * 1024 * 1024
    heartbeat_interval: float = 0.5


class SchedSettings(Settings):
    gcs_address: str
    address: str = "tcp://127.0.0.1:0"
    # How raylets reach this replica when it binds a wildcard address.
    advertise_host: str = ""
    sched_id: str = ""
    # A node silent this long is declared dead (in the GCS, for every subscriber).
    node_timeout: float = 3.0
    # Dead nodes whose records (node row, death mark) stay in the GCS; older ones
    # are forgotten so a cluster that loses nodes for months does not grow.
    dead_nodes_kept: int = 1_000


class RayletSettings(Settings):
    # ZRAY_ADDRESS is the cluster a driver joins, not this raylet's own address.
    env_names: ClassVar[dict[str, str]] = {"address": "ZRAY_NODE_ADDRESS"}

    gcs_address: str
    session_dir: str = ""
    store_dir: str = ""
    node_name: str = ""
    local_address: str = ""
    address: str = ""
    num_cpus: float | None = None
    num_gpus: float | None = None
    resources: dict[str, float] = {}
    object_store_memory: int | None = None
    # Where objects go when the store is full (default: <session>/spill).
    spill_dir: str = ""
    # Longest a put or task output waits for store memory before it fails.
    store_full_timeout: float = 10.0
    inline_limit: int = INLINE_LIMIT
    heartbeat_interval: float = 0.5
    # Heartbeats go out from a thread while the event loop has turned within
    # this many seconds; a loop stuck longer lets the node be declared dead.
    heartbeat_stall_limit: float = 10.0
    # Task state events kept in the GCS per node (the history `zray list tasks` shows).
    task_events_max: int = 80_000
    max_workers_per_cpu: int = 32
    # A worker leased to a driver (leases.py) goes back to the pool after this
    # long unused; 0 leases no workers.
    lease_idle_seconds: float = 0.25
    prestart_workers: bool = True
