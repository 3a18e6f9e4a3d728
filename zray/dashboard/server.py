"""The dashboard's HTTP server: `/` the page, `/api/snapshot` the cluster as JSON.

Reads the GCS only when the page asks (at most once a second, shared by all
viewers), so an unwatched dashboard costs the cluster nothing.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from zray.common.errors import ZrayError
from zray.dashboard import snapshot
from zray.services.gcs.client import GcsClient

log = logging.getLogger(__name__)
STATIC = os.path.join(os.path.dirname(__file__), "static")
MIN_REFRESH = 1.0
DEFAULT_PORT = 8265


class Dashboard:
    def __init__(self, gcs_address: str) -> None:
        self.gcs = GcsClient(gcs_address, timeout=3.0)
        self.history = snapshot.History()
        self.lock = threading.Lock()
        self.cached: bytes = b""
        self.cached_at = 0.0

    def snapshot(self) -> bytes:
        from zray.util.state import actor_rows, node_rows, task_summaries

        with self.lock:
            now = time.time()
            if self.cached and now - self.cached_at < MIN_REFRESH:
                return self.cached
            try:
                doc = snapshot.build(now, node_rows(self.gcs, now), actor_rows(self.gcs),
                                     task_summaries(self.gcs), self.history)
            except ZrayError as exc:
                doc = {"time": now, "error": f"GCS unreachable: {exc}"}
            self.cached, self.cached_at = json.dumps(doc).encode(), now
            return self.cached


def make_handler(dashboard: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/api/snapshot":
                self._send(200, "application/json", dashboard.snapshot())
            elif self.path in ("/", "/index.html"):
                with open(os.path.join(STATIC, "index.html"), "rb") as f:
                    self._send(200, "text/html; charset=utf-8", f.read())
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, code: int, kind: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("dashboard: " + format, *args)

    return Handler


def serve(gcs_address: str, host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(Dashboard(gcs_address)))
    server.daemon_threads = True
    return server
