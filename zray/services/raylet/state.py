"""The raylet's records of tasks, objects and clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zray.common.messages.task import TaskSpec


@dataclass(eq=False, slots=True)
class Task:
    spec: TaskSpec
    bufs: list[Any]
    owner: bytes
    resources: dict[str, float]
    missing: int = 0
    worker: Any = None
    retries_left: int = 0
    cancelled: bool = False
    dispatched_at: float = 0.0
    # Set while another node runs it for this one.
    forwarded_to: str = ""
    # Sent to its worker by its driver (leases.py): the raylet cannot tell
    # whether it started before a task it knows to be ahead of it ended.
    sent_direct: bool = False


@dataclass(eq=False, slots=True)
class LocalObject:
    object_id: str
    ready: bool = False
    size: int = 0
    data: Any = None
    in_store: bool = False
    is_error: bool = False
    owner: bytes | None = None
    job_id: str = ""
    # The node whose store keeps the bytes for this one ("": here or inline).
    location: str = ""
    waiting_tasks: list[Task] = field(default_factory=list)
    waiting_clients: list[tuple[bytes, bool]] = field(default_factory=list)
    # Lifetime: references per process (worker id -> count; the owner's own
    # refs count as one hold), pending tasks that take it as an argument or
    # nest it in theirs, and live objects that nest it.
    holders: dict[bytes, int] = field(default_factory=dict)
    pins: int = 0
    contained_in: int = 0
    contains: list[str] = field(default_factory=list)
    # Memory: spilled to disk (not in the store), and when last used (LRU).
    spilled: bool = False
    last_used: float = 0.0


@dataclass(eq=False, slots=True)
class Client:
    route: bytes
    pid: int
    is_driver: bool
    job_id: str
