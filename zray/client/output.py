"""Worker output to the driver's terminal.

In a worker, `sys.stdout`/`sys.stderr` are replaced by streams that write to
the worker's log file (its fd 1, rotated by size) and forward complete lines to the raylet,
which publishes them per job. In a driver, a daemon thread prints them,
prefixed with the task name and worker pid.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from typing import Any, TextIO

import zmq

from zray.client.log_files import RotatingLog
from zray.common import wire
from zray.common.messages.raylet import LogLines
from zray.common.sockets import configure, connect


class _ForwardingStream(io.TextIOBase):
    def __init__(self, forwarder: LogForwarder, stream: str, original: TextIO) -> None:
        self.forwarder = forwarder
        self.stream = stream
        self.original = original
        self.partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.original.write(text)
        if self.forwarder.log_file is not None:
            self.forwarder.log_file.wrote(len(text))
        data = self.partial + text
        cut = data.rfind("\n")
        if cut < 0:
            self.partial = data
        else:
            self.partial = data[cut + 1:]
            self.forwarder.forward(self.stream, data[:cut])
        return len(text)

    def flush(self) -> None:
        self.original.flush()
        if self.partial:
            self.forwarder.forward(self.stream, self.partial)
            self.partial = ""

    def fileno(self) -> int:
        return self.original.fileno()

    def isatty(self) -> bool:
        return False


class LogForwarder:
    """Sends a worker's printed lines to its raylet (thread-safe)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.lock = threading.Lock()
        self.sock = configure(client.ctx.socket(zmq.DEALER), identity=client.worker_id + b"/log")
        connect(self.sock, client.raylet_address)
        self.log_file = RotatingLog.for_stdout()

    @classmethod
    def install(cls, client: Any) -> LogForwarder:
        forwarder = cls(client)
        sys.stdout = _ForwardingStream(forwarder, "stdout", sys.stdout)  # type: ignore[assignment]
        sys.stderr = _ForwardingStream(forwarder, "stderr", sys.stderr)  # type: ignore[assignment]
        return forwarder

    def forward(self, stream: str, text: str) -> None:
        job = self.client.current_task_id.hex()[24:]
        msg = LogLines(job_id=job, pid=os.getpid(), name=self.client.current_function or "worker",
                       stream=stream, text=text)  # type: ignore[arg-type]
        with self.lock:
            try:
                self.sock.send_multipart(wire.encode(msg), zmq.NOBLOCK)
            except zmq.ZMQError:
                pass


class LogMonitor:
    """Driver side: prints its job's worker output as it arrives."""

    def __init__(self, ctx: zmq.Context[Any], address: str, job_id: str) -> None:
        self.sock = configure(ctx.socket(zmq.SUB))
        self.sock.setsockopt(zmq.SUBSCRIBE, job_id.encode())
        connect(self.sock, address)
        self.protocol = wire.Protocol("logs", [LogLines])
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="zray-log-monitor", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                if not self.sock.poll(100):
                    continue
                frames = self.sock.recv_multipart()
                msg, _ = self.protocol.decode(frames, 1)
                assert isinstance(msg, LogLines)
                out = sys.stderr if msg.stream == "stderr" else sys.stdout
                prefix = f"({msg.name} pid={msg.pid}) "
                out.write("".join(prefix + line + "\n" for line in msg.text.split("\n")))
                out.flush()
        except Exception:  # the context was terminated at exit
            pass
        finally:
            self.sock.close(0)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=1.0)
