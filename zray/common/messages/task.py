"""Task specs and object locations: what the task path carries."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class ArgSpec(Record):
    """One argument: by reference (`ref`) or by value (`buf`, a payload frame)."""

    ref: str | None = None
    buf: int = -1
    kw: str | None = None


class ActorCreation(Record):
    """Set on the task that creates an actor: the constructor call plus the actor's options."""

    actor_id: str
    class_name: str
    name: str | None = None
    namespace: str = "default"
    detached: bool = False
    max_restarts: int = 0
    max_task_retries: int = 0
    max_concurrency: int = 1
    is_async: bool = False
    methods: dict[str, int] = {}


class TaskSpec(Record):
    """Everything needed to (re-)execute a task; stored in the GCS as lineage.

    An actor's constructor is a task with `actor_creation`; a method call names
    `actor_id` and `method`.
    """

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
    actor_creation: ActorCreation | None = None
    actor_id: str | None = None
    method: str | None = None
    # Refs nested inside by-value arguments: kept alive until the task is done.
    nested_refs: list[str] = []
    # Placement: "DEFAULT" (local first, spill when busy) or "SPREAD"; a node
    # affinity names a node id (soft: elsewhere if that node cannot run it).
    strategy: str = "DEFAULT"
    affinity_node: str | None = None
    affinity_soft: bool = False
    # Set by the raylet that runs a task another node forwarded to it.
    origin_node: str = ""


class ObjectLoc(Record):
    """Where an object's bytes are: inline frame `buf` of this message, or the
    store (`in_store`); neither means only "it is ready" (answers to `wait`)."""

    object_id: str
    size: int
    buf: int = -1
    in_store: bool = False
    is_error: bool = False


def direct_owner(spec: TaskSpec) -> str:
    """Whom the worker may hand a task's results to itself: the owner, when it is
    on the worker's node ("" for a task forwarded from another node: its results
    go back through the raylets)."""
    return "" if spec.origin_node else spec.owner
