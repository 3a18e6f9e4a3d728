"""A worker's log rotates by size: fd 1 and 2 move to a fresh file, older parts shift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import os, sys
from zray.client.log_files import RotatingLog
log = RotatingLog.for_stdout()
assert log is not None
for i in range(50):
    line = f"line {i:03d} " + "x" * 80 + "\\n"
    sys.stdout.write(line)
    log.wrote(len(line))
sys.stdout.flush()
os.write(2, b"native stderr after rotation\\n")
"""


def test_rotation_keeps_a_bounded_number_of_parts(tmp_path: Path) -> None:
    path = tmp_path / "worker-abc.log"
    with open(path, "ab") as out:
        subprocess.run([sys.executable, "-c", SCRIPT], stdout=out, stderr=out, check=True,
                       env={"ZRAY_WORKER_LOG_MAX_BYTES": "1000", "ZRAY_WORKER_LOG_BACKUPS": "2",
                            "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    parts = sorted(p.name for p in tmp_path.iterdir())
    assert parts == ["worker-abc.log", "worker-abc.log.1", "worker-abc.log.2"], parts
    assert all(p.stat().st_size <= 1200 for p in tmp_path.iterdir())
    current = path.read_text()
    assert "line 049" in current and "native stderr after rotation" in current
    assert "line 000" not in current
