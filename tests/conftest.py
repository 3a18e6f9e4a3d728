"""Shared fixtures and helpers of the zray test suite.

Layout: tests/unit (pure logic, no sockets), tests/integration (one service
process driven over real sockets), tests/system (embedded clusters started with
`zray.init`). Every wait goes through `poll_for` with a deadline; every fixture
stops what it started; the session ends by checking that no zray process it
started is left behind.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

import zray

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICE_MARKERS = ("zray.services", "zray.client.worker")

T = TypeVar("T")


# waiting ---------------------------------------------------------------------

def poll_for(predicate: Callable[[], T], timeout: float, interval: float = 0.02,
             what: str = "", on_timeout: Callable[[], str] | None = None) -> T:
    """Call `predicate` until it returns something truthy (returned) or the
    deadline passes (AssertionError naming `what`, plus `on_timeout()` text)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = on_timeout() if on_timeout is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for "
                                 f"{what or getattr(predicate, '__name__', 'condition')}"
                                 + (f"\n{detail}" if detail else ""))
        time.sleep(interval)


# processes and shared memory -------------------------------------------------

def shm_entries() -> set[str]:
    """Names under /dev/shm that zray may have created."""
    try:
        return {name for name in os.listdir("/dev/shm") if name.startswith("zray")}
    except FileNotFoundError:
        return set()


def _carries(proc: psutil.Process, text: str) -> bool:
    try:
        if text in " ".join(proc.cmdline()):
            return True
        return any(text in value for value in proc.environ().values())
    except psutil.Error:
        return False


def zray_processes(session_dir: str | None = None,
                   known_pids: set[int] | frozenset[int] = frozenset()) -> list[psutil.Process]:
    """Live zray service and worker processes that belong to this test process:
    its descendants, processes in `known_pids`, or ones that carry `session_dir`
    in their command line or environment."""
    try:
        descendants = {p.pid for p in psutil.Process().children(recursive=True)}
    except psutil.Error:
        descendants = set()
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if not any(marker in cmdline for marker in SERVICE_MARKERS):
            continue
        if proc.pid in descendants or proc.pid in known_pids or \
                (session_dir is not None and _carries(proc, session_dir)):
            found.append(proc)
    return found


def describe(procs: list[psutil.Process]) -> str:
    lines = []
    for proc in procs:
        try:
            lines.append(f"  pid {proc.pid}: {' '.join(proc.cmdline())[:200]}")
        except psutil.Error:
            lines.append(f"  pid {proc.pid}: (gone)")
    return "\n".join(lines)


def stop_processes(procs: list[psutil.Process], timeout: float = 5.0) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout)


def stop_popen(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def recv_within(sock: Any, timeout: float, what: str = "a message") -> list[bytes]:
    """The next multipart message on a zmq socket, or AssertionError after `timeout`."""
    if not sock.poll(int(timeout * 1000)):
        raise AssertionError(f"no {what} within {timeout}s")
    return list(sock.recv_multipart())


def short_tmpdir(prefix: str = "zt-") -> str:
    """A short folder under /tmp: ipc:// socket paths must stay under ~100 bytes."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def service_log_tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


# clusters ----------------------------------------------------------------------

@contextlib.contextmanager
def python_path_for_workers() -> Iterator[None]:
    """Workers unpickle names defined in test modules (exception classes, helpers):
    let them import the `tests` package whatever their working folder."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), old) if p)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@contextlib.contextmanager
def zray_cluster(warm_workers: int = 0, **init_kwargs: Any) -> Iterator[dict[str, Any]]:
    """An embedded cluster for the duration of the block; always shut down.

    warm_workers: wait until that many workers have registered, so that
    tests do not race the start of the worker pool.
    """
    assert not zray.is_initialized(), "a previous test left zray initialized"
    with python_path_for_workers():
        info = zray.init(**init_kwargs)
        try:
            if warm_workers:
                warm_up(warm_workers)
            yield info
        finally:
            zray.shutdown()


@zray.remote
def worker_pid() -> int:
    return os.getpid()


def warm_up(workers: int, timeout: float = 60.0) -> set[int]:
    """Until `workers` distinct workers answer one batch of tasks submitted
    together; returns their pids.

    A batch of n tasks reaching n idle registered workers runs on n workers, so
    this returns once the pool is up; no sleeping on a guess of its start time.
    """
    def distinct() -> set[int]:
        pids = set(zray.get([worker_pid.remote() for _ in range(workers)], timeout=timeout))
        return pids if len(pids) >= workers else set()

    return poll_for(distinct, timeout, interval=0.1, what=f"{workers} registered workers")


# helpers run as tasks ------------------------------------------------------------

@zray.remote
def wait_for_file(release: str, started: str | None = None, limit: float = 120.0) -> str:
    """A task that blocks until `release` exists; touches `started` when it runs."""
    if started:
        Path(started).write_text(str(os.getpid()))
    deadline = time.monotonic() + limit
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.01)
    return "released"


class Gate:
    """Files through which tests start and release blocking tasks."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.release_path = str(folder / "release")
        self._n = 0

    def started_path(self) -> str:
        self._n += 1
        return str(self.folder / f"started-{self._n}")

    def blocking_task(self, **options: Any) -> tuple[Any, str]:
        """(ref, started-file) of a task that runs until the gate opens."""
        started = self.started_path()
        fn = wait_for_file.options(**options) if options else wait_for_file
        return fn.remote(self.release_path, started), started

    def open(self) -> None:
        Path(self.release_path).touch()


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = Gate(tmp_path)
    try:
        yield g
    finally:
        g.open()  # never leave a task blocked for the next test


def run_driver(script: str, timeout: float = 90.0,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a driver program in its own interpreter; returns its output."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=str(REPO_ROOT))


# session hygiene ---------------------------------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def _session_leaves_nothing_behind() -> Iterator[None]:
    before = shm_entries()
    yield
    if zray.is_initialized():
        zray.shutdown()
    with contextlib.suppress(AssertionError):  # processes may take a moment to exit
        poll_for(lambda: not zray_processes(), 10, interval=0.1)
    with contextlib.suppress(AssertionError):
        poll_for(lambda: not (shm_entries() - before), 5, interval=0.1)
    leftovers = zray_processes()
    if leftovers:
        _report(f"zray processes left by the test session (stopping them):\n{describe(leftovers)}")
        stop_processes(leftovers)
    new_shm = shm_entries() - before
    if new_shm:
        _report(f"/dev/shm entries left by the test session: {sorted(new_shm)}")


def _report(text: str) -> None:
    """Shown even after pytest has printed its summary."""
    stream = sys.__stderr__ or sys.stderr
    stream.write(f"\n[zray test session] {text}\n")
