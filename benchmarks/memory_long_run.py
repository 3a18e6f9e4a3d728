"""Long run of object lifetime: many tasks each producing a 1 MiB object that
a second task consumes and the driver then drops. Samples the node's store
use (from the GCS node record) and the RSS of the driver, the raylet and the
workers over time, and prints JSON: peak and final store use, and the RSS
trend (MiB per 10,000 tasks, by a least-squares fit over the second half of
the run, after warm-up), which should be about flat.

    python benchmarks/memory_long_run.py                 # 100,000 tasks
    python benchmarks/memory_long_run.py --count 5000    # quick run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import psutil

MiB = 1024**2


def _fit_slope(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="tasks producing an object")
    parser.add_argument("--size", type=int, default=MiB, help="bytes per object")
    parser.add_argument("--window", type=int, default=200, help="producer tasks in flight")
    parser.add_argument("--samples", type=int, default=50, help="samples over the run")
    parser.add_argument("--object-store-memory", type=int, default=512 * MiB)
    args = parser.parse_args()
    if args.count <= 0 or args.size <= 0 or args.window <= 0 or args.samples <= 0:
        parser.error("--count, --size, --window and --samples must be positive")

    import numpy as np

    import zray
    from zray.client import api
    from zray.common.messages.tables import NodeInfo

    zray.init(num_cpus=2, object_store_memory=args.object_store_memory)
    client = api._client()

    @zray.remote
    def produce(i: int, size: int) -> Any:
        return np.full(size // 8, i, dtype=np.int64)

    @zray.remote
    def consume(x: Any) -> int:
        return int(x[0])

    def node() -> NodeInfo:
        return NodeInfo.model_validate_json(client.gcs.get("nodes", client.node_id) or b"{}")

    raylet = psutil.Process(node().pid)
    me = psutil.Process()

    def sample(done: int, t0: float) -> dict[str, Any]:
        info = node()
        workers = [p for p in raylet.children() if p.is_running()]
        return {"t": round(time.monotonic() - t0, 2), "tasks": done,
                "store_used": info.store_used, "num_objects": info.num_objects,
                "spilled_bytes": info.spilled_bytes,
                "rss_driver": me.memory_info().rss, "rss_raylet": raylet.memory_info().rss,
                "rss_workers": sum(_rss(p) for p in workers)}

    every = max(1, args.count // args.samples)
    samples = []
    t0 = time.monotonic()
    done = 0
    pending: list[Any] = []
    next_sample = 0
    while done < args.count or pending:
        while done < args.count and len(pending) < args.window:
            pending.append(consume.remote(produce.remote(done, args.size)))
            done += 1
        half = pending[: len(pending) // 2 or 1]
        zray.get(half, timeout=600)
        del pending[: len(half)]
        if done >= next_sample:
            samples.append(sample(done, t0))
            next_sample += every
    elapsed = time.monotonic() - t0
    # Releases travel batched; the last ones reach the raylet a moment later.
    deadline = time.monotonic() + 10
    while node().store_used and time.monotonic() < deadline:
        time.sleep(0.2)
    samples.append(sample(done, t0))
    zray.shutdown()

    second = samples[len(samples) // 2:]
    xs = [s["tasks"] / 10_000 for s in second]
    rss = {k: [s[k] / MiB for s in second] for k in ("rss_driver", "rss_raylet", "rss_workers")}
    json.dump({
        "count": args.count, "object_bytes": args.size, "seconds": round(elapsed, 1),
        "tasks_per_s": round(2 * args.count / elapsed),
        "store_capacity": args.object_store_memory,
        "peak_store_used": max(s["store_used"] for s in samples),
        "final_store_used": samples[-1]["store_used"],
        "peak_spilled_bytes": max(s["spilled_bytes"] for s in samples),
        "rss_first_mib": {k: round(samples[0][k] / MiB, 1) for k in rss},
        "rss_last_mib": {k: round(samples[-1][k] / MiB, 1) for k in rss},
        "rss_trend_mib_per_10k_tasks": {k: round(_fit_slope(xs, v), 2) for k, v in rss.items()},
        "samples": samples,
    }, sys.stdout, indent=1)
    sys.stdout.write("\n")


def _rss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_info().rss)
    except psutil.Error:
        return 0


if __name__ == "__main__":
    os.environ.setdefault("ZRAY_LOG_LEVEL", "WARNING")
    main()
