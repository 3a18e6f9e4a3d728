"""The supervisor's files in a session folder: what to run, and how it runs.

`supervisor.json` (written by `zray start`): the services in start order.
`services.json` (written by the supervisor on every change): per service its
pid, restarts, last exit code; `zray status` and `zray stop` read it.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict

SPEC_FILE = "supervisor.json"
STATE_FILE = "services.json"


class ServiceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    args: list[str]  # after `python -m`
    log: str


class SupervisorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    services: list[ServiceSpec]


class ServiceState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    pid: int = 0
    alive: bool = False
    restarts: int = 0
    last_exit: int | None = None
    started_at: float = 0.0
    log: str = ""


class SupervisorState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    pid: int
    services: list[ServiceState]
    stopping: bool = False


def write_json_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_state(session_dir: str) -> SupervisorState | None:
    try:
        with open(os.path.join(session_dir, STATE_FILE)) as f:
            return SupervisorState.model_validate_json(f.read())
    except (OSError, ValueError):
        return None
