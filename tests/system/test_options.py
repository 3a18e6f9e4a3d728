"""Task options: num_returns, name, resources and GPUs (absent ones stay pending)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import zray
from tests.conftest import Gate, poll_for, zray_cluster
from zray.common.errors import ConfigError

pytestmark = pytest.mark.timeout(90)

CUSTOM = 2.0


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[dict[str, Any]]:
    with zray_cluster(warm_workers=2, num_cpus=2, num_gpus=0, resources={"custom": CUSTOM}) as info:
        yield info


@zray.remote
def echo(x: Any) -> Any:
    return x


@zray.remote(num_returns=3)
def three() -> tuple[int, int, int]:
    return 1, 2, 3


@zray.remote
def pair() -> tuple[str, str]:
    return "a", "b"


@zray.remote
def fail(text: str) -> None:
    raise RuntimeError(text)


@zray.remote
def visible_gpus() -> str | None:
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def test_num_returns_in_decorator_and_options() -> None:
    refs = three.remote()
    assert isinstance(refs, list) and len(refs) == 3
    assert zray.get(refs, timeout=30) == [1, 2, 3]
    a, b = pair.options(num_returns=2).remote()
    assert zray.get([a, b], timeout=30) == ["a", "b"]
    single = pair.remote()  # the original is unchanged by options()
    assert zray.get(single, timeout=30) == ("a", "b")


def test_num_returns_mismatch_is_reported() -> None:
    refs = echo.options(num_returns=2).remote(5)
    for ref in refs:
        with pytest.raises(ValueError, match="num_returns=2"):
            zray.get(ref, timeout=30)


def test_name_shows_in_errors() -> None:
    with pytest.raises(RuntimeError) as info:
        zray.get(fail.options(name="my-named-task").remote("boom"), timeout=30)
    assert "my-named-task" in str(info.value)
    assert "boom" in str(info.value)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ConfigError):
        echo.options(num_retruns=2)
    with pytest.raises(ConfigError):
        echo.options(num_returns=0)
    with pytest.raises(ConfigError):
        echo.options(resources={"CPU": 1}).remote(1)
    with pytest.raises(TypeError):
        zray.remote(1, 2)


def test_cluster_resources_report_custom() -> None:
    total = zray.cluster_resources()
    assert total["CPU"] == 2.0
    assert total["custom"] == CUSTOM
    assert total.get("GPU", 0.0) == 0.0


def test_custom_resource_is_granted() -> None:
    assert zray.get(echo.options(resources={"custom": 1}).remote("one"), timeout=30) == "one"
    assert zray.get(echo.options(resources={"custom": CUSTOM}).remote("all"), timeout=30) == "all"
    frac = echo.options(num_cpus=0.5, resources={"custom": 0.5}).remote("frac")
    assert zray.get(frac, timeout=30) == "frac"


def test_custom_resource_is_accounted(gate: Gate) -> None:
    holder, started = gate.blocking_task(resources={"custom": CUSTOM})
    poll_for(lambda: os.path.exists(started), 30, what="the task holding all of 'custom'")
    poll_for(lambda: zray.available_resources().get("custom", 0.0) == 0.0, 15,
             what="available 'custom' to drop to 0")
    waiter = echo.options(resources={"custom": 1}).remote("after")
    ready, pending = zray.wait([waiter], timeout=0.5)
    assert (ready, pending) == ([], [waiter])  # it cannot run while the holder has it all
    gate.open()
    assert zray.get([holder, waiter], timeout=30) == ["released", "after"]
    poll_for(lambda: zray.available_resources().get("custom") == CUSTOM, 15,
             what="'custom' to be available again")


@pytest.mark.parametrize("options", [
    {"resources": {"absent": 1}},
    {"resources": {"custom": CUSTOM + 1}},
    {"num_gpus": 1},
    {"num_cpus": 3},
], ids=["absent-resource", "more-than-total", "gpu", "too-many-cpus"])
def test_task_needing_what_no_node_has_stays_pending(options: dict[str, Any]) -> None:
    ref = echo.options(**options).remote("never")
    ready, pending = zray.wait([ref], num_returns=1, timeout=1.0)
    assert ready == [] and pending == [ref]
    with pytest.raises(zray.GetTimeoutError):
        zray.get(ref, timeout=0.2)
    # Other work is not held up by it.
    assert zray.get(echo.remote("others run"), timeout=30) == "others run"
    # Cancelling it resolves it.
    zray.cancel(ref)
    with pytest.raises(zray.TaskCancelledError):
        zray.get(ref, timeout=30)


def test_gpu_task_runs_when_the_node_has_gpus(tmp_path: Path) -> None:
    script = """
import zray
zray.init(num_cpus=1, num_gpus=2)
assert zray.cluster_resources()["GPU"] == 2.0

@zray.remote(num_gpus=1)
def gpus():
    import os
    return os.environ.get("CUDA_VISIBLE_DEVICES")

value = zray.get(gpus.remote(), timeout=60)
print("VISIBLE=" + str(value))
zray.shutdown()
"""
    from tests.conftest import run_driver

    out = run_driver(script, timeout=90)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("VISIBLE="))
    visible = line.split("=", 1)[1]
    assert visible in ("0", "1"), line
