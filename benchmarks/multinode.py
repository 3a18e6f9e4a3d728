"""Several raylets on this host: tiny-task throughput on 1 vs 3 raylets,
spill-over latency, and cross-node transfer of a 100 MB object.

    python benchmarks/multinode.py [--tasks 10000] [--repeats 3] [--json out.json]

Each configuration is a fresh cluster started with `zray start --head` (and
`zray start --address` for more nodes) under a private ZRAY_SESSION_ROOT,
measured by a driver in its own interpreter, then stopped. The machine's
cores are shared by every raylet: with 3 raylets on 2 cores the numbers show
the cost of spreading (forwarding, more processes), not the gain more hosts
would bring.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

DRIVER = textwrap.dedent("""
    import json, statistics, sys, time
    import numpy as np
    import zray
    from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    n_tasks = int(sys.argv[1])
    zray.init("auto")
    nodes = [n["NodeID"] for n in zray.nodes() if n["Alive"]]
    head = zray.get_runtime_context().get_node_id()
    others = [n for n in nodes if n != head]

    @zray.remote
    def noop():
        return None

    @zray.remote
    def make(mb):
        return np.ones(mb * 1024 * 1024 // 8)

    @zray.remote
    def ready(a):
        return a.nbytes

    zray.get([noop.remote() for _ in range(200)])  # warm the workers
    start = time.perf_counter()
    zray.get([noop.remote() for _ in range(n_tasks)], timeout=600)
    out = {"nodes": len(nodes), "tiny_tasks_per_s": n_tasks / (time.perf_counter() - start)}
    if others:
        pin = NodeAffinitySchedulingStrategy(others[0])
        lat = []
        for _ in range(200):  # a task forced onto another node: submit -> result
            t = time.perf_counter()
            zray.get(noop.options(scheduling_strategy=pin).remote())
            lat.append(time.perf_counter() - t)
        lat.sort()
        out["spill_latency_ms_median"] = lat[len(lat) // 2] * 1e3
        out["spill_latency_ms_p99"] = lat[int(len(lat) * 0.99)] * 1e3
        rates = []
        for _ in range(3):
            ref = make.options(scheduling_strategy=pin).remote(100)
            zray.wait([ref], fetch_local=False)
            t = time.perf_counter()
            value = zray.get(ref)  # pulled from the other node's store into this one's
            rates.append(value.nbytes / (time.perf_counter() - t) / 1e9)
            del value, ref
        out["transfer_100mb_gb_per_s"] = statistics.median(rates)
    print(json.dumps(out))
    zray.shutdown()
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def zray_cli(root: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ZRAY_SESSION_ROOT=root)
    return subprocess.run([sys.executable, "-c", "from zray.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def run_config(nodes: int, n_tasks: int, cpus: float) -> dict[str, Any]:
    root = tempfile.mkdtemp(prefix="zmb-")
    port = free_port()
    try:
        out = zray_cli(root, "start", "--head", "--port", str(port), "--num-cpus", str(cpus),
                       "--no-dashboard")
        if out.returncode:
            raise RuntimeError(out.stdout + out.stderr)
        for i in range(1, nodes):
            out = zray_cli(root, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", str(cpus),
                           "--node-name", f"node{i}")
            if out.returncode:
                raise RuntimeError(out.stdout + out.stderr)
        env = dict(os.environ, ZRAY_SESSION_ROOT=root)
        result = subprocess.run([sys.executable, "-c", DRIVER, str(n_tasks)], capture_output=True,
                                text=True, env=env, timeout=900, cwd=str(REPO))
        if result.returncode:
            raise RuntimeError(result.stdout + result.stderr)
        return dict(json.loads(result.stdout.strip().splitlines()[-1]))
    finally:
        zray_cli(root, "stop")
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpus", type=float, default=2.0, help="CPUs each raylet offers")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        for nodes in (1, 3) if repeat % 2 == 0 else (3, 1):  # alternate the order against drift
            row = run_config(nodes, args.tasks, args.cpus)
            row["repeat"] = repeat
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    summary: dict[str, Any] = {}
    for nodes in (1, 3):
        mine = [r for r in rows if r["nodes"] == nodes]
        for key in sorted({k for r in mine for k in r} - {"nodes", "repeat"}):
            values = [r[key] for r in mine if key in r]
            summary[f"{nodes}_raylets.{key}"] = {"median": statistics.median(values),
                                                 "min": min(values), "max": max(values)}
    if "1_raylets.tiny_tasks_per_s" in summary and "3_raylets.tiny_tasks_per_s" in summary:
        summary["tiny_3_over_1"] = (summary["3_raylets.tiny_tasks_per_s"]["median"]
                                    / summary["1_raylets.tiny_tasks_per_s"]["median"])
    doc = {"command": " ".join(sys.argv), "rows": rows, "summary": summary}
    print(json.dumps(doc, indent=1))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
