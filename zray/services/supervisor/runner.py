"""The supervisor process: starts the services of one `zray start` on this
host, restarts any that exits (with backoff, see policy.py), records restarts
for `zray status`, and stops them all, in reverse start order, on SIGTERM.

Its children die with it (PR_SET_PDEATHSIG), so killing the supervisor
stops everything it ran.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from zray.client.local_cluster import spawn_service
from zray.services.supervisor.policy import Backoff
from zray.services.supervisor.state import (
    SPEC_FILE,
    STATE_FILE,
    ServiceSpec,
    ServiceState,
    SupervisorSpec,
    SupervisorState,
    write_json_atomic,
)

log = logging.getLogger("zray.supervisor")
POLL_INTERVAL = 0.1
STOP_TIMEOUT = 10.0


@dataclass
class _Running:
    spec: ServiceSpec
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    recent_failures: int = 0
    last_exit: int | None = None
    restart_at: float | None = None


class Supervisor:
    def __init__(self, session_dir: str, backoff: Backoff | None = None) -> None:
        self.session_dir = session_dir
        with open(os.path.join(session_dir, SPEC_FILE)) as f:
            spec = SupervisorSpec.model_validate_json(f.read())
        self.services = [_Running(s) for s in spec.services]
        self.backoff = backoff or Backoff()
        self.stopping = threading.Event()

    def start(self, svc: _Running) -> None:
        svc.proc = spawn_service(svc.spec.args, svc.spec.log, bound_to_parent=True)
        svc.started_at = time.monotonic()
        svc.restart_at = None

    def run(self) -> None:
        for svc in self.services:
            self.start(svc)
        self.write_state()
        while not self.stopping.wait(POLL_INTERVAL):
            if self.check():
                self.write_state()
        self.stop_all()

    def check(self) -> bool:
        """Reap exits, start what is due; whether anything changed."""
        changed = False
        now = time.monotonic()
        for svc in self.services:
            if svc.proc is not None and svc.proc.poll() is not None:
                svc.last_exit = svc.proc.returncode
                svc.recent_failures = self.backoff.failures_after_exit(
                    svc.recent_failures, now - svc.started_at)
                delay = self.backoff.delay(svc.recent_failures)
                svc.restart_at = now + delay
                log.warning("%s (pid %d) exited with code %s; restarting in %.1fs", svc.spec.name,
                            svc.proc.pid, svc.last_exit, delay)
                svc.proc = None
                changed = True
            if svc.proc is None and svc.restart_at is not None and now >= svc.restart_at:
                svc.restarts += 1
                self.start(svc)
                assert svc.proc is not None
                log.info("%s restarted (pid %d, restart %d)", svc.spec.name, svc.proc.pid,
                         svc.restarts)
                changed = True
        return changed

    def stop_all(self) -> None:
        self.write_state(stopping=True)
        for svc in reversed(self.services):  # raylets first, the GCS last
            if svc.proc is None or svc.proc.poll() is not None:
                continue
            svc.proc.send_signal(signal.SIGTERM)
            try:
                svc.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %gs; killing it", svc.spec.name, STOP_TIMEOUT)
                svc.proc.kill()
                svc.proc.wait()
        self.write_state(stopping=True)

    def write_state(self, stopping: bool = False) -> None:
        wall, mono = time.time(), time.monotonic()
        states = [ServiceState(name=s.spec.name, pid=s.proc.pid if s.proc else 0,
                               alive=s.proc is not None and s.proc.poll() is None,
                               restarts=s.restarts, last_exit=s.last_exit,
                               started_at=wall - (mono - s.started_at), log=s.spec.log)
                  for s in self.services]
        state = SupervisorState(pid=os.getpid(), services=states, stopping=stopping)
        write_json_atomic(os.path.join(self.session_dir, STATE_FILE), state.model_dump_json(indent=2))


def main(argv: list[str]) -> None:
    from zray.common.logs import configure_logging

    if len(argv) != 1:
        raise SystemExit("usage: python -m zray.services.supervisor SESSION_DIR")
    configure_logging("supervisor", os.environ.get("ZRAY_LOG_LEVEL", "INFO"))
    supervisor = Supervisor(argv[0])
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: supervisor.stopping.set())
    supervisor.run()
