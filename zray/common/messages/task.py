"""Task specs and object locations: what the task path carries."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ArgSpec(Record):
    """One argument: by reference (`ref`) or by value (`buf`, a payload frame)."""

    ref: str | None = None
    buf: int = -1
    kw: str | None = None


class TaskSpec(Record):
    """Everything needed to (re-)execute a task; stored in the GCS as lineage."""

    task_id: str
    job_id: str
    parent_task_id: str
    function_id: str
    function_name: str
    args: list[ArgSpec] = []
    num_returns: int = 1
    resources: dict[str, float] = {}
    max_retries: int = 3
    retry_exceptions: bool = False
    owner: str
    name: str | None = None
    attempt: int = 0


class ObjectLoc(Record):
    """Where an object's bytes are: inline frame `buf` of this message, or the
    store (`in_store`); neither means only "it is ready" (answers to `wait`)."""

    object_id: str
    size: int
    buf: int = -1
    in_store: bool = False
    is_error: bool = False
