"""Rendering of `zray list`, `zray summary` and `zray logs` output (pure)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from zray.common.task_records import STATES

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def _short(value: Any, n: int = 12) -> str:
    return str(value)[:n] if value else "-"


def _age(now: float) -> Callable[[Any], str]:
    def fmt(t: Any) -> str:
        return "-" if not t else f"{max(0.0, now - float(t)):.1f}s ago"
    return fmt


def _dur(rec: dict[str, Any], now: float) -> str:
    start = rec.get("started")
    if not start:
        return "-"
    return f"{(rec.get('ended') or now) - start:.3f}s"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _detail(rec: dict[str, Any]) -> str:
    text = rec.get("waiting_on") or ""
    if rec.get("error"):
        text = rec["error"].strip().splitlines()[-1]
    return text[:90]


def columns(kind: str, now: float | None = None) -> list[Column]:
    now = time.time() if now is None else now
    age = _age(now)
    table: dict[str, list[Column]] = {
        "tasks": [("TASK_ID", lambda r: _short(r["task_id"], 16)), ("NAME", lambda r: r["name"]),
                  ("STATE", lambda r: r["state"]), ("NODE", lambda r: _short(r["node_id"], 8)),
                  ("WORKER_PID", lambda r: r["pid"] or "-"), ("ATTEMPT", lambda r: r["attempt"]),
                  ("SUBMITTED", lambda r: age(r["submitted"])), ("DURATION", lambda r: _dur(r, now)),
                  ("WAITING_ON / ERROR", _detail)],
        "nodes": [("NODE_ID", lambda r: _short(r["node_id"])), ("NAME", lambda r: r["node_name"]),
                  ("STATE", lambda r: r["state"]),
                  ("CPU", lambda r: _used(r, "CPU")), ("GPU", lambda r: _used(r, "GPU")),
                  ("STORE", lambda r: f"{_size(r['store_used'])} / {_size(r['store_capacity'])}"),
                  ("QUEUED", lambda r: r["tasks_queued"]), ("RUNNING", lambda r: r["tasks_running"]),
                  ("WORKERS", lambda r: r["workers"]),
                  ("HEARTBEAT", lambda r: f"{r['heartbeat_age']:.1f}s ago")],
        "actors": [("ACTOR_ID", lambda r: _short(r["actor_id"], 16)), ("CLASS", lambda r: r["class_name"]),
                   ("STATE", lambda r: r["state"]), ("NAME", lambda r: r["name"] or "-"),
                   ("NODE", lambda r: _short(r["node_id"], 8)), ("PID", lambda r: r["pid"] or "-"),
                   ("RESTARTS", lambda r: r["restarts"]), ("DEATH_CAUSE", lambda r: r["death_cause"][:60])],
        "objects": [("OBJECT_ID", lambda r: _short(r["object_id"], 20)), ("SIZE", lambda r: _size(r["size"])),
                    ("NODES", lambda r: ",".join(n[:8] for n in r["locations"])),
                    ("TASK_ID", lambda r: _short(r["task_id"], 16)), ("PUT", lambda r: r["is_put"])],
        "workers": [("WORKER_ID", lambda r: _short(r["worker_id"])), ("PID", lambda r: r["pid"]),
                    ("STATE", lambda r: r["state"]), ("NODE", lambda r: _short(r["node_id"], 8)),
                    ("TASK_ID", lambda r: _short(r["task_id"], 16)),
                    ("ACTOR_ID", lambda r: _short(r["actor_id"], 16)), ("LOG", lambda r: r["log_path"])],
    }
    return table[kind]


def _used(node: dict[str, Any], name: str) -> str:
    total = node["resources_total"].get(name, 0.0)
    if not total:
        return "-"
    used = total - node["resources_available"].get(name, 0.0)
    return f"{used:g}/{total:g}"


def format_table(rows: list[dict[str, Any]], cols: list[Column]) -> str:
    cells = [[h for h, _ in cols]] + [[str(get(r)) for _, get in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def format_list(kind: str, rows: list[dict[str, Any]], total: int, now: float | None = None) -> str:
    if not rows:
        return f"no {kind}"
    out = format_table(rows, columns(kind, now))
    if total > len(rows):
        out += f"\n({len(rows)} of {total} {kind} shown; raise --limit to see more)"
    return out


def format_summary(summary: dict[str, dict[str, int]]) -> str:
    if not summary:
        return "no tasks recorded"
    states = [s for s in STATES if any(s in c for c in summary.values())]
    cols: list[Column] = [("FUNCTION", lambda r: r["name"])]
    cols += [(s, _count_of(s)) for s in states]
    cols.append(("TOTAL", lambda r: sum(r["counts"].values())))
    return format_table([{"name": n, "counts": c} for n, c in summary.items()], cols)


def _count_of(state: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: row["counts"].get(state, 0)


def format_logs(files: list[dict[str, Any]]) -> str:
    if not files:
        return "no log files on this host"
    cols: list[Column] = [("NODE", lambda r: _short(r["node_id"], 8)), ("SIZE", lambda r: _size(r["size"])),
                          ("PATH", lambda r: r["path"])]
    return format_table(files, cols)
