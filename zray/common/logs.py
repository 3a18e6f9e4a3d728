"""Logging set-up, done once by each process's entry point."""

from __future__ import annotations

import logging
import sys


def configure_logging(service: str, level: str = "INFO", node: str = "") -> None:
    where = f"{service}@{node[:8]}" if node else service
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s %(levelname)s {where} %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
