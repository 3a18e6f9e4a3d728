"""The state API: what the cluster is doing, read from the GCS (Ray's names).

    from zray.util.state import list_tasks, summarize_tasks
    list_tasks(filters=[("state", "=", "PENDING_RESOURCES")])

`address` is a GCS address (host:port or ipc://...); by default the cluster
this process joined with `zray.init`, else the one `zray start` runs on this host.
Rows are plain dicts. Task history is bounded (the newest ~20,000 task
records per node are kept).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from zray.common.errors import ConfigError
from zray.common.messages.tables import (
    ACTORS,
    NODES,
    OBJECTS,
    TASK_EVENTS,
    TASK_SUMMARY,
    WORKERS,
    ActorInfo,
    NodeInfo,
)
from zray.common.task_records import TaskRecord, check_state, filter_records, merge_batches, summarize
from zray.services.gcs.client import GcsClient

Filter = tuple[str, str, Any]
DEFAULT_LIMIT = 100
NODE_TIMEOUT = 10.0  # seconds without a node record refresh before a node counts as dead


def resolve_address(address: str | None = None) -> str:
    from zray.client.api import _state
    from zray.common.sockets import normalize

    if address and address != "auto":
        return normalize(address)
    client = _state.client
    if client is not None and address is None:
        return str(client.gcs.address)
    from zray.cli.cluster_record import read_record

    record = read_record()
    if record is None:
        raise ConfigError("no zray cluster to read: call zray.init() first, start one with "
                          "`zray start --head`, or give its address")
    return record.gcs_address


@contextmanager
def gcs_client(address: str | None = None) -> Iterator[GcsClient]:
    gcs = GcsClient(resolve_address(address), timeout=5.0)
    try:
        yield gcs
    finally:
        gcs.close()


def _filters(filters: Sequence[Filter] | None, state: str | None) -> list[Filter]:
    out = list(filters or [])
    if state is not None:
        out.append(("state", "=", state))
    return out


# reading tables --------------------------------------------------------------

def task_records(gcs: GcsClient) -> list[TaskRecord]:
    dead = {n["node_id"] for n in node_rows(gcs) if n["state"] == "DEAD"}
    return merge_batches(gcs.scan(TASK_EVENTS), dead)


def task_summaries(gcs: GcsClient) -> list[dict[str, Any]]:
    """Each raylet's task counts by state and latest failures (cheap to read)."""
    return [json.loads(v) for _, v in gcs.scan(TASK_SUMMARY)]


def node_rows(gcs: GcsClient, now: float | None = None) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    rows = []
    for _, value in gcs.scan(NODES):
        info = NodeInfo.model_validate_json(value)
        age = now - info.heartbeat_time
        alive = info.alive and age < NODE_TIMEOUT
        rows.append({**info.model_dump(), "state": "ALIVE" if alive else "DEAD",
                     "heartbeat_age": round(age, 3)})
    return sorted(rows, key=lambda r: r["start_time"])


def actor_rows(gcs: GcsClient) -> list[dict[str, Any]]:
    return [ActorInfo.model_validate_json(v).model_dump() for _, v in gcs.scan(ACTORS)]


def object_rows(gcs: GcsClient) -> list[dict[str, Any]]:
    return [json.loads(v) for _, v in gcs.scan(OBJECTS)]


def worker_rows(gcs: GcsClient) -> list[dict[str, Any]]:
    alive = {n["node_id"] for n in node_rows(gcs) if n["state"] == "ALIVE"}
    rows: list[dict[str, Any]] = []
    for node_id, value in gcs.scan(WORKERS):
        if node_id in alive:
            rows.extend(json.loads(value))
    return rows


# the API ---------------------------------------------------------------------

def list_tasks(address: str | None = None, filters: Sequence[Filter] | None = None,
               limit: int | None = DEFAULT_LIMIT, state: str | None = None) -> list[dict[str, Any]]:
    """Tasks (newest last): state, node, worker, times and what pending ones wait on."""
    with gcs_client(address) as gcs:
        records: list[dict[str, Any]] = list(task_records(gcs))  # type: ignore[arg-type]
    return filter_records(records, _filters(filters, check_state(state)), limit)


def summarize_tasks(address: str | None = None) -> dict[str, dict[str, int]]:
    """Task counts by function name, then by state."""
    with gcs_client(address) as gcs:
        return summarize(task_records(gcs))


def list_nodes(address: str | None = None, filters: Sequence[Filter] | None = None,
               limit: int | None = DEFAULT_LIMIT, state: str | None = None) -> list[dict[str, Any]]:
    with gcs_client(address) as gcs:
        rows = node_rows(gcs)
    return filter_records(rows, _filters(filters, state), limit)


