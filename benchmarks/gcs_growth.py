"""The GCS over a long run of tiny tasks: rows, LMDB pages and RSS stay flat.

    python benchmarks/gcs_growth.py [--tasks 1000000] [--batch 10000] [--json out.json]

An embedded cluster runs `--tasks` no-op tasks in batches whose results are
dropped; after each batch the GCS shard's ping reports its task rows, the LMDB
pages in use and its process RSS (each sample also goes to stderr as it is
taken). Prints JSON with the samples and the trend (per 100,000 tasks, least
squares over the second half) of each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import zray
from zray.services.gcs.client import GcsClient


@zray.remote
def noop() -> None:
    return None


def trend(points: list[tuple[float, float]]) -> float:
    """Slope per 100,000 tasks of a least-squares line."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points) or 1.0
    return sum((x - mx) * (y - my) for x, y in points) / den * 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    info = zray.init(num_cpus=2)
    gcs = GcsClient(info["address"], timeout=60.0)
    samples: list[dict[str, Any]] = []
    start = time.time()
    try:
        done = 0
        while done < args.tasks:
            zray.get([noop.remote() for _ in range(args.batch)])
            done += args.batch
            pong = gcs.ping()
            samples.append({"tasks": done, "t": round(time.time() - start, 2),
                            "task_rows": pong.entries.get("tasks", 0),
                            "object_rows": pong.entries.get("objects", 0),
                            "data_bytes": pong.data_bytes, "rss": pong.rss})
            print(json.dumps(samples[-1]), file=sys.stderr, flush=True)  # progress
    finally:
        gcs.close()
        zray.shutdown()
    half = samples[len(samples) // 2:]
    report = {
        "tasks": args.tasks, "seconds": round(time.time() - start, 1),
        "first": samples[0], "last": samples[-1],
        "max_task_rows": max(s["task_rows"] for s in samples),
        "trend_per_100k_tasks": {key: trend([(s["tasks"], s[key]) for s in half])
                                 for key in ("task_rows", "data_bytes", "rss")},
        "samples": samples,
    }
    print(json.dumps(report, indent=1))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
