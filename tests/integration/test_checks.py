"""The `check` commands that container health checks run (exit 0 when the
service answers, 1 otherwise), and a scheduler that advertises a host name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import poll_for, service_log_tail, short_tmpdir, stop_popen
from tests.integration.conftest import ServiceProc, start_gcs
from tests.integration.test_global_sched import registered_schedulers
from zray.common.security import new_token


def check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=60,
                          env=env)


@pytest.fixture(scope="module")
def gcs() -> Iterator[ServiceProc]:
    folder = short_tmpdir()
    service = start_gcs(folder)
    try:
        yield service
    finally:
        stop_popen(service.proc)
        shutil.rmtree(folder, ignore_errors=True)


def test_gcs_check(gcs: ServiceProc) -> None:
    ok = check("zray.services.gcs", "check", gcs.address)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: shard 0/1"), ok.stdout + ok.stderr
    down = check("zray.services.gcs", "check", f"ipc://{gcs.folder}/nobody", "--timeout", "0.3")
    assert down.returncode == 1 and "unhealthy" in down.stderr


def test_a_scheduler_bound_to_a_wildcard_registers_its_advertised_host(gcs: ServiceProc) -> None:
    log_path = os.path.join(gcs.folder, "sched.log")
    with_token = dict(os.environ, ZRAY_TOKEN=new_token())
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "zray.services.global_sched", "start", "--gcs-address", gcs.address,
             "--address", "tcp://127.0.0.1:0", "--advertise-host", "localhost"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=with_token)
    try:
        def advertised() -> str:
            found = [str(v["address"]) for v in registered_schedulers(gcs.address).values()
                     if v.get("pid") == proc.pid]
            return found[0] if found else ""

        address = poll_for(advertised, 30, what="the scheduler to register",
                           on_timeout=lambda: service_log_tail(log_path))
        assert address.startswith("tcp://localhost:"), address
        ok = check("zray.services.global_sched", "check", address.removeprefix("tcp://"), env=with_token)
        assert ok.returncode == 0 and "0 node(s)" in ok.stdout, ok.stdout + ok.stderr
        other = dict(os.environ, ZRAY_TOKEN=new_token())
        refused = check("zray.services.global_sched", "check", address, "--timeout", "0.5", env=other)
        assert refused.returncode == 1 and "another cluster token" in refused.stderr, refused.stderr
    finally:
        stop_popen(proc)
    down = check("zray.services.global_sched", "check", f"ipc://{gcs.folder}/nobody", "--timeout", "0.3")
    assert down.returncode == 1 and "did not answer" in down.stderr


def test_raylet_check_of_a_silent_address_fails(gcs: ServiceProc) -> None:
    env = dict(os.environ, ZRAY_LOCAL_ADDRESS=f"ipc://{gcs.folder}/no-raylet")
    down = subprocess.run([sys.executable, "-m", "zray.services.raylet", "check", "--timeout", "0.3"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert down.returncode == 1 and "no-raylet did not answer" in down.stderr, down.stderr
