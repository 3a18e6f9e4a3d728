"""Chaos run: a workload on 4 raylets while raylets are killed and restarted.

    python benchmarks/chaos.py [--calm 20] [--chaos 40] [--every 4] [--json out.json]

A head and three more nodes on this host (`zray start`, supervised: a killed
raylet is restarted as a new node). A driver on the head runs rounds of
tasks spread over the nodes: independent tasks, and chains whose 256 KB
intermediate objects live on the nodes that ran them, plus calls on two
actors. Every result is checked. For `--calm` seconds nothing is killed (the
baseline), then for `--chaos` seconds a killer SIGKILLs a random non-head
raylet every `--every` seconds. The report: faults injected, rounds and
tasks, wrong results (must be 0), recovery time per fault (kill to the next
round completed, i.e. until reruns and lineage replay caught up), throughput
with and without faults, and whether all resources are free again at the end.
`run()` is the same run for tests (tests/chaos).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

DRIVER = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    import zray

    # Runs for calm + chaos seconds, or until the file STOP (optional) exists.
    calm, chaos, log_path = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    get_timeout = float(sys.argv[4])
    stop = sys.argv[5] if len(sys.argv) > 5 else ""
    zray.init("auto")

    def get(ref, what):
        try:
            return zray.get(ref, timeout=get_timeout)
        except zray.exceptions.GetTimeoutError:
            refs = ref if isinstance(ref, list) else [ref]
            ready, _ = zray.wait(refs, num_returns=len(refs), timeout=0)
            ready_ids = {r.hex() for r in ready}
            stuck = [r.hex() for r in refs if r.hex() not in ready_ids]
            print(f"HANG: get of {what} waited {get_timeout}s for {[r.hex() for r in refs]} "
                  f"(not ready by zray.wait: {stuck})", file=sys.stderr)
            raise

    @zray.remote(max_retries=5)
    def square(x):
        time.sleep(0.005)
        return x * x

    @zray.remote(max_retries=5)
    def block(seed):
        return np.full(32 * 1024, seed, dtype=np.float64)   # 256 KB: kept in the store

    @zray.remote(max_retries=5)
    def grow(a):
        return a + 1

    @zray.remote
    class Counter:
        def __init__(self):
            self.n = 0
        def incr(self):
            self.n += 1
            return self.n

    counters = [Counter.remote(), Counter.remote()]
    expected = [0, 0]
    start = time.time()
    rounds = tasks = wrong = 0
    with open(log_path, "w") as log:
        while time.time() - start < calm + chaos and not (stop and os.path.exists(stop)):
            xs = list(range(rounds * 50, rounds * 50 + 50))
            refs = [square.options(scheduling_strategy="SPREAD").remote(x) for x in xs]
            chains = []
            for seed in range(4):
                ref = block.options(scheduling_strategy="SPREAD").remote(seed)
                for _ in range(3):
                    ref = grow.options(scheduling_strategy="SPREAD").remote(ref)
                chains.append((seed, ref))
            calls = [c.incr.remote() for c in counters]
            got = get(refs, "square tasks")
            wrong += sum(1 for x, y in zip(xs, got) if y != x * x)
            for seed, ref in chains:
                value = get(ref, f"chain {seed}")
                wrong += int(not (value == seed + 3).all())
            for i, ref in enumerate(calls):
                expected[i] += 1
                wrong += int(get(ref, f"actor call {i}") != expected[i])
            rounds += 1
            tasks += len(refs) + 16 + len(calls)
            log.write(f"{time.time()} {rounds} {tasks} {wrong}\\n")
            log.flush()
    print(json.dumps({"rounds": rounds, "tasks": tasks, "wrong": wrong}))
""")


