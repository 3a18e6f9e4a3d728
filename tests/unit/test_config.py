"""Settings from the environment: prefix + NAME, with named exceptions."""

from __future__ import annotations

import pytest

from zray.common.config import GcsSettings, RayletSettings
from zray.common.errors import ConfigError


def test_environment_fills_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZRAY_TASK_EVENTS_MAX", "123")
    monkeypatch.setenv("ZRAY_RESOURCES", '{"disk": 2}')
    settings = RayletSettings.load(gcs_address="ipc:///tmp/gcs")
    assert settings.task_events_max == 123 and settings.resources == {"disk": 2}


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZRAY_GCS_FSYNC", "true")
    assert GcsSettings.load(env_prefix="ZRAY_GCS_").fsync is True
    assert GcsSettings.load(env_prefix="ZRAY_GCS_", fsync=False).fsync is False


def test_a_drivers_cluster_address_is_not_the_raylets_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZRAY_ADDRESS", "auto")
    assert RayletSettings.load(gcs_address="ipc:///tmp/gcs").address == ""
    monkeypatch.setenv("ZRAY_NODE_ADDRESS", "tcp://198.18.0.5:6400")
    assert RayletSettings.load(gcs_address="ipc:///tmp/gcs").address == "tcp://198.18.0.5:6400"


def test_bad_values_name_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZRAY_TASK_EVENTS_MAX", "many")
    with pytest.raises(ConfigError, match="RayletSettings"):
        RayletSettings.load(gcs_address="ipc:///tmp/gcs")
