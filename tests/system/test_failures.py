"""Worker death mid-task: retried up to max_retries, then WorkerCrashedError;
application exceptions retried only with retry_exceptions."""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

import pytest

import zray

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("cluster")]


def attempts(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def _record_attempt(log: str) -> None:
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")


def _die(how: str) -> None:
    if how == "exit":
        os._exit(3)
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "segfault":
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    raise AssertionError(f"unknown way to die: {how}")


@zray.remote
def always_dies(log: str, how: str) -> str:
    _record_attempt(log)
    _die(how)
    return "unreachable"


@zray.remote
def dies_on_first_attempt(log: str, marker: str) -> str:
    _record_attempt(log)
    if not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    return "survived"


@zray.remote
def flaky(log: str, failures: int) -> str:
    _record_attempt(log)
    if attempts(Path(log)) <= failures:
        raise ValueError(f"attempt {attempts(Path(log))} fails")
    return f"succeeded on attempt {attempts(Path(log))}"


@zray.remote
def echo(x: object) -> object:
    return x


@pytest.mark.parametrize("how", ["exit", "sigkill", "segfault"])
def test_worker_death_is_retried_then_reported(how: str, tmp_path: Path) -> None:
    log = tmp_path / "attempts"
    ref = always_dies.options(max_retries=2).remote(str(log), how)
    with pytest.raises(zray.WorkerCrashedError) as info:
        zray.get(ref, timeout=90)
    assert attempts(log) == 3  # the first run and two retries
    assert len(set(log.read_text().split())) == 3  # each on a fresh worker
    text = str(info.value)
    assert "always_dies" in text
    assert "max_retries=2" in text
    expected = {"exit": "code 3", "sigkill": "SIGKILL", "segfault": "SIGSEGV"}[how]
    assert expected in text
    # The pool recovers: later tasks run.
    assert zray.get(echo.remote(how), timeout=60) == how


def test_no_retries(tmp_path: Path) -> None:
    log = tmp_path / "attempts"
    with pytest.raises(zray.WorkerCrashedError):
        zray.get(always_dies.options(max_retries=0).remote(str(log), "exit"), timeout=60)
    assert attempts(log) == 1


def test_crash_on_first_attempt_only_succeeds(tmp_path: Path) -> None:
    log = tmp_path / "attempts"
    ref = dies_on_first_attempt.remote(str(log), str(tmp_path / "crashed-once"))
    assert zray.get(ref, timeout=60) == "survived"
    assert attempts(log) == 2


def test_dependents_of_a_crashed_task_get_the_error(tmp_path: Path) -> None:
    failed = always_dies.options(max_retries=0).remote(str(tmp_path / "log"), "exit")
    dependent = echo.remote(failed)
    with pytest.raises(zray.WorkerCrashedError):
        zray.get(dependent, timeout=60)


def test_app_exceptions_are_not_retried_by_default(tmp_path: Path) -> None:
    log = tmp_path / "attempts"
    with pytest.raises(ValueError, match="attempt 1 fails"):
        zray.get(flaky.options(max_retries=5).remote(str(log), 2), timeout=60)
    assert attempts(log) == 1


def test_retry_exceptions_retries_app_exceptions(tmp_path: Path) -> None:
    log = tmp_path / "attempts"
    ref = flaky.options(max_retries=3, retry_exceptions=True).remote(str(log), 2)
    assert zray.get(ref, timeout=60) == "succeeded on attempt 3"
    assert attempts(log) == 3


def test_retry_exceptions_gives_up_after_max_retries(tmp_path: Path) -> None:
    log = tmp_path / "attempts"
    ref = flaky.options(max_retries=1, retry_exceptions=True).remote(str(log), 10)
    with pytest.raises(ValueError, match="attempt 2 fails"):
        zray.get(ref, timeout=60)
    assert attempts(log) == 2


def test_many_crashes_in_parallel(tmp_path: Path) -> None:
    refs = [always_dies.options(max_retries=1).remote(str(tmp_path / f"log{i}"), "exit")
            for i in range(4)]
    for ref in refs:
        with pytest.raises(zray.WorkerCrashedError):
            zray.get(ref, timeout=90)
    for i in range(4):
        assert attempts(tmp_path / f"log{i}") == 2
    assert zray.get([echo.remote(i) for i in range(10)], timeout=60) == list(range(10))
