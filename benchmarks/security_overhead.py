"""What CURVE costs: a `zray start --head` cluster with its token against one
started with --insecure, alternately, each in a private session root.

    python benchmarks/security_overhead.py [--rounds 2] [--tasks 3000] [--pings 2000]

Per round and mode: tiny-task throughput of a driver on the head (the task
path is ipc, so CURVE should not show) and the round trip of a GCS ping over
TCP (which CURVE encrypts). JSON rows go to stdout, a table to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DRIVER = textwrap.dedent("""
    import json, sys, time
    import zray
    from zray.services.gcs.client import GcsClient

    tasks, pings = int(sys.argv[1]), int(sys.argv[2])
    info = zray.init("auto")

    @zray.remote
    def noop():
        return None

    zray.get([noop.remote() for _ in range(200)])
    start = time.perf_counter()
    zray.get([noop.remote() for _ in range(tasks)])
    tasks_per_s = tasks / (time.perf_counter() - start)
    gcs = GcsClient(sys.argv[3], timeout=10.0)
    gcs.ping()
    start = time.perf_counter()
    for _ in range(pings):
        gcs.ping()
    ping_us = (time.perf_counter() - start) / pings * 1e6
    gcs.close()
    zray.shutdown()
    print(json.dumps({"tasks_per_s": tasks_per_s, "gcs_ping_us": ping_us}))
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(mode: str, tasks: int, pings: int) -> dict[str, object]:
    root = tempfile.mkdtemp(prefix="zsec-")
    env = dict(os.environ, ZRAY_SESSION_ROOT=root, PYTHONPATH=REPO, ZRAY_TOKEN="")
    if mode == "insecure":
        env["ZRAY_INSECURE"] = "1"
    cli = [sys.executable, "-c", "from zray.cli import main; main()"]
    port = free_port()
    try:
        flags = ["--insecure"] if mode == "insecure" else []
        subprocess.run(cli + ["start", "--head", "--port", str(port), "--num-cpus", "2",
                              "--no-dashboard", *flags], env=env, check=True, capture_output=True)
        out = subprocess.run([sys.executable, "-c", DRIVER, str(tasks), str(pings),
                              f"127.0.0.1:{port}"], env=env, check=True, capture_output=True,
                             text=True)
        row: dict[str, object] = {"mode": mode, **json.loads(out.stdout.strip().splitlines()[-1])}
        return row
    finally:
        subprocess.run(cli + ["stop"], env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--pings", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    for i in range(args.rounds):
        for mode in (("curve", "insecure") if i % 2 == 0 else ("insecure", "curve")):
            row = run(mode, args.tasks, args.pings)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"{'mode':<10}{'tasks/s':>12}{'GCS ping us':>14}", file=sys.stderr)
    for row in rows:
        print(f"{row['mode']:<10}{row['tasks_per_s']:>12.0f}{row['gcs_ping_us']:>14.1f}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
