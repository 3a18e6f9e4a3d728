"""Messages between raylets: forwarded tasks, their results, object transfer.

Each raylet binds one ROUTER for its peers and connects one DEALER to each
(identity: its node id). Requests go out on the DEALER; answers come back
on the same connection through the peer's ROUTER.
"""

from __future__ import annotations

from typing import Literal

from zray.common.messages.base import ErrorReply, Message
from zray.common.messages.raylet import KillActor
from zray.common.messages.task import ObjectLoc, Record, TaskSpec


class RemoteArg(Record):
    """Where a forwarded task's argument is: inline frame `buf`, or the store of
    the node at `address` (pull it from there)."""

    object_id: str
    size: int
    buf: int = -1
    address: str = ""
    is_error: bool = False


class ForwardedTask(Record):
    spec: TaskSpec
    args: list[RemoteArg] = []


class ForwardTasks(Message):
    """Run these tasks here; frames: each task's by-value arguments, then its
    inline ref arguments, per `buf_counts`."""

    kind: Literal["ForwardTasks"] = "ForwardTasks"
    tasks: list[ForwardedTask]
    buf_counts: list[int]


class RemoteResult(Record):
    """A forwarded task's outcome: returns inline (frames) or kept in the
    store of the node that ran it (`in_store`)."""

    task_id: str
    returns: list[ObjectLoc]
    app_error: bool = False
    contains: dict[str, list[str]] = {}
    # Arguments this node could not fetch: the task did not run; the owner's
    # node reruns it once they are back (rebuilt if their node died).
    lost_args: list[str] = []
    # Refs nested in the task's arguments that the node that ran it still holds
    # (a worker or an object there keeps them): the owner's node now counts that
    # node as a borrower, before it unpins them for the finished task.
    borrowed: list[str] = []
    # Refs nested in the returns that the node that ran it now holds on behalf
    # of the receiving node (which keeps the returns), until it releases them.
    kept: list[str] = []
    # Objects of this node that the returns nest (e.g. a put's ref returned in a
    # list): inline ones as frames, store ones kept here for the owner's node.
    nested: list[ObjectLoc] = []


class TasksDone(Message):
    kind: Literal["TasksDone"] = "TasksDone"
    node_id: str
    results: list[RemoteResult]


class PullObject(Message):
    kind: Literal["PullObject"] = "PullObject"
    object_id: str


class ObjectChunk(Message):
    """`length` bytes at `offset` of an object of `size` bytes, in the one frame."""

    kind: Literal["ObjectChunk"] = "ObjectChunk"
    object_id: str
    size: int
    offset: int
    is_error: bool = False


class ObjectMissing(Message):
    kind: Literal["ObjectMissing"] = "ObjectMissing"
    object_id: str
    reason: str


class FreeObjects(Message):
    """The owner's node let go of these copies held for it."""

    kind: Literal["FreeObjects"] = "FreeObjects"
    object_ids: list[str]


class BorrowObjects(Message):
    """Node `node_id` now holds refs to these objects (`borrowed`) and no longer
    holds these (`released`): the receiving node counts it as one holder while
    it does. Batched per loop turn."""

    kind: Literal["BorrowObjects"] = "BorrowObjects"
    node_id: str
    borrowed: list[str] = []
    released: list[str] = []


class ResolveObjects(Message):
    """Send back each object (or where it is) once it exists: the sender's node
    holds refs that the receiving node's processes own (`owners`: object id ->
    owner worker id hex)."""

    kind: Literal["ResolveObjects"] = "ResolveObjects"
    owners: dict[str, str]


class ResolvedObject(RemoteArg):
    """An object a node asked for: inline in frame `buf`, or in the store of
    the node at `address` (pull it from there)."""


class ObjectsResolved(Message):
    kind: Literal["ObjectsResolved"] = "ObjectsResolved"
    objects: list[ResolvedObject]


class CancelForwarded(Message):
    kind: Literal["CancelForwarded"] = "CancelForwarded"
    task_id: str
    force: bool = False


# KillActor: zray.kill() of an actor this node hosts, from a caller on another node.
NODE_REQUESTS: list[type[Message]] = [ForwardTasks, PullObject, FreeObjects, CancelForwarded,
                                      KillActor, BorrowObjects, ResolveObjects]
# BorrowObjects also comes back on the connection a node forwarded tasks on,
# after the TasksDone that registered those borrows.
NODE_REPLIES: list[type[Message]] = [TasksDone, ObjectChunk, ObjectMissing, ErrorReply,
                                     BorrowObjects, ObjectsResolved]
