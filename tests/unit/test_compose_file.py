"""docker-compose.yml against the Compose Specification's JSON schema, and
the promises of its topology (health checks, restart policies, the driver),
checked without running it (tests/system/test_compose.py runs it)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml  # type: ignore[import-untyped]

from tests import compose_file
from tests.conftest import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
# The Compose Specification's JSON schema: the shared copy next to the checkout
# when there is one, else the copy kept with the tests (a fresh clone has no ../shared).
SCHEMA = next((p for p in (REPO_ROOT.parent / "shared" / "compose-spec.json",
                           REPO_ROOT / "tests" / "data" / "compose-spec.json") if p.exists()),
              REPO_ROOT / "tests" / "data" / "compose-spec.json")
LONG_RUNNING = ("gcs0", "gcs1", "sched1", "sched2", "raylet")


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    if not SCHEMA.exists():
        pytest.skip(f"the Compose Specification schema is not at {SCHEMA}")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)  # its $schema names draft-07
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def errors(validator: jsonschema.protocols.Validator, doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_file_is_valid_against_the_compose_spec(validator: Any, doc: dict[str, Any]) -> None:
    assert errors(validator, doc) == []


def test_the_schema_check_catches_mistakes(validator: Any, doc: dict[str, Any]) -> None:
    broken = copy.deepcopy(doc)
    broken["services"]["gcs0"]["restart_policy"] = "always"  # not a service attribute
    broken["services"]["sched1"]["depends_on"] = {"gcs0": {"condition": "service_ready"}}
    found = errors(validator, broken)
    assert any("restart_policy" in e for e in found), found
    assert any(e.startswith("services/sched1/depends_on") for e in found), found


def test_services_of_the_cluster(doc: dict[str, Any]) -> None:
    services = compose_file.load(COMPOSE)
    assert set(services) == {*LONG_RUNNING, "driver"}
    assert services["raylet"].replicas == 3
    assert compose_file.start_order(services)[:2] == ["gcs0", "gcs1"]
    for name in LONG_RUNNING:
        service = services[name]
        assert service.restart == "unless-stopped", name
        assert not service.profiles, f"{name} must start with `docker compose up`"
        assert service.argv[0] == "zray", name
        assert service.healthcheck is not None
        subcommand = service.argv[1]
        assert service.healthcheck[:3] == ["zray", subcommand, "check"], service.healthcheck
    assert {target for _, target in services["gcs0"].volumes} == {"/srv/zray"}
    assert set(doc["volumes"]) == {"gcs0-data", "gcs1-data"}


def test_the_driver_runs_only_on_demand_once_the_cluster_is_healthy() -> None:
    driver = compose_file.load(COMPOSE)["driver"]
    assert driver.profiles == ["driver"]
    assert driver.restart == "no"
    assert set(driver.depends_on) == set(LONG_RUNNING)
    assert set(driver.depends_on.values()) == {"service_healthy"}
    argv = driver.run_argv(["python", "examples/monte_carlo_pi.py"])
    assert argv[:2] == ["sh", "-c"] and argv[-2:] == ["python", "examples/monte_carlo_pi.py"]
    assert '"$ZRAY_GCS_ADDRESS"' in argv[2] and 'exec "$@"' in argv[2]  # $$ unescaped


def test_the_token_and_the_insecure_switch_pass_through_to_every_service() -> None:
    plain = compose_file.load(COMPOSE).values()
    assert all(s.environment["ZRAY_TOKEN"] == s.environment["ZRAY_INSECURE"] == "" for s in plain)
    chosen = compose_file.load(COMPOSE, {"ZRAY_TOKEN": "s3cret", "ZRAY_INSECURE": "1"}).values()
    assert all(s.environment["ZRAY_TOKEN"] == "s3cret" for s in chosen)
    assert all(s.environment["ZRAY_INSECURE"] == "1" for s in chosen)


def test_interpolation() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert compose_file.interpolate("${SET}-${SET:-d}-${EMPTY:-d}-${EMPTY-d}-${UNSET-d}-$SET-$$SET",
                                    env) == "x-x-d--d-x-$SET"
    assert compose_file.interpolate({"a": ["${UNSET}"]}, env) == {"a": [""]}


def test_dockerfile(tmp_path: Path) -> None:
    image = compose_file.read_dockerfile(REPO_ROOT / "Dockerfile")
    assert image.entrypoint == ["zray"]
    assert image.workdir == "/app"
    text = (REPO_ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text and "\nUSER zray" in text
