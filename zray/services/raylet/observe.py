"""What a raylet tells observers: task state batches and its worker list in
the GCS (once a second), and Prometheus metrics read from its state on scrape.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from zray.common import metrics
from zray.common.messages.tables import KV, TASK_EVENTS, TASK_SUMMARY, WORKERS
from zray.common.task_records import PENDING_ARGS, PENDING_RESOURCES
from zray.services.metrics import message_samples

if TYPE_CHECKING:
    from zray.services.raylet.server import Raylet

log = logging.getLogger(__name__)
FLUSH_INTERVAL = 1.0


class RayletObserver:
    def __init__(self, raylet: Raylet) -> None:
        self.raylet = raylet
        self._workers_json = b""
        self._summary_json = b""
        self.metrics_server: Any = None
        self._texts: dict[Any, str] = {}

    def install(self) -> None:
        raylet = self.raylet
        raylet.every(FLUSH_INTERVAL, self.flush)
        raylet.events.on_full = lambda: raylet.after_batch(self.flush_events)
        port = raylet.settings.metrics_port
        if port is not None:
            host = raylet.settings.metrics_host
            self.metrics_server, bound = metrics.serve(port, host, self.collect)
            self.metrics_key, value = metrics.record("raylet", host, bound)
            raylet.gcs.write(KV, self.metrics_key, value)

    def flush_events(self) -> None:
        raylet = self.raylet
        self._texts = {}  # descriptions shared by the tasks of this flush
        for key, value in raylet.events.flush(raylet.tasks.__contains__, self.describe_wait):
            raylet.gcs.write(TASK_EVENTS, key, value)

    def flush(self) -> None:
        raylet = self.raylet
        self.flush_events()
        rows = json.dumps(self.worker_rows()).encode()
        if rows != self._workers_json:
            self._workers_json = rows
            raylet.gcs.write(WORKERS, raylet.node_id, rows)
        summary = json.dumps(raylet.events.summary()).encode()
        if summary != self._summary_json:
            self._summary_json = summary
            raylet.gcs.write(TASK_SUMMARY, raylet.node_id, summary)

    def close(self) -> None:
        self.flush()
        if self.metrics_server is not None:
            self.raylet.gcs.write(KV, self.metrics_key, None)
            self.metrics_server.shutdown()
            self.metrics_server.server_close()

    def describe_wait(self, state: str, task_id: str) -> str:
        """What a pending task waits on, in words."""
        raylet = self.raylet
        task = raylet.tasks.get(task_id)
        if task is None:
            return ""
        if state == PENDING_ARGS:
            missing = []
            for arg in task.spec.args:
                obj = raylet.objects.get(arg.ref) if arg.ref is not None else None
                if arg.ref is not None and (obj is None or not obj.ready):
                    missing.append(arg.ref)
            return f"{len(missing)} argument object(s): {', '.join(m[:16] for m in missing)}"
        if state == PENDING_RESOURCES:
            return (f"resources {_fmt(task.resources)}, which this node (total {_fmt(raylet.total)}) "
                    "and no other live node has")
        if task.spec.actor_id is not None:
            return f"actor {task.spec.actor_id[:12]} to finish earlier calls"
        # Thousands of queued tasks ask for the same few shapes: format each once.
        texts = self._texts
        key = tuple(task.resources.items())
        text = texts.get(key)
        if text is None:
            available = texts.get(None)
            if available is None:
                available = texts[None] = _fmt(raylet.queue.available)
            text = texts[key] = f"a free worker with {_fmt(task.resources)} (available {available})"
        return text

    def worker_rows(self) -> list[dict[str, Any]]:
        now_wall, now = time.time(), time.monotonic()
        rows = []
        for worker in self.raylet.pool.workers.values():
            task = worker.task
            if not worker.registered:
                state = "STARTING"
            elif worker.blocked:
                state = "BLOCKED"
            elif task is not None:
                state = "BUSY"
            else:
                state = "IDLE"
            rows.append({
                "worker_id": worker.worker_id.hex(), "pid": worker.pid, "state": state,
                "node_id": self.raylet.node_id, "actor_id": worker.actor_id,
                "task_id": task.spec.task_id if task is not None else None,
                "queued_tasks": max(0, len(worker.tasks) - 1), "log_path": worker.log_path,
                "start_time": now_wall - (now - worker.started_at)})
        return rows

    def collect(self) -> Iterable[metrics.Sample]:
        """Read on scrape (exporter thread): plain reads of the raylet's counters."""
        r = self.raylet
        node = {"node_id": r.node_id[:12]}
        workers = self.worker_rows()
        for name in ("submitted", "finished", "failed", "retried"):
            yield ("zray_tasks_" + name, "counter", f"Tasks {name} on this raylet",
                   [(node, float(r.counters[name]))])
        pending_args = sum(1 for t in list(r.tasks.values()) if t.missing)
        gauges = {
            "zray_tasks_queued": ("Tasks in the ready queue", len(r.queue)),
            "zray_tasks_pending_args": ("Tasks waiting for argument objects", pending_args),
            "zray_tasks_pending_resources": ("Tasks no node here can run", len(r.infeasible)),
            "zray_tasks_running": ("Tasks on workers", sum(1 for w in workers if w["task_id"])),
            "zray_object_store_used_bytes": ("Object store bytes in use", r.store.used),
            "zray_object_store_capacity_bytes": ("Object store capacity", r.store.capacity),
            "zray_objects": ("Objects known to this raylet", len(r.objects)),
            "zray_object_store_spilled_bytes": ("Bytes of objects spilled to disk", r.memory.spill.used),
            "zray_object_store_spilled_objects": ("Objects spilled to disk", len(r.memory.spill)),
            "zray_gcs_outstanding_requests": ("GCS requests awaiting a reply", r.gcs.outstanding),
        }
        for name, (doc, value) in gauges.items():
            yield (name, "gauge", doc, [(node, float(value))])
        if r.links is not None:
            for key, doc in (("pulls", "Objects pulled from other nodes"),
                             ("pulled_bytes", "Bytes pulled from other nodes"),
                             ("served_bytes", "Bytes sent to other nodes' pulls"),
                             ("forwarded", "Tasks forwarded to other nodes"),
                             ("received", "Tasks other nodes forwarded here")):
                yield (f"zray_transfer_{key}", "counter", doc, [(node, float(r.links.stats[key]))])
        by_state: dict[str, float] = {s: 0.0 for s in ("IDLE", "BUSY", "BLOCKED", "STARTING")}
        for w in workers:
            by_state[w["state"]] += 1
        yield ("zray_workers", "gauge", "Worker processes by state",
               [({**node, "state": s}, n) for s, n in sorted(by_state.items())])
        for name, kind, doc, samples in message_samples(r, "zray_raylet"):
            yield name, kind, doc, [({**node, **labels}, v) for labels, v in samples]


def _fmt(resources: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(resources.items())) + "}"
