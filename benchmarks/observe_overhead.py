"""Tiny-task throughput with observability off and on.

    python benchmarks/observe_overhead.py [--repeats 5] [--n 10000] [--baseline-src DIR]

"off": an embedded 2-CPU cluster as `zray.init()` starts it (task state
tracking is always on). "on": the same plus a Prometheus exporter in every
service and a dashboard process, both read once a second during the run (as
an open dashboard page and a Prometheus scraper would). With --baseline-src
(e.g. a `git archive` of an older commit's `zray/`), that code runs "off" too,
to show what task state tracking itself costs. Every run is a fresh process;
the configurations alternate within each repeat so drift hits all alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def child(mode: str, n: int) -> None:
    import zray

    if mode == "on":
        for key in ("ZRAY_METRICS_PORT", "ZRAY_GCS_METRICS_PORT", "ZRAY_SCHED_METRICS_PORT"):
            os.environ[key] = "0"
    zray.init(num_cpus=2)

    @zray.remote
    def noop() -> None:
        return None

    zray.get([noop.remote() for _ in range(200)])
    stop = threading.Event()
    dashboard = None
    if mode == "on":
        dashboard, urls = _start_watchers()
        threading.Thread(target=_watch, args=(urls, stop), daemon=True).start()
    t0 = time.perf_counter()
    zray.get([noop.remote() for _ in range(n)])
    dt = time.perf_counter() - t0
    stop.set()
    if dashboard is not None:
        dashboard.terminate()
        dashboard.wait()
    zray.shutdown()
    print(json.dumps({"tasks_per_s": n / dt}))


def _start_watchers() -> tuple[subprocess.Popen[bytes], list[str]]:
    import socket

    from zray.client.api import _state
    from zray.common.messages.tables import KV
    from zray.services.gcs.client import GcsClient

    assert _state.client is not None
    address = str(_state.client.gcs.address)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dashboard = subprocess.Popen([sys.executable, "-m", "zray.dashboard", "--gcs-address", address,
                                  "--port", str(port)], stderr=subprocess.DEVNULL)
    gcs = GcsClient(address)
    deadline = time.monotonic() + 30
    while len(found := gcs.scan(KV, prefix="metrics:")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    gcs.close()
    urls = [json.loads(v)["url"] for _, v in found] + [f"http://127.0.0.1:{port}/api/snapshot"]
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(urls[-1], timeout=5).read()
            break
        except OSError:
            time.sleep(0.05)
    return dashboard, urls


def _watch(urls: list[str], stop: threading.Event) -> None:
    while not stop.is_set():
        for url in urls:
            try:
                urllib.request.urlopen(url, timeout=5).read()
            except OSError:
                pass
        stop.wait(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--baseline-src", default="", help="folder holding an older zray/ to compare")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n)
        return
    configs = [("off", REPO), ("on", REPO)]
    if args.baseline_src:
        configs.insert(0, ("baseline", os.path.abspath(args.baseline_src)))
    results: dict[str, list[float]] = {name: [] for name, _ in configs}
    for r in range(args.repeats):
        order = configs[r % len(configs):] + configs[:r % len(configs)]
        for name, src in order:
            env = dict(os.environ, PYTHONPATH=src)
            mode = "off" if name == "baseline" else name
            out = subprocess.run([sys.executable, __file__, "--child", mode, "--n", str(args.n)],
                                 env=env, capture_output=True, text=True, timeout=300, cwd="/tmp")
            if out.returncode != 0:
                sys.exit(f"{name} run failed:\n{out.stdout}\n{out.stderr}")
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1])["tasks_per_s"])
            print(f"repeat {r + 1}: {name:8s} {results[name][-1]:8.0f} tasks/s", flush=True)
    print(f"\ntiny tasks ({args.n} no-op tasks, 2 CPUs), median of {args.repeats}:")
    for name, values in results.items():
        print(f"  {name:8s} {statistics.median(values):8.0f} tasks/s  (min {min(values):.0f}, "
              f"max {max(values):.0f})")


if __name__ == "__main__":
    main()
