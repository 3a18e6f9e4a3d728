"""Resource arithmetic and the resources a node advertises; task option parsing."""

from __future__ import annotations

import pytest

from zray.client.remote_function import TASK_OPTIONS, check_options, task_resources
from zray.common.errors import ConfigError
from zray.services.raylet import resources as res

pytestmark = pytest.mark.timeout(10)


def test_fits() -> None:
    assert res.fits({"CPU": 1.0}, {"CPU": 1.0})
    assert res.fits({"CPU": 0.3 + 0.6}, {"CPU": 0.9})  # float noise tolerated
    assert not res.fits({"CPU": 2.0}, {"CPU": 1.0})
    assert not res.fits({"GPU": 1.0}, {"CPU": 8.0})
    assert res.fits({"GPU": 0.0}, {"CPU": 1.0})  # zero requests ignored
    assert res.fits({}, {})


def test_acquire_release() -> None:
    avail = {"CPU": 4.0}
    res.acquire(avail, {"CPU": 1.5, "custom": 1.0})
    assert avail == {"CPU": 2.5, "custom": -1.0}
    res.release(avail, {"CPU": 1.5, "custom": 1.0})
    assert avail == {"CPU": 4.0, "custom": 0.0}


def test_shape() -> None:
    assert res.shape({"GPU": 1.0, "CPU": 2.0}) == (("CPU", 2.0), ("GPU", 1.0))
    assert res.shape({"CPU": 1.0, "x": 0.0}) == res.shape({"CPU": 1.0})
    assert res.shape({}) == ()


def test_node_resources_given() -> None:
    total = res.node_resources(2, 0, {"disk": 3}, 1000, 11000)
    # The store's bytes are object_store_memory; tasks may reserve a share of the rest.
    assert total == {"CPU": 2.0, "object_store_memory": 1000.0,
                     "memory": 10000 * res.TASK_MEMORY_SHARE, "disk": 3.0}
    total = res.node_resources(1.5, 2, {}, 10, 10)
    assert total["GPU"] == 2.0 and total["CPU"] == 1.5 and total["memory"] == 0.0


def test_node_resources_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,3")
    total = res.node_resources(None, None, {}, 1, 1)
    assert total["GPU"] == 2.0
    assert total["CPU"] >= 1.0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "GPU" not in res.node_resources(None, None, {}, 1, 1)


def test_node_resources_rejects_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        res.node_resources(1, 0, {"bad": -1}, 1, 1)


def test_task_resources() -> None:
    assert task_resources({}) == {"CPU": 1.0}
    assert task_resources({"num_cpus": 0}) == {}
    assert task_resources({"num_cpus": 2, "num_gpus": 1, "resources": {"custom": 0.5}}) == \
        {"CPU": 2.0, "GPU": 1.0, "custom": 0.5}
    with pytest.raises(ConfigError):
        task_resources({"resources": {"CPU": 1}})
    with pytest.raises(ConfigError):
        task_resources({"num_cpus": -1})


def test_check_options() -> None:
    check_options({"num_returns": 2, "max_retries": 0}, TASK_OPTIONS, "f")
    with pytest.raises(ConfigError, match="unknown option"):
        check_options({"num_retrns": 2}, TASK_OPTIONS, "f")
    for bad in (0, -1, "2", 1.5):
        with pytest.raises(ConfigError, match="num_returns"):
            check_options({"num_returns": bad}, TASK_OPTIONS, "f")
