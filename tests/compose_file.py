"""What `docker compose` would run for docker-compose.yml, without Docker.

Reads the compose file the way Compose does where the tests need it:
variable interpolation (`${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$$`),
the image's ENTRYPOINT and WORKDIR from the Dockerfile, a service's own
`entrypoint`, `command`, `environment`, `healthcheck`, `depends_on`, named
volumes, `shm_size`, `deploy.replicas` and `profiles`. The result is plain
argv lists and dicts that tests/netns.py runs.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

_VARIABLE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_SIZE = re.compile(r"^(\d+)\s*([kmg]?)b?$", re.IGNORECASE)


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose variable substitution over a loaded YAML tree."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: _substitute(m, env), value)
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


def _substitute(match: re.Match[str], env: dict[str, str]) -> str:
    escaped, name, operator, default, bare = match.groups()
    if escaped:
        return "$"
    name = name or bare
    value = env.get(name)
    if operator == ":-" and not value:
        return default
    if operator == "-" and value is None:
        return default
    return value or ""


def size_bytes(text: str | int) -> int:
    if isinstance(text, int):
        return text
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return int(match.group(1)) * 1024 ** " kmg".index(match.group(2).lower() or " ")


@dataclass(frozen=True)
class Image:
    entrypoint: list[str]
    workdir: str
    env: dict[str, str]


def read_dockerfile(path: Path) -> Image:
    """ENTRYPOINT (exec form), the last WORKDIR and the ENV of a Dockerfile."""
    text = re.sub(r"\\\n", " ", path.read_text())
    entrypoint: list[str] = []
    workdir = "/"
    env: dict[str, str] = {}
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        if len(words) < 2 or line.lstrip().startswith("#"):
            continue
        instruction, rest = words[0].upper(), words[1]
        if instruction == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif instruction == "WORKDIR":
            workdir = rest.strip()
        elif instruction == "ENV":
            env.update(dict(item.split("=", 1) for item in shlex.split(rest)))
    return Image(entrypoint, workdir, env)


@dataclass
class Service:
    name: str
    argv: list[str]  # entrypoint + command
    entrypoint: list[str]
    environment: dict[str, str]
    healthcheck: list[str] | None  # argv run inside the container
    depends_on: dict[str, str]  # service -> condition
    volumes: list[tuple[str, str]]  # (named volume, target in the container)
    shm_size: int | None
    replicas: int
    profiles: list[str]
    restart: str
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def run_argv(self, command: list[str]) -> list[str]:
        """The argv of `docker compose run SERVICE COMMAND...`."""
        return self.entrypoint + command


def _argv(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def _environment(value: Any) -> dict[str, str]:
    if isinstance(value, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in value)
    return {str(k): "" if v is None else str(v) for k, v in (value or {}).items()}


def _healthcheck(value: dict[str, Any] | None) -> list[str] | None:
    if not value or value.get("disable"):
        return None
    test = value["test"]
    if isinstance(test, str):
        return ["sh", "-c", test]
    if test[0] == "CMD":
        return [str(t) for t in test[1:]]
    if test[0] == "CMD-SHELL":
        return ["sh", "-c", str(test[1])]
    return None  # ["NONE"]


def _depends_on(value: Any) -> dict[str, str]:
    if isinstance(value, list):
        return dict.fromkeys(value, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in (value or {}).items()}


def _volumes(value: list[Any] | None) -> list[tuple[str, str]]:
    found = []
    for item in value or []:
        if isinstance(item, str):
            source, target = item.split(":")[:2]
        else:
            source, target = item["source"], item["target"]
        found.append((source, target))
    return found


def load(compose_path: Path, env: dict[str, str] | None = None) -> dict[str, Service]:
    """Services of a compose file, interpolated with `env` (default: none set)."""
    doc = interpolate(yaml.safe_load(compose_path.read_text()), env or {})
    image = read_dockerfile(compose_path.parent / "Dockerfile")
    services = {}
    for name, spec in doc["services"].items():
        entrypoint = _argv(spec["entrypoint"]) if "entrypoint" in spec else image.entrypoint
        shm = spec.get("shm_size")
        services[name] = Service(
            name=name, argv=entrypoint + _argv(spec.get("command")), entrypoint=entrypoint,
            environment={**image.env, **_environment(spec.get("environment"))},
            healthcheck=_healthcheck(spec.get("healthcheck")),
            depends_on=_depends_on(spec.get("depends_on")), volumes=_volumes(spec.get("volumes")),
            shm_size=None if shm is None else size_bytes(shm),
            replicas=int(spec.get("deploy", {}).get("replicas", spec.get("scale", 1))),
            profiles=list(spec.get("profiles", [])), restart=str(spec.get("restart", "no")),
            raw=spec)
    return services


def image_workdir(compose_path: Path) -> str:
    return read_dockerfile(compose_path.parent / "Dockerfile").workdir


def start_order(services: dict[str, Service]) -> list[str]:
    """Services of `docker compose up` (no profile), dependencies first."""
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in path:
            raise ValueError(f"depends_on cycle: {' -> '.join(path + (name,))}")
        for dep in services[name].depends_on:
            visit(dep, path + (name,))
        order.append(name)

    for name, service in services.items():
        if not service.profiles:
            visit(name, ())
    return order
