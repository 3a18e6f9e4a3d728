"""Estimate pi by Monte-Carlo sampling on a zray cluster.

Run:  python examples/monte_carlo_pi.py
      (an embedded cluster; with ZRAY_ADDRESS=auto or host:port set, the
      cluster it names, e.g. `docker compose run --rm driver python examples/monte_carlo_pi.py`)

Part 1 fans out many small tasks, each drawing its own random points.
Part 2 puts one numpy array of points into the shared-memory object store
with `zray.put` and lets tasks count slices of it; workers map the array
without copying it.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

import zray

NUM_TASKS = 200
SAMPLES_PER_TASK = 50_000
SHARED_POINTS = 2_000_000
SLICES = 16


@zray.remote
def sample_and_count(seed: int, samples: int) -> int:
    """How many of `samples` random points in the unit square fall inside the quarter circle."""
    xy = np.random.default_rng(seed).random((samples, 2))
    return int(np.count_nonzero(np.einsum("ij,ij->i", xy, xy) <= 1.0))


@zray.remote
def count_slice(points: np.ndarray, start: int, stop: int) -> int:
    """The same count over rows [start, stop) of a shared array."""
    xy = points[start:stop]
    return int(np.count_nonzero(np.einsum("ij,ij->i", xy, xy) <= 1.0))


def report(label: str, inside: int, total: int, seconds: float) -> None:
    estimate = 4.0 * inside / total
    print(f"{label}: pi ~ {estimate:.5f} (error {abs(estimate - math.pi):.5f}) "
          f"from {total:,} points in {seconds:.2f}s")


def main() -> None:
    started = time.perf_counter()
    zray.init()  # embedded, or the cluster named by ZRAY_ADDRESS
    cpus = zray.cluster_resources().get("CPU", 0)
    where = os.environ.get("ZRAY_ADDRESS") or "embedded"
    print(f"cluster ({where}) up in {time.perf_counter() - started:.2f}s with {cpus:g} CPUs")

    t = time.perf_counter()
    refs = [sample_and_count.remote(seed, SAMPLES_PER_TASK) for seed in range(NUM_TASKS)]
    inside = sum(zray.get(refs))
    seconds = time.perf_counter() - t
    report(f"{NUM_TASKS} tasks", inside, NUM_TASKS * SAMPLES_PER_TASK, seconds)
    print(f"  {NUM_TASKS / seconds:,.0f} tasks/s")

    t = time.perf_counter()
    points = np.random.default_rng(12345).random((SHARED_POINTS, 2))
    points_ref = zray.put(points)
    bounds = np.linspace(0, SHARED_POINTS, SLICES + 1, dtype=int)
    counts = [count_slice.remote(points_ref, int(lo), int(hi))
              for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    inside = sum(zray.get(counts))
    report(f"zray.put of a {points.nbytes / 2**20:.0f} MiB array, {SLICES} tasks", inside,
           SHARED_POINTS, time.perf_counter() - t)

    zray.shutdown()
    print(f"total {time.perf_counter() - started:.2f}s")


if __name__ == "__main__":
    main()
