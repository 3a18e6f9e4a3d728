"""Worker processes of one raylet: started ahead of need, reused, reaped.

Workers are `python -m zray.client.worker`; each dies with its raylet
(PR_SET_PDEATHSIG, set by the worker itself at start).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from zray.services.raylet.oom import OomWatch

log = logging.getLogger(__name__)


@dataclass(eq=False)
class WorkerProc:
    worker_id: bytes
    proc: Any  # subprocess.Popen or zray.common.forking.ForkedProcess
    log_path: str
    registered: bool = False
    # Tasks sent to this worker, in the order it runs them; the head is running.
    tasks: deque[Any] = field(default_factory=deque)
    # Resources held for the worker's tasks while it is not blocked.
    lease: dict[str, float] | None = None
    lease_held: bool = False
    blocked: bool = False
    gpu_ids: list[int] = field(default_factory=list)
    # When it last reported a result (for the pipelining decision).
    last_progress: float = 0.0
    # The driver (route) it is leased to, whether that lease is ending (told,
    # not returned yet), when it last ran or got a task of the lease, and
    # whether it ever was leased (it may then report results of tasks the
    # raylet has not heard of yet); see leases.py.
    leased_to: bytes | None = None
    lease_ending: bool = False
    lease_used: float = 0.0
    ever_leased: bool = False
    # Set when the worker belongs to an actor for the rest of its life.
    actor_id: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    # The raylet signalled it (cancel, job end, stop): its death is no mystery.
    killed: bool = False
    # How it died, when known better than its exit code (e.g. an OOM kill).
    exit_how: str = ""
    oom: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def task(self) -> Any:
        return self.tasks[0] if self.tasks else None


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        sig = signal.Signals(-returncode)
        hint = " (not by zray; by the OS or a user)" if sig is signal.SIGKILL else ""
        return f"killed by {sig.name}{hint}"
    return f"exited with code {returncode}"


class WorkerPool:
    def __init__(self, raylet_address: str, log_dir: str, env: dict[str, str]) -> None:
        self.raylet_address = raylet_address
        self.log_dir = log_dir
        self.env = env
        self.workers: dict[bytes, WorkerProc] = {}
        self.idle: list[WorkerProc] = []
        self.starting = 0
        self.oom_watch = OomWatch()
        os.makedirs(log_dir, exist_ok=True)

    def spawn(self, fork: bool = False) -> WorkerProc:
        """Start a worker: a new interpreter, or with `fork` a copy of this process
        (only before it has a zmq context or threads; it must have imported
        zray.client.worker)."""
        worker_id = os.urandom(16)
        log_path = os.path.join(self.log_dir, f"worker-{worker_id.hex()[:12]}.log")
        env = {**self.env, "ZRAY_RAYLET_ADDRESS": self.raylet_address,
               "ZRAY_WORKER_ID": worker_id.hex(), "ZRAY_RAYLET_PID": str(os.getpid())}
        proc: Any
        if fork:
            from zray.client.worker import main as worker_main
            from zray.common.forking import fork_child

            proc = fork_child(worker_main, log_path, env, die_signal=signal.SIGKILL)
        else:
            with open(log_path, "ab") as out:
                proc = subprocess.Popen([sys.executable, "-m", "zray.client.worker"],
                                        env=dict(os.environ, **env), stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT)
        worker = WorkerProc(worker_id, proc, log_path)
        self.workers[worker_id] = worker
        self.starting += 1
        return worker

    def registered(self, worker_id: bytes) -> WorkerProc | None:
        worker = self.workers.get(worker_id)
        if worker is not None and not worker.registered:
            worker.registered = True
            self.starting -= 1
            self.idle.append(worker)
        return worker

    def dedicate(self, worker: WorkerProc) -> None:
        """The worker leaves the task pool for good (it hosts an actor now)."""
        if worker in self.idle:
            self.idle.remove(worker)

    def task_workers(self) -> int:
        return sum(1 for w in self.workers.values() if w.actor_id is None)

    def take_idle(self) -> WorkerProc | None:
        return self.idle.pop() if self.idle else None

    def give_back(self, worker: WorkerProc) -> None:
        if worker.actor_id is not None:
            return
        worker.blocked = False
        worker.lease = None
        if worker.worker_id in self.workers and worker not in self.idle:
            self.idle.append(worker)

    def reap(self) -> list[tuple[WorkerProc, int]]:
        dead = []
        for worker in list(self.workers.values()):
            code = worker.proc.poll()
            if code is not None:
                if code == -signal.SIGKILL and not worker.killed:
                    how = self.oom_watch.check()
                    if how is not None:
                        worker.oom, worker.exit_how = True, how
                dead.append((worker, code))
                self._forget(worker)
        return dead

    def _forget(self, worker: WorkerProc) -> None:
        self.workers.pop(worker.worker_id, None)
        if worker in self.idle:
            self.idle.remove(worker)
        if not worker.registered:
            self.starting -= 1

    def kill(self, worker: WorkerProc, sig: int = signal.SIGKILL) -> None:
        worker.killed = True
        try:
            worker.proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def stop_all(self, timeout: float = 2.0) -> None:
        for worker in self.workers.values():
            self.kill(worker, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in self.workers.values():
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
        self.workers.clear()
        self.idle.clear()
