"""Messages on a raylet's local socket, between it and its drivers and workers."""

from __future__ import annotations

from typing import Any, Literal

from zray.common.messages.base import ErrorReply, Message
from zray.common.messages.task import ObjectLoc, Record, TaskSpec


class RegisterClient(Message):
    kind: Literal["RegisterClient"] = "RegisterClient"
    req_id: int = 0
    worker_id: str
    pid: int
    is_driver: bool
    job_id: str | None = None


class ClientRegistered(Message):
    kind: Literal["ClientRegistered"] = "ClientRegistered"
    req_id: int = 0
    node_id: str
    job_id: str
    session_dir: str
    store_dir: str
    gcs_address: str
    log_address: str
    inline_limit: int
    # Longest a create may wait for store memory before the raylet refuses it.
    store_full_timeout: float = 10.0
    # Drivers watch it: when it exits, their waits fail at once.
    raylet_pid: int = 0


class SubmitTasks(Message):
    """Fire-and-forget: failures come back as error objects for the tasks' returns.

    Task i's argument frames are the next `buf_counts[i]` payload frames; its
    ArgSpec.buf values index that slice.
    """

    kind: Literal["SubmitTasks"] = "SubmitTasks"
    specs: list[TaskSpec]
    buf_counts: list[int]


class PutObject(Message):
    """An object created by the sender: inline (one payload frame) or sealed in the store.

    `contains`: refs nested inside the value; they live at least as long as it.
    """

    kind: Literal["PutObject"] = "PutObject"
    object_id: str
    size: int
    in_store: bool
    contains: list[str] = []


class CreateObject(Message):
    """Reserve store capacity for an object the sender is about to write."""

    kind: Literal["CreateObject"] = "CreateObject"
    req_id: int
    object_id: str
    size: int


class ObjectCreated(Message):
    kind: Literal["ObjectCreated"] = "ObjectCreated"
    req_id: int
    path: str


class GetObjects(Message):
    """Ask to be sent each object (or, with fetch=False, told it is ready) once it exists."""

    kind: Literal["GetObjects"] = "GetObjects"
    object_ids: list[str]
    fetch: bool = True
    # The owners (`WORKER@NODE`, see owners.py) of the refs among these that the
    # sender borrows: the raylet asks the owner's node for objects it lacks.
    owners: dict[str, str] = {}


class ObjectsReady(Message):
    kind: Literal["ObjectsReady"] = "ObjectsReady"
    objects: list[ObjectLoc]


class ReleaseObjects(Message):
    """Reference changes of the sender, applied in order: first `borrowed`
    (refs it now holds that another process owns, keyed by owner `WORKER@NODE`),
    then `object_ids` (refs it no longer holds, owned or borrowed)."""

    kind: Literal["ReleaseObjects"] = "ReleaseObjects"
    object_ids: list[str]
    borrowed: dict[str, list[str]] = {}


class CancelTask(Message):
    kind: Literal["CancelTask"] = "CancelTask"
    task_id: str
    force: bool = False


class KillActor(Message):
    kind: Literal["KillActor"] = "KillActor"
    actor_id: str
    no_restart: bool = True


class WorkerBlocked(Message):
    """The worker's task waits in `get`: its CPU may go to another task, and
    the tasks queued behind it (`returned`) go back to the raylet."""

    kind: Literal["WorkerBlocked"] = "WorkerBlocked"
    returned: list[str] = []


class WorkerUnblocked(Message):
    kind: Literal["WorkerUnblocked"] = "WorkerUnblocked"


class ExecuteTask(Record):
    """One task for a worker; `arg_objects` locate the by-reference args."""

    spec: TaskSpec
    arg_objects: list[ObjectLoc]
    gpu_ids: list[int] = []


class ExecuteTasks(Message):
    """Raylet to worker: run these in order; frames are sliced per task as in SubmitTasks."""

    kind: Literal["ExecuteTasks"] = "ExecuteTasks"
    tasks: list[ExecuteTask]
    buf_counts: list[int]


class FinishedTask(Record):
    task_id: str
    returns: list[ObjectLoc]
    app_error: bool = False
    cancelled: bool = False
    # The worker already sent the returns to the task's owner directly.
    delivered: bool = False
    # Return object id -> refs nested inside it (kept alive as long as it lives).
    contains: dict[str, list[str]] = {}


