"""Helpers of the node-failure tests: a three-node `zray start` cluster whose
nodes are declared dead after ~2 s of silence, drivers run step by step, and
node lookups, kills and waits through `zray status --json`."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, poll_for, short_tmpdir
from tests.system.clusters import Head, started_cluster

PRELUDE = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    import zray
    from zray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    zray.init("auto")
    NODES = {n["NodeName"]: n["NodeID"] for n in zray.nodes() if n["Alive"]}
    ON_N2 = NodeAffinitySchedulingStrategy(NODES["n2"], soft=True)

    @zray.remote
    def make(mb):
        return np.ones(mb * 1024 * 1024 // 8)

    @zray.remote
    def plus(a, x):
        return a + x

    @zray.remote
    def slow(seconds):
        time.sleep(seconds)
        return zray.get_runtime_context().get_node_id()

    def step(name):  # tell the test where the driver is, then wait for its go-ahead
        print(name, flush=True)
        go = os.path.join(sys.argv[1], name)
        while not os.path.exists(go):
            time.sleep(0.05)
""")


@contextlib.contextmanager
def three_node_cluster(node_args: Sequence[str] = ()) -> Iterator[Head]:
    """head, n2 and n3 with one CPU each (n2 and n3 with `node_args` too),
    declared dead after ~2 s of silence."""
    with started_cluster("zf-", ["--num-cpus", "1", "--node-name", "head", "--no-dashboard"],
                         nodes=[["--num-cpus", "1", "--node-name", name, *node_args]
                                for name in ("n2", "n3")],
                         env={"ZRAY_SCHED_NODE_TIMEOUT": "2.0"}) as h:
        yield h


@pytest.fixture(name="cluster")
def three_nodes() -> Iterator[Head]:
    with three_node_cluster() as h:
        yield h


def nodes(head: Head) -> list[dict[str, Any]]:
    out = head.cli("status", "--json")
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout)["nodes"])


def node(head: Head, name: str) -> dict[str, Any]:
    return next(n for n in nodes(head) if n["node_name"] == name and n["alive"])


class Driver:
    """A driver program run step by step: it prints a step's name and waits for go(name).

    `prelude` (default: this module's) runs before `body`; the folder of the
    go-ahead files is its sys.argv[1]."""

    def __init__(self, head: Head, body: str, prelude: str = PRELUDE) -> None:
        self.folder = short_tmpdir("zd-")
        env = dict(os.environ, ZRAY_SESSION_ROOT=head.root, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
        self.lines: list[str] = []  # what it printed so far
        self._partial = ""
        self.proc = subprocess.Popen([sys.executable, "-c", prelude + textwrap.dedent(body), self.folder],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def reached(self, name: str, timeout: float = 90.0) -> None:
        import selectors

        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)

        def arrived() -> bool:
            # Raw reads: a buffered readline could take two lines off the pipe
            # and leave the second where select() no longer sees it.
            if sel.select(0.05):
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(f"driver ended early:\n{''.join(self.lines)}{self._partial}"
                                         f"{self.proc.stderr.read()}")  # type: ignore[union-attr]
                *complete, self._partial = (self._partial + chunk.decode()).split("\n")
                self.lines.extend(line + "\n" for line in complete)
            return any(line.strip() == name for line in self.lines)

        try:
            poll_for(arrived, timeout, interval=0.01, what=f"the driver to reach {name}")
        finally:
            sel.close()

    def go(self, name: str) -> None:
        open(os.path.join(self.folder, name), "w").close()

    def finish(self, timeout: float = 120.0) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=timeout)
        out = self._partial + out
        shutil.rmtree(self.folder, ignore_errors=True)
        assert self.proc.returncode == 0, f"driver failed:\n{''.join(self.lines)}{out}\n{err}"
        return dict(json.loads(("".join(self.lines) + out).strip().splitlines()[-1]))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        shutil.rmtree(self.folder, ignore_errors=True)


def kill_node(head: Head, name: str, sig: int = signal.SIGKILL) -> dict[str, Any]:
    info = node(head, name)
    os.kill(info["pid"], sig)
    return info


def wait_declared_dead(head: Head, node_id: str) -> None:
    poll_for(lambda: any(n["node_id"] == node_id and not n["alive"] for n in nodes(head)), 30,
             interval=0.2, what=f"node {node_id[:12]} to be declared dead")
