"""What `zray start` left running on this host: /tmp/zray_sessions/current_cluster.json.

`zray.init("auto")` reads its `gcs_address` and `raylet_address` (see
zray.client.api.CURRENT_CLUSTER_FILE); `zray stop` and `zray status --json`
read the services. Read-modify-write happens under `cluster_lock()`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator

import psutil
from pydantic import BaseModel, ConfigDict

from zray.client.local_cluster import SESSION_ROOT

# Same path as zray.client.api.CURRENT_CLUSTER_FILE (not imported: that module loads the client).
CLUSTER_FILE = os.path.join(SESSION_ROOT, "current_cluster.json")


class ServiceRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    pid: int
    create_time: float
    log: str

    def process(self) -> psutil.Process | None:
        """The live process, or None when it exited (or its pid was reused)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 1.0 or \
                    proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None


class ClusterRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    gcs_address: str
    raylet_address: str
    address: str
    session_dir: str
    head: bool
    started_at: float
    services: list[ServiceRecord] = []
    session_dirs: list[str] = []
    store_dirs: list[str] = []

    def live_services(self) -> list[ServiceRecord]:
        return [s for s in self.services if s.process() is not None]


def service_record(name: str, pid: int, log: str) -> ServiceRecord:
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        created = time.time()
    return ServiceRecord(name=name, pid=pid, create_time=created, log=log)


def read_record() -> ClusterRecord | None:
    """The record, or None when there is none (or it is unreadable)."""
    try:
        with open(CLUSTER_FILE) as f:
            return ClusterRecord.model_validate(json.load(f))
    except (OSError, ValueError):
        return None


def write_record(record: ClusterRecord) -> None:
    tmp = f"{CLUSTER_FILE}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(record.model_dump_json(indent=2) + "\n")
    os.replace(tmp, CLUSTER_FILE)


def remove_record() -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(CLUSTER_FILE)


@contextlib.contextmanager
def cluster_lock() -> Iterator[None]:
    """Serializes `zray start/stop` on this host (an flock on the sessions folder itself)."""
    os.makedirs(SESSION_ROOT, exist_ok=True)
    fd = os.open(SESSION_ROOT, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _order(service: ServiceRecord) -> int:
    """Raylets stop first (they report their end to the GCS), the GCS last."""
    return {"gcs": 2, "global-sched": 1}.get(service.name, 0)


def terminate(services: list[ServiceRecord], timeout: float) -> list[tuple[ServiceRecord, str]]:
    """SIGTERM each service (raylets, then schedulers, then the GCS), wait up to
    `timeout` seconds per stage, then SIGKILL what is left and its children.
    Returns each service with what happened to it."""
    outcome: list[tuple[ServiceRecord, str]] = []
    leftovers: list[psutil.Process] = []
    for stage in sorted({_order(s) for s in services}):
        live: dict[psutil.Process, ServiceRecord] = {}
        for service in (s for s in services if _order(s) == stage):
            proc = service.process()
            if proc is None:
                outcome.append((service, "had already exited"))
                continue
            with contextlib.suppress(psutil.Error):
                leftovers += proc.children(recursive=True)
                proc.terminate()
                live[proc] = service
        alive = _wait_gone(list(live), timeout)
        outcome += [(service, "stopped") for proc, service in live.items() if proc not in alive]
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
            outcome.append((live[proc], f"killed after {timeout:g}s"))
        _wait_gone(alive, 2.0)
    for proc in leftovers:  # workers die with their raylet; make sure of it
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _wait_gone(leftovers, 2.0)
    return outcome


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until the processes exited; returns those still running at the deadline.

    They are not our children (`zray start` exited), so they are polled; a zombie
    waiting for init to reap it counts as gone.
    """
    deadline = time.monotonic() + timeout
    while (alive := [p for p in procs if not _gone(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive
