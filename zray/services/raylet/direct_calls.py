"""Actor calls that callers send straight to the actor's worker.

Once an actor is alive, the raylet tells each local caller whose call it
dispatches where the actor's worker is (ActorMoved). The caller then sends
its calls to that worker itself, and the worker answers the caller directly:
two hops per call instead of three, and no raylet wake-up on the way. The
caller reports the calls here in batches (DirectCallsSent), off the call's
path; the raylet tracks each reported call as running on that worker, so a
worker's death retries or fails it like any call in flight, and cancellation
and task states work as for calls the raylet dispatched itself.

A call's report (from the caller) and its result (from the worker) race: a
result that arrives first waits here until the report does. A report naming
a worker that is gone finds the result here if the call finished, and is
otherwise a call lost with its worker.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from zray.common.messages.base import Message
from zray.common.messages.raylet import ActorMoved, DirectCallsSent, FinishedTask, split_frames
from zray.services.raylet.state import Task
from zray.services.raylet.worker_pool import WorkerProc

if TYPE_CHECKING:
    from zray.services.raylet.server import Raylet

# Results whose report never comes (its caller died first) go after this long.
EARLY_SECONDS = 60.0
EARLY_MAX = 100_000


class DirectCalls:
    def __init__(self, raylet: Raylet) -> None:
        self.raylet = raylet
        # task id -> (arrival, result, frames of its TaskFinished), oldest first.
        self.early: OrderedDict[str, tuple[float, FinishedTask, list[Any]]] = OrderedDict()

    # reports and results -----------------------------------------------------
    def on_sent(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, DirectCallsSent)
        if not len(msg.specs) == len(msg.buf_counts) == len(msg.workers):
            raise ValueError(f"{len(msg.specs)} specs, {len(msg.buf_counts)} buf_counts and "
                             f"{len(msg.workers)} workers")
        for spec, task_bufs, worker in zip(msg.specs, split_frames(bufs, msg.buf_counts),
                                           msg.workers, strict=True):
            if spec.actor_id is None:
                raise ValueError(f"direct call {spec.task_id} names no actor")
            self.raylet._submit(route[0], spec, task_bufs, direct_to=worker)

    def result_first(self, result: FinishedTask, bufs: list[Any]) -> None:
        """An actor worker's result for a call not reported yet."""
        self.early[result.task_id] = (time.monotonic(), result, bufs)
        while len(self.early) > EARLY_MAX:
            self.early.popitem(last=False)

    def expire(self) -> None:
        cutoff = time.monotonic() - EARLY_SECONDS
        while self.early:
            task_id, (arrived, _, _) = next(iter(self.early.items()))
            if arrived > cutoff:
                break
            del self.early[task_id]

    def started(self, task: Task, worker: WorkerProc | None) -> bool:
        """A reported call: runs on `worker` (None: the worker is gone). False
        if it is lost with its worker (neither running nor finished)."""
        early = self.early.pop(task.spec.task_id, None)
        if early is not None:
            _, result, bufs = early
            if worker is not None:
                self.raylet.events.running(task, worker)
            self.raylet.actors.call_finished(task)
            if result.delivered:
                self.raylet._skip_owner_push(task)
            self.raylet._complete(task, result.returns, bufs, result.contains)
            return True
        if worker is None:
            return False
        task.worker = worker
        task.dispatched_at = time.monotonic()
        self.raylet.events.running(task, worker)
        worker.tasks.append(task)
        return True

    # telling callers where an actor is -----------------------------------------
    def tell(self, actor_id: str, told: set[bytes], owner: bytes, worker: WorkerProc) -> None:
        """Let a local caller send its next calls straight to the worker."""
        if owner in told or owner not in self.raylet.clients:
            return
        told.add(owner)
        self.raylet.send(self.raylet.router, [owner],
                         ActorMoved(actor_id=actor_id, worker_id=worker.worker_id.hex()))

    def untell(self, actor_id: str, told: set[bytes]) -> None:
        """The actor's worker is gone: its callers go through the raylet again."""
        for owner in told:
            if owner in self.raylet.clients:
                self.raylet.send(self.raylet.router, [owner], ActorMoved(actor_id=actor_id))
        told.clear()
