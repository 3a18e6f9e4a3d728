"""print() inside a task shows in the driver's output, prefixed by the task name and pid."""

from __future__ import annotations

import re

import pytest

from tests.conftest import run_driver

pytestmark = pytest.mark.timeout(120)

DRIVER = r'''
import io
import os
import sys
import time

import zray


class Tee(io.TextIOBase):
    """Records what reaches this stream, so the driver can wait for the lines."""

    def __init__(self, inner):
        self.inner = inner
        self.seen = ""

    def write(self, text):
        self.seen += text
        return self.inner.write(text)

    def flush(self):
        self.inner.flush()


sys.stdout = Tee(sys.stdout)
sys.stderr = Tee(sys.stderr)
zray.init(num_cpus=2)


@zray.remote
def shout(word):
    print("marker-out", word)
    print("marker-err", word, file=sys.stderr)
    print("multi-1\nmulti-2")
    return os.getpid()


@zray.remote
def whisper():
    sys.stdout.write("no newline at the end")
    return os.getpid()


pid = zray.get(shout.remote("hello"), timeout=60)
named_pid = zray.get(shout.options(name="custom-name").remote("named"), timeout=60)
partial_pid = zray.get(whisper.remote(), timeout=60)
sys.stdout.write(f"TASK_PIDS {pid} {named_pid} {partial_pid}\n")  # one write: no interleaving
sys.stdout.flush()

deadline = time.monotonic() + 5
wanted = ["marker-out hello", "marker-out named", "multi-2", "no newline at the end"]
while time.monotonic() < deadline:
    if all(w in sys.stdout.seen for w in wanted) and "marker-err hello" in sys.stderr.seen:
        break
    time.sleep(0.05)
zray.shutdown()
print("DRIVER_DONE", flush=True)
'''


@pytest.fixture(scope="module")
def driver_output() -> tuple[str, str]:
    result = run_driver(DRIVER, timeout=110)
    assert result.returncode == 0, f"driver failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    assert "DRIVER_DONE" in result.stdout
    return result.stdout, result.stderr


def pids(stdout: str) -> list[str]:
    line = next(line for line in stdout.splitlines() if line.startswith("TASK_PIDS"))
    return line.split()[1:]


def test_stdout_line_is_prefixed_with_task_and_pid(driver_output: tuple[str, str]) -> None:
    stdout, _ = driver_output
    pid = pids(stdout)[0]
    pattern = rf"^\((?:[\w.<>]*\.)?shout pid={pid}\) marker-out hello$"
    assert re.search(pattern, stdout, re.M), stdout


def test_task_name_option_is_the_prefix(driver_output: tuple[str, str]) -> None:
    stdout, _ = driver_output
    pid = pids(stdout)[1]
    assert re.search(rf"^\(custom-name pid={pid}\) marker-out named$", stdout, re.M), stdout


def test_stderr_goes_to_the_driver_stderr(driver_output: tuple[str, str]) -> None:
    stdout, stderr = driver_output
    pid = pids(stdout)[0]
    assert re.search(rf"^\((?:[\w.<>]*\.)?shout pid={pid}\) marker-err hello$", stderr, re.M), stderr
    assert "marker-err" not in stdout


def test_every_line_is_prefixed(driver_output: tuple[str, str]) -> None:
    stdout, _ = driver_output
    pid = pids(stdout)[0]
    for line in ("multi-1", "multi-2"):
        assert re.search(rf"^\((?:[\w.<>]*\.)?shout pid={pid}\) {line}$", stdout, re.M), stdout


def test_output_without_final_newline_arrives(driver_output: tuple[str, str]) -> None:
    stdout, _ = driver_output
    pid = pids(stdout)[2]
    assert re.search(rf"^\((?:[\w.<>]*\.)?whisper pid={pid}\) no newline at the end$", stdout, re.M), stdout
