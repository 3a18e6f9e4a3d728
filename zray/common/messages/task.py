"""Task specs and object locations: what the task path carries."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, TypeAdapter
from pydantic.dataclasses import dataclass


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


COMPACT = ConfigDict(extra="forbid")


class CompactRecord:
    """The BaseModel methods the code calls, for the slotted records below."""

    __slots__ = ()
    __pydantic_serializer__: ClassVar[Any]  # set by pydantic's dataclass

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Self:
        return dataclasses.replace(self, **(update or {}))  # type: ignore[type-var]

    def model_dump_json(self) -> str:
        return _adapter(type(self)).dump_json(self).decode()

    @classmethod
    def model_validate_json(cls, data: str | bytes) -> Self:
        return _adapter(cls).validate_json(data)

    @classmethod
    def construct(cls, **values: Any) -> Self:
        """Built without validation, from fields zray's own code produced."""
        build = _CONSTRUCTORS.get(cls)
        if build is None:
            build = _CONSTRUCTORS[cls] = _constructor(cls)
        return build(**values)  # type: ignore[no-any-return]


_ADAPTERS: dict[type, TypeAdapter[Any]] = {}
_DEFAULTS: dict[type, dict[str, Any]] = {}
_CONSTRUCTORS: dict[type, Any] = {}
_UNSET = object()


def _adapter(cls: type) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return adapter


def _constructor(cls: type) -> Any:
    """A function setting each field of `cls` from its keyword or its default.

    Generated once per class: the task path builds a spec per task, and a
    loop over the fields costs several times what straight-line code does."""
    defaults = _defaults(cls)
    env: dict[str, Any] = {"_new": object.__new__, "_set": object.__setattr__, "_cls": cls,
                           "_UNSET": _UNSET}
    params, body = [], ["    obj = _new(_cls)"]
    for i, (name, default) in enumerate(defaults.items()):
        if callable(default):  # a factory for a mutable default: a fresh value each time
            env[f"_f{i}"] = default
            params.append(f"{name}=_UNSET")
            body.append(f"    _set(obj, {name!r}, _f{i}() if {name} is _UNSET else {name})")
        else:
            env[f"_d{i}"] = default
            params.append(f"{name}=_d{i}")
            body.append(f"    _set(obj, {name!r}, {name})")
    source = f"def build(*, {', '.join(params)}):\n" + "\n".join(body) + "\n    return obj\n"
    exec(source, env)  # noqa: S102 (source built from the dataclass's own field names)
    return env["build"]


def _defaults(cls: type) -> dict[str, Any]:
    """Field name -> its default, a factory for a mutable one, or None when required."""
    known = _DEFAULTS.get(cls)
    if known is None:
        known = _DEFAULTS[cls] = {
            f.name: f.default_factory if f.default_factory is not dataclasses.MISSING
            else None if f.default is dataclasses.MISSING else f.default
            for f in dataclasses.fields(cls)}
    return known


@dataclass(config=COMPACT, frozen=True, slots=True)
class ArgSpec(CompactRecord):
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


@dataclass(config=COMPACT, frozen=True, slots=True)
class TaskSpec(CompactRecord):
    """Everything needed to (re-)execute a task; stored in the GCS as lineage.

    An actor's constructor is a task with `actor_creation`; a method call names
    `actor_id` and `method`.

    A raylet keeps one per queued or running task, so it is a slotted
    dataclass (about a sixth of a model's memory), with the model methods
    the code uses.
    """

    task_id: str
    job_id: str
    parent_task_id: str
    function_id: str
    function_name: str
    owner: str
    args: list[ArgSpec] = field(default_factory=list)
    num_returns: int = 1
    resources: dict[str, float] = field(default_factory=dict)
    max_retries: int = 3
    retry_exceptions: bool = False
    name: str | None = None
    attempt: int = 0
    actor_creation: ActorCreation | None = None
    actor_id: str | None = None
    method: str | None = None
    # Refs nested inside by-value arguments: kept alive until the task is done.
    nested_refs: list[str] = field(default_factory=list)
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


def plain_task(spec: TaskSpec) -> bool:
    """Neither an actor's creation nor one of its calls."""
    return spec.actor_id is None and spec.actor_creation is None
