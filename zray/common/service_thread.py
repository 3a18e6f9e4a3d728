"""Run a service on a thread of another service's process, with the
Popen-like handle (`poll`, `send_signal`, `wait`, `kill`) that supervisors
use for child processes.

The embedded cluster runs its global scheduler this way inside the GCS
process: it is idle most of the time, and a process of its own costs a
Python interpreter's memory (~35 MB resident).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading

from zray.common.service import Service, Status

log = logging.getLogger(__name__)


class ServiceThread:
    """A service's loop on a daemon thread; `returncode` is set when it ends."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.returncode: int | None = None
        self._killed = False
        self._thread = threading.Thread(target=self._main, name=f"zray-{service.name}", daemon=True)

    def start(self) -> ServiceThread:
        self._thread.start()
        return self

    def _main(self) -> None:
        code = 0
        try:
            self.service.run(handle_signals=False)
        except BaseException:
            log.exception("%s: stopped by an error", self.service.name)
            code = 1
        self.returncode = code

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Any signal asks the service to close (a thread cannot be killed)."""
        service = self.service
        if self.returncode is not None or service.status in (Status.closing, Status.closed):
            return
        try:
            service.loop.call_soon_threadsafe(service.close, f"signal {sig}")
        except RuntimeError:  # its loop already closed
            pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Ask once more and stop waiting: the process's exit ends the thread."""
        self._killed = True
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        if self._killed and self.returncode is None:
            return -signal.SIGKILL
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise subprocess.TimeoutExpired(self._thread.name, timeout or 0.0)
        assert self.returncode is not None
        return self.returncode
