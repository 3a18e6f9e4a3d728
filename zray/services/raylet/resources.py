"""Resource arithmetic on {name: amount} maps. Pure functions."""

from __future__ import annotations

import os

Resources = dict[str, float]


def fits(request: Resources, available: Resources) -> bool:
    return all(available.get(k, 0.0) >= v - 1e-9 for k, v in request.items() if v > 0)


def acquire(available: Resources, request: Resources) -> None:
    for k, v in request.items():
        available[k] = available.get(k, 0.0) - v


def release(available: Resources, request: Resources) -> None:
    for k, v in request.items():
        available[k] = available.get(k, 0.0) + v


def shape(request: Resources) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((k, v) for k, v in request.items() if v > 0))


# Share of the RAM left beside the object store that tasks may reserve with `memory=`.
TASK_MEMORY_SHARE = 0.7


def node_resources(num_cpus: float | None, num_gpus: float | None, custom: Resources,
                   store_bytes: int, ram_bytes: int) -> Resources:
    """The resources a node advertises: detected CPUs/GPUs unless given, `memory`
    for tasks' heaps and `object_store_memory` for the store (as Ray names them)."""
    total: Resources = {"CPU": float(os.cpu_count() or 1) if num_cpus is None else float(num_cpus)}
    gpus = _detect_gpus() if num_gpus is None else float(num_gpus)
    if gpus:
        total["GPU"] = gpus
    total["memory"] = float(int(max(0, ram_bytes - store_bytes) * TASK_MEMORY_SHARE))
    total["object_store_memory"] = float(store_bytes)
    for name, amount in custom.items():
        if amount < 0:
            raise ValueError(f"resource {name!r} has negative amount {amount}")
        total[name] = float(amount)
    return total


def _detect_gpus() -> float:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return float(len([d for d in visible.split(",") if d.strip()]))
    try:
        return float(len([d for d in os.listdir("/dev") if d.startswith("nvidia") and d[6:].isdigit()]))
    except OSError:
        return 0.0
