"""A worker killed by the kernel's out-of-memory killer: the cluster runs in a
memory cgroup with a limit, as in a container (root only, cgroup v1 or v2
with the memory controller writable); a task allocates past the limit, the
kernel kills its worker, and `get` raises OutOfMemoryError (a
WorkerCrashedError) that says so, with the limit. The pool recovers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO_ROOT, poll_for, short_tmpdir, stop_processes, zray_processes
from tests.system.clusters import Head, free_ports, stop_cluster
from zray.services.raylet.oom import cgroup_folders

pytestmark = pytest.mark.timeout(240)

LIMIT = 768 * 1024 * 1024


def _memory_cgroup_parent() -> Path | None:
    """This process's memory cgroup folder, if a child can be made in it."""
    if os.geteuid() != 0:
        return None
    folders = cgroup_folders(os.getpid())
    if not folders:
        return None
    parent = Path(folders[0])
    limit_file = "memory.limit_in_bytes" if (parent / "memory.oom_control").exists() else "memory.max"
    probe = parent / f"zray-probe-{os.getpid()}"
    try:
        probe.mkdir()
        ok = (probe / limit_file).exists()
        probe.rmdir()
    except OSError:
        return None
    return parent if ok else None


PARENT = _memory_cgroup_parent()


@pytest.fixture
def limited_cluster() -> Iterator[Head]:
    if PARENT is None:
        pytest.skip("needs root and a writable memory cgroup (v1 or v2)")
    group = PARENT / f"zray-oom-{os.getpid()}"
    group.mkdir()
    v1 = (group / "memory.limit_in_bytes").exists()
    (group / ("memory.limit_in_bytes" if v1 else "memory.max")).write_text(str(LIMIT))
    if not v1 and (group / "memory.swap.max").exists():
        (group / "memory.swap.max").write_text("0")
    port = free_ports(2)
    head = Head(root=short_tmpdir("zo-"), address=f"127.0.0.1:{port}")
    env = dict(os.environ, ZRAY_SESSION_ROOT=head.root,
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    # Every service of the cluster starts inside the cgroup, as in a container.
    script = 'echo $$ > "$0" && exec "$@"'
    try:
        out = subprocess.run(["sh", "-c", script, str(group / "cgroup.procs"), sys.executable, "-c",
                              "from zray.cli import main; main()", "start", "--head", "--port", str(port),
                              "--num-cpus", "1", "--no-dashboard"],
                             capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, f"zray start failed:\n{out.stdout}\n{out.stderr}"
        yield head
    finally:
        stop_cluster(head)
        try:
            poll_for(lambda: not (group / "cgroup.procs").read_text().strip(), 20, interval=0.1,
                     what="the cgroup to empty")
        finally:
            leftover = [int(p) for p in (group / "cgroup.procs").read_text().split()]
            if leftover:
                stop_processes([psutil.Process(p) for p in leftover if psutil.pid_exists(p)])
            group.rmdir()
            shutil.rmtree(head.root, ignore_errors=True)
    assert not zray_processes(session_dir=head.root)


def test_a_worker_killed_for_memory_raises_out_of_memory(limited_cluster: Head) -> None:
    out = limited_cluster.driver("""
        zray.init("auto")

        @zray.remote(max_retries=0)
        def hog():
            chunks = []
            while True:   # touch 64 MB at a time until the kernel steps in
                chunks.append(bytearray(64 * 1024 * 1024))

        @zray.remote
        def fine():
            return "fine"

        try:
            zray.get(hog.remote(), timeout=120)
            error = ""
        except zray.OutOfMemoryError as exc:
            error = str(exc)
            assert isinstance(exc, zray.WorkerCrashedError)
        print(json.dumps({"error": error, "after": zray.get(fine.remote(), timeout=60)}))
    """, timeout=180)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "out-of-memory killer" in result["error"], result
    assert f"limit {LIMIT // 1024**2} MiB" in result["error"], result
    assert "hog" in result["error"], result
    assert result["after"] == "fine"