def cli(root: str, *args: str, node_timeout: float = 1.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ZRAY_SESSION_ROOT=root, ZRAY_SCHED_NODE_TIMEOUT=str(node_timeout))
    return subprocess.run([sys.executable, "-c", "from zray.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def status(root: str) -> dict[str, Any]:
    return dict(json.loads(cli(root, "status", "--json").stdout))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def driver_command(calm: float, chaos: float, log_path: str, get_timeout: float,
                   stop: str = "") -> list[str]:
    """The workload driver: rounds logged to `log_path` until `calm + chaos`
    seconds passed or the file `stop` exists."""
    return [sys.executable, "-c", DRIVER, str(calm), str(chaos), log_path, str(get_timeout),
            *([stop] if stop else [])]


def run(calm: float, chaos: float, every: float, root: str | None = None,
        keep_logs: str | None = None, get_timeout: float = 120.0,
        node_timeout: float = 1.0) -> dict[str, Any]:
    """Start the 4-node cluster under `root` (a new folder by default), run the
    workload and the killer, stop everything; returns the report. A get that
    waits `get_timeout` seconds fails the run (a hang), naming what it waited on;
    a node silent for `node_timeout` seconds is declared dead."""
    root = root or tempfile.mkdtemp(prefix="zchaos-")
    port = free_port()
    kills: list[float] = []
    try:
        out = cli(root, "start", "--head", "--port", str(port), "--num-cpus", "1", "--node-name", "head",
                  "--no-dashboard", node_timeout=node_timeout)
        if out.returncode:
            raise SystemExit(out.stdout + out.stderr)
        for i in range(3):
            out = cli(root, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1",
                      "--node-name", f"n{i + 2}", node_timeout=node_timeout)
            if out.returncode:
                raise SystemExit(out.stdout + out.stderr)
        log_path = os.path.join(root, "rounds.log")
        env = dict(os.environ, ZRAY_SESSION_ROOT=root)
        driver = subprocess.Popen(driver_command(calm, chaos, log_path, get_timeout),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                  cwd=str(REPO))
        began = time.time()
        stop = threading.Event()

        def killer() -> None:
            rng = random.Random(7)
            if stop.wait(calm):
                return
            while not stop.wait(every):
                victims = [n for n in status(root)["nodes"] if n["alive"] and n["node_name"] != "head"]
                if not victims:
                    continue
                victim = rng.choice(victims)
                try:
                    os.kill(victim["pid"], signal.SIGKILL)
                    kills.append(time.time())
                except ProcessLookupError:
                    pass

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        try:
            out_text, err_text = driver.communicate(timeout=calm + chaos + 600)
        finally:
            stop.set()
            thread.join()
            if driver.poll() is None:
                driver.kill()
                driver.communicate()
        if driver.returncode:
            raise SystemExit(f"driver failed:\n{out_text}\n{err_text}")
        result = json.loads(out_text.strip().splitlines()[-1])
        rows = [line.split() for line in Path(log_path).read_text().splitlines()]
        done = [(float(t), int(n)) for t, _, n, _ in rows]
        calm_end = began + calm
        calm_tasks = [n for t, n in done if t <= calm_end]
        calm_rate = (calm_tasks[-1] / (calm_end - began)) if calm_tasks else 0.0
        chaos_rows = [(t, n) for t, n in done if t > calm_end]
        chaos_rate = ((chaos_rows[-1][1] - (calm_tasks[-1] if calm_tasks else 0))
                      / (chaos_rows[-1][0] - calm_end)) if chaos_rows else 0.0
        recovery = []
        for kill in kills:
            after = [t for t, _ in done if t > kill]
            if after:
                recovery.append(after[0] - kill)
        # Let the restarted raylets settle (the driver has ended: its actors are
        # gone), then every resource of every live node must be free again.
        deadline = time.time() + 30
        while True:
            nodes = [n for n in status(root)["nodes"] if n["alive"]]
            busy = {n["node_name"]: {k: (n["resources_available"].get(k), total)
                                     for k, total in n["resources_total"].items()
                                     if n["resources_available"].get(k) != total}
                    for n in nodes}
            busy = {name: diff for name, diff in busy.items() if diff}
            if not busy or time.time() > deadline:
                break
            time.sleep(0.5)
        final = status(root)
        services = final.get("services", [])
        return {
            "faults": len(kills), "rounds": result["rounds"], "tasks": result["tasks"],
            "wrong_results": result["wrong"],
            "recovery_s": {"median": sorted(recovery)[len(recovery) // 2] if recovery else None,
                           "max": max(recovery) if recovery else None, "all": recovery},
            "tasks_per_s_calm": calm_rate, "tasks_per_s_chaos": chaos_rate,
            "throughput_loss": 1 - chaos_rate / calm_rate if calm_rate else None,
            "all_resources_free_at_end": not busy, "resources_still_held": busy,
            "all_cpus_free_at_end": not any("CPU" in diff for diff in busy.values()),
            "alive_nodes_at_end": len(nodes),
            "store_dirs": sorted({n["store_dir"] for n in final["nodes"] if n.get("store_dir")}),
            "raylet_restarts": sum(s.get("restarts", 0) for s in services if "raylet" in s.get("name", "")),
        }
    finally:
        if keep_logs:
            shutil.copytree(root, keep_logs, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.sock", "sockets", "gcs"))
        cli(root, "stop")
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calm", type=float, default=20.0)
    parser.add_argument("--chaos", type=float, default=40.0)
    parser.add_argument("--every", type=float, default=4.0)
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--keep-logs", help="copy the session folders (logs) here at the end")
    parser.add_argument("--get-timeout", type=float, default=120.0,
                        help="a get waiting this long is a hang: the run fails naming the objects")
    parser.add_argument("--node-timeout", type=float, default=1.0,
                        help="ZRAY_SCHED_NODE_TIMEOUT: seconds of silence before a node is declared dead")
    args = parser.parse_args()
    report = run(args.calm, args.chaos, args.every, keep_logs=args.keep_logs,
                 get_timeout=args.get_timeout, node_timeout=args.node_timeout)
    print(json.dumps(report, indent=1))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
