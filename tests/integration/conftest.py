"""Fixtures that run one service process on real sockets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import poll_for, service_log_tail, short_tmpdir, stop_popen
from zray.common.errors import ZrayError
from zray.services.gcs.client import GcsClient


@dataclass
class ServiceProc:
    proc: subprocess.Popen[bytes]
    address: str
    folder: str
    log_path: str

    def log(self) -> str:
        return service_log_tail(self.log_path)


def start_gcs(folder: str, name: str = "gcs") -> ServiceProc:
    address = f"ipc://{folder}/{name}"
    log_path = os.path.join(folder, f"{name}.log")
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "zray.services.gcs", "start", "--address", address,
             "--data-dir", os.path.join(folder, "data")],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    service = ServiceProc(proc, address, folder, log_path)
    client = GcsClient(address, timeout=2.0)

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"GCS exited with {proc.returncode}:\n{service.log()}")
        try:
            client.ping(timeout=0.2)
            return True
        except ZrayError:
            return False

    try:
        poll_for(answers, 30, what="the GCS shard to answer a ping", on_timeout=service.log)
    except BaseException:
        stop_popen(proc)
        raise
    finally:
        client.close()
    return service


@pytest.fixture
def tmp_folder() -> Iterator[str]:
    folder = short_tmpdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def gcs() -> Iterator[ServiceProc]:
    folder = short_tmpdir()
    service = start_gcs(folder)
    try:
        yield service
    finally:
        stop_popen(service.proc)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def gcs_client(gcs: ServiceProc) -> Iterator[GcsClient]:
    client = GcsClient(gcs.address, timeout=10.0)
    yield client
    client.close()
