"""Messages between raylets and global schedulers."""

from __future__ import annotations

from typing import Literal

from zray.common.messages.base import ErrorReply, Message


class NodeHeartbeat(Message):
    kind: Literal["NodeHeartbeat"] = "NodeHeartbeat"
    node_id: str
    address: str
    resources_total: dict[str, float]
    resources_available: dict[str, float]
    queue_len: int
    store_used: int
    store_capacity: int


class PlaceTask(Message):
    """A raylet spills a task it cannot run; `arg_bytes` maps node id to input bytes held there."""

    kind: Literal["PlaceTask"] = "PlaceTask"
    req_id: int
    task_id: str
    resources: dict[str, float]
    arg_bytes: dict[str, int] = {}
    strategy: str = "DEFAULT"


class TaskPlaced(Message):
    kind: Literal["TaskPlaced"] = "TaskPlaced"
    req_id: int
    task_id: str
    node_id: str
    address: str


class SchedPing(Message):
    kind: Literal["SchedPing"] = "SchedPing"
    req_id: int


class SchedPong(Message):
    kind: Literal["SchedPong"] = "SchedPong"
    req_id: int
    nodes: int


SCHED_REQUESTS: list[type[Message]] = [NodeHeartbeat, PlaceTask, SchedPing]
SCHED_REPLIES: list[type[Message]] = [TaskPlaced, SchedPong, ErrorReply]