class TaskFinished(Message):
    """Results of one or more tasks; `ObjectLoc.buf` indexes this message's frames."""

    kind: Literal["TaskFinished"] = "TaskFinished"
    results: list[FinishedTask]


class DirectCallsSent(Message):
    """Actor calls and plain tasks the sender sent straight to workers
    (`workers[i]`, hex ids: an actor's, or one leased to the sender); frames
    are sliced per call as in SubmitTasks. The raylet tracks them as running
    there, for failures, retries, cancellation and task states."""

    kind: Literal["DirectCallsSent"] = "DirectCallsSent"
    specs: list[TaskSpec]
    buf_counts: list[int]
    workers: list[str]


class ActorMoved(Message):
    """Raylet to a caller: calls to this actor may go straight to `worker_id`
    (hex); '' means through the raylet again (the actor restarts or died)."""

    kind: Literal["ActorMoved"] = "ActorMoved"
    actor_id: str
    worker_id: str = ""


class WorkerLeased(Message):
    """Raylet to a driver: its plain tasks needing exactly `resources`, with
    inline arguments only, may go straight to `worker_id` (hex), one at a time,
    until LeaseEnded. The worker's resources stay held for the driver."""

    kind: Literal["WorkerLeased"] = "WorkerLeased"
    worker_id: str
    resources: dict[str, float]


class LeaseEnded(Message):
    """Raylet to a driver: tasks no longer go straight to `worker_id`; the
    driver answers LeaseReturned (unless the worker died)."""

    kind: Literal["LeaseEnded"] = "LeaseEnded"
    worker_id: str


class LeaseReturned(Message):
    """Driver to raylet, after reporting every task it sent these workers
    (hex ids): the raylet may give them other work."""

    kind: Literal["LeaseReturned"] = "LeaseReturned"
    workers: list[str]


class LogLines(Message):
    kind: Literal["LogLines"] = "LogLines"
    job_id: str
    pid: int
    name: str
    stream: Literal["stdout", "stderr"]
    text: str


class ExitWorker(Message):
    kind: Literal["ExitWorker"] = "ExitWorker"


class DisconnectClient(Message):
    """The driver or worker is leaving; its job's objects may go."""

    kind: Literal["DisconnectClient"] = "DisconnectClient"


class NodeStatsRequest(Message):
    kind: Literal["NodeStatsRequest"] = "NodeStatsRequest"
    req_id: int


class NodeStatsReply(Message):
    kind: Literal["NodeStatsReply"] = "NodeStatsReply"
    req_id: int
    stats: dict[str, object]


class ListObjectsRequest(Message):
    """The node's largest live objects, with who keeps each alive (`zray memory`)."""

    kind: Literal["ListObjectsRequest"] = "ListObjectsRequest"
    req_id: int
    limit: int = 20


class ObjectSummary(Record):
    object_id: str
    size: int
    where: Literal["memory", "inline", "spilled", "pending"]
    owner: str
    holders: list[str]
    pinned_by_tasks: int
    contained_in: int


class ListObjectsReply(Message):
    kind: Literal["ListObjectsReply"] = "ListObjectsReply"
    req_id: int
    total: int
    objects: list[ObjectSummary]


CLIENT_TO_RAYLET: list[type[Message]] = [
    RegisterClient, SubmitTasks, PutObject, CreateObject, GetObjects, ReleaseObjects,
    CancelTask, WorkerBlocked, WorkerUnblocked, TaskFinished, LogLines, NodeStatsRequest,
    DisconnectClient, KillActor, ListObjectsRequest, DirectCallsSent, LeaseReturned,
]
RAYLET_TO_CLIENT: list[type[Message]] = [
    ClientRegistered, ObjectCreated, ObjectsReady, ExecuteTasks, ExitWorker, ErrorReply,
    NodeStatsReply, ListObjectsReply, ActorMoved, WorkerLeased, LeaseEnded,
]


def split_frames(frames: list[Any], counts: list[int]) -> list[list[Any]]:
    """Payload frames cut into consecutive slices of the given sizes."""
    if sum(counts) != len(frames):
        raise ValueError(f"buf_counts add up to {sum(counts)} but {len(frames)} frames came")
    out, pos = [], 0
    for n in counts:
        out.append(frames[pos:pos + n])
        pos += n
    return out
