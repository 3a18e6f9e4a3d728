"""The dashboard's JSON document, built from GCS rows (pure)."""

from __future__ import annotations

from collections import deque
from typing import Any

from zray.common.task_records import STATES

HISTORY_POINTS = 300
MAX_FAILURES = 10


class History:
    """Task counts by state over time, one point per snapshot."""

    def __init__(self, points: int = HISTORY_POINTS) -> None:
        self.points: deque[dict[str, Any]] = deque(maxlen=points)

    def add(self, now: float, counts: dict[str, int]) -> list[dict[str, Any]]:
        self.points.append({"time": now, "counts": counts})
        return list(self.points)


def build(now: float, nodes: list[dict[str, Any]], actors: list[dict[str, Any]],
          summaries: list[dict[str, Any]], history: History) -> dict[str, Any]:
    """`summaries`: each raylet's task counts by state and latest failures."""
    counts = dict.fromkeys(STATES, 0)
    failures = []
    for summary in summaries:
        for state, n in summary["counts"].items():
            counts[state] = counts.get(state, 0) + n
        failures += summary["failures"]
    failures = sorted(failures, key=lambda r: r["ended"] or 0)[-MAX_FAILURES:]
    return {
        "time": now,
        "nodes": [_node(n) for n in nodes],
        "actors": [{k: a[k] for k in ("actor_id", "class_name", "name", "state", "node_id", "pid",
                                      "restarts", "death_cause")} for a in actors],
        "task_counts": counts,
        "history": history.add(now, counts),
        "failures": [{"task_id": r["task_id"], "name": r["name"], "node_id": r["node_id"],
                      "pid": r["pid"], "time": r["ended"], "error": r["error"] or ""}
                     for r in reversed(failures)],
    }


def _node(n: dict[str, Any]) -> dict[str, Any]:
    resources = {name: {"total": total, "used": total - n["resources_available"].get(name, 0.0)}
                 for name, total in sorted(n["resources_total"].items())
                 if name not in ("memory", "object_store_memory")}
    return {"node_id": n["node_id"], "name": n["node_name"], "host": n["host"], "state": n["state"],
            "heartbeat_age": n["heartbeat_age"], "resources": resources,
            "store_used": n["store_used"], "store_capacity": n["store_capacity"],
            "tasks_queued": n["tasks_queued"], "tasks_running": n["tasks_running"],
            "tasks_finished": n["tasks_finished"], "tasks_failed": n["tasks_failed"],
            "workers": n["workers"]}