def list_actors(address: str | None = None, filters: Sequence[Filter] | None = None,
                limit: int | None = DEFAULT_LIMIT, state: str | None = None) -> list[dict[str, Any]]:
    with gcs_client(address) as gcs:
        rows = actor_rows(gcs)
    return filter_records(rows, _filters(filters, state), limit)


def list_objects(address: str | None = None, filters: Sequence[Filter] | None = None,
                 limit: int | None = DEFAULT_LIMIT) -> list[dict[str, Any]]:
    """Objects in shared-memory stores (small objects travel inline and are not listed)."""
    with gcs_client(address) as gcs:
        rows = object_rows(gcs)
    return filter_records(rows, _filters(filters, None), limit)


def list_workers(address: str | None = None, filters: Sequence[Filter] | None = None,
                 limit: int | None = DEFAULT_LIMIT, state: str | None = None) -> list[dict[str, Any]]:
    with gcs_client(address) as gcs:
        rows = worker_rows(gcs)
    return filter_records(rows, _filters(filters, state), limit)


def list_logs(address: str | None = None) -> list[dict[str, Any]]:
    """Log files of this host's nodes: services and workers (with rotated parts)."""
    with gcs_client(address) as gcs:
        nodes = node_rows(gcs)
    out = []
    for node in nodes:
        folder = os.path.join(node["session_dir"], "logs")
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue  # another host's node, or its session is gone
        for name in names:
            path = os.path.join(folder, name)
            try:
                size = os.path.getsize(path)
            except OSError:
                continue
            out.append({"node_id": node["node_id"], "name": name, "path": path, "size": size})
    return out


def log_path(address: str | None = None, *, task_id: str | None = None, actor_id: str | None = None,
             worker_id: str | None = None) -> str:
    """The log file of the worker that ran a task, hosts an actor, or has this id (prefixes work)."""
    from zray.common.task_records import find_task

    given = [x for x in (task_id, actor_id, worker_id) if x]
    if len(given) != 1:
        raise ConfigError("give exactly one of a task id, an actor id or a worker id")
    with gcs_client(address) as gcs:
        nodes = {n["node_id"]: n for n in node_rows(gcs)}
        if task_id:
            rec = find_task(task_records(gcs), task_id)
            if rec["worker_id"] is None:
                raise ConfigError(f"task {rec['task_id'][:16]} ({rec['name']}) has not run on a worker "
                                  f"yet (state {rec['state']}); it has no log")
            node_id, wid = rec["node_id"], rec["worker_id"]
        elif actor_id:
            actors = [a for a in actor_rows(gcs) if a["actor_id"].startswith(actor_id.lower())]
            if len(actors) != 1:
                raise ConfigError(f"{len(actors)} actors match id {actor_id!r}; give a unique id prefix")
            workers = [w for w in worker_rows(gcs) if w["actor_id"] == actors[0]["actor_id"]]
            if not workers:
                creation = [r for r in task_records(gcs) if r["actor_id"] == actors[0]["actor_id"]
                            and r["type"] == "ACTOR_CREATION_TASK" and r["worker_id"]]
                if not creation:
                    raise ConfigError(f"actor {actor_id} has no worker (state {actors[0]['state']})")
                node_id, wid = creation[-1]["node_id"], str(creation[-1]["worker_id"])
            else:
                node_id, wid = workers[0]["node_id"], workers[0]["worker_id"]
        else:
            assert worker_id is not None
            found = {(w["node_id"], w["worker_id"]) for w in worker_rows(gcs)
                     if w["worker_id"].startswith(worker_id.lower())}
            found |= {(r["node_id"], str(r["worker_id"])) for r in task_records(gcs)
                      if r["worker_id"] and r["worker_id"].startswith(worker_id.lower())}
            if len(found) != 1:
                raise ConfigError(f"{len(found)} workers match id {worker_id!r}; give a unique id prefix")
            node_id, wid = found.pop()
    node = nodes.get(node_id)
    if node is None:
        raise ConfigError(f"node {node_id[:12]} of that worker is not in the GCS nodes table")
    path = os.path.join(node["session_dir"], "logs", f"worker-{wid[:12]}.log")
    if not os.path.exists(path):
        raise ConfigError(f"log {path} is not on this host (node {node_id[:12]} runs on "
                          f"{node['host']}) or was removed with its session")
    return path


def timeline(filename: str | None = None, address: str | None = None,
             minutes: float = 10.0) -> list[dict[str, Any]]:
    """Task runs of the last `minutes` as Chrome Trace Events; written to `filename` when given."""
    from zray.common.trace import build_trace

    if minutes <= 0:
        raise ConfigError(f"minutes must be > 0, got {minutes}")
    with gcs_client(address) as gcs:
        events = build_trace(task_records(gcs), since=time.time() - minutes * 60)
    if filename is not None:
        with open(filename, "w") as f:
            json.dump(events, f)
    return events
