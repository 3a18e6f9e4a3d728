"""Clusters started with `zray start` for system tests, under a private
ZRAY_SESSION_ROOT: the Head handle (CLI, drivers), free ports, and start/stop
that leave no process or folder behind.

Drivers and CLI commands run in their own interpreters with that root, so a
test's cluster neither sees nor disturbs one someone else started here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tests.conftest import (
    REPO_ROOT,
    describe,
    poll_for,
    run_driver,
    short_tmpdir,
    stop_processes,
    zray_processes,
)

# Defines the actor class every driver uses (by value, in the driver's __main__).
PRELUDE = textwrap.dedent("""
    import json, os, sys
    import zray

    @zray.remote
    class Counter:
        def __init__(self, start=0):
            self.value = start

        def incr(self):
            self.value += 1
            return self.value
""")


@dataclass
class Head:
    root: str
    address: str

    @property
    def env(self) -> dict[str, str]:
        return {"ZRAY_SESSION_ROOT": self.root}

    def token(self) -> str:
        """The cluster token `zray start` keeps under this root."""
        from zray.common.security import TOKEN_FILE_NAME, read_token_file

        token = read_token_file(os.path.join(self.root, TOKEN_FILE_NAME))
        assert token is not None, f"no token file under {self.root}"
        return token

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, **self.env)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        return subprocess.run([sys.executable, "-c", "from zray.cli import main; main()", *args],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def driver(self, body: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        result = run_driver(PRELUDE + textwrap.dedent(body), timeout=timeout, env=self.env)
        assert result.returncode == 0, f"driver failed:\n{result.stdout}\n{result.stderr}"
        return result

    def actors(self) -> dict[str, dict[str, Any]]:
        """`zray status --json` actors by name (unnamed ones by actor id)."""
        out = self.cli("status", "--json")
        assert out.returncode == 0, out.stderr
        return {a["name"] or a["actor_id"]: a for a in json.loads(out.stdout)["actors"]}


def free_ports(count: int) -> int:
    """A port p such that p .. p + count - 1 are free (a GCS shard binds two)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + count > 65535:
            continue
        try:
            for p in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    raise AssertionError(f"no {count} consecutive free ports")


def free_port_pair() -> int:
    return free_ports(2)


def stop_cluster(head: Head, timeout: float = 20.0) -> None:
    """`zray stop`, then no process of the cluster may be left; remove its root."""
    stopped = head.cli("stop")
    try:
        poll_for(lambda: not zray_processes(session_dir=head.root), timeout, interval=0.1,
                 what="the cluster's processes to exit after zray stop",
                 on_timeout=lambda: f"zray stop said:\n{stopped.stdout}{stopped.stderr}\n"
                                    + describe(zray_processes(session_dir=head.root)))
    finally:
        stop_processes(zray_processes(session_dir=head.root))
        shutil.rmtree(head.root, ignore_errors=True)


@contextlib.contextmanager
def started_cluster(prefix: str, head_args: Sequence[str] = (), nodes: Sequence[Sequence[str]] = (),
                    shards: int = 1, env: dict[str, str] | None = None) -> Iterator[Head]:
    """`zray start --head HEAD_ARGS`, then `zray start --address ...` once per entry of
    `nodes` (its extra arguments); `env` is set while the services start (they keep it)."""
    port = free_ports(2 * shards)
    head = Head(root=short_tmpdir(prefix), address=f"127.0.0.1:{port}")
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        out = head.cli("start", "--head", "--port", str(port), *head_args)
        assert out.returncode == 0, f"zray start failed:\n{out.stdout}\n{out.stderr}"
        for extra in nodes:
            out = head.cli("start", "--address", head.address, *extra)
            assert out.returncode == 0, f"zray start --address failed:\n{out.stdout}\n{out.stderr}"
        yield head
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop_cluster(head)


def services(head: Head) -> dict[str, dict[str, Any]]:
    """The head's supervised services by name, from `zray status --json`."""
    out = head.cli("status", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    return {s["name"]: s for s in json.loads(out.stdout)["services"]}
