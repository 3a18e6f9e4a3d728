"""Actor calls that callers send straight to the actor's worker (and plain
tasks sent to leased workers, which leases.py tracks).

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
from zray.common.messages.task import plain_task
from zray.services.raylet.leases import may_go_direct
from zray.services.raylet.state import Task
from zray.services.raylet.worker_pool import WorkerProc

if TYPE_CHECKING:
    from zray.services.raylet.server import Raylet

# Results whose report never comes (its caller died first) go after this long.
EARLY_SECONDS = 60.0
EARLY_MAX = 100_000


def _early_holder(task_id: str) -> bytes:
    return b"early:" + task_id.encode()


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
            if spec.actor_id is None and not plain_task(spec):
                raise ValueError(f"direct task {spec.task_id} creates an actor")
            if spec.actor_id is None and (not may_go_direct(spec) or spec.origin_node):
                raise ValueError(f"direct task {spec.task_id} takes refs or comes from "
                                 "another node: it must go through the raylet")
            self.raylet._submit(route[0], spec, task_bufs, direct_to=worker)

    def result_first(self, result: FinishedTask, bufs: list[Any]) -> None:
        """A worker's result for a call or task sent to it directly, not reported yet."""
        if result.contains:
            # The worker drops its own hold on the refs the result nests once it
            # sent it: they are held here until the report says whose task it is.
            objects, holder = self.raylet.objects, _early_holder(result.task_id)
            for oids in result.contains.values():
                for oid in oids:
                    objects.hold(objects.entry(oid), holder)
        self.early[result.task_id] = (time.monotonic(), result, bufs)
        while len(self.early) > EARLY_MAX:
            self._unhold(self.early.popitem(last=False)[1][1])

    def expire(self) -> None:
        cutoff = time.monotonic() - EARLY_SECONDS
        while self.early:
            task_id, (arrived, result, _) = next(iter(self.early.items()))
            if arrived > cutoff:
                break
            del self.early[task_id]
            self._unhold(result)

    def take_early(self, task_id: str) -> tuple[FinishedTask, list[Any]] | None:
        """The result that came before the task's report, if one did."""
        early = self.early.pop(task_id, None)
        return None if early is None else (early[1], early[2])

    def complete_early(self, task: Task, result: FinishedTask, bufs: list[Any]) -> None:
        if result.delivered:
            self.raylet._skip_owner_push(task)
        self.raylet._complete(task, result.returns, bufs, result.contains)
        self._unhold(result)  # the sealed results hold what they nest now

    def _unhold(self, result: FinishedTask) -> None:
        if not result.contains:
            return
        raylet, holder = self.raylet, _early_holder(result.task_id)
        for oids in result.contains.values():
            for oid in oids:
                obj = raylet.objects.drop(oid, holder)
                if obj is not None:
                    raylet._maybe_free(obj)

    def started(self, task: Task, worker: WorkerProc | None) -> bool:
        """A reported call: runs on `worker` (None: the worker is gone). False
        if it is lost with its worker (neither running nor finished)."""
        early = self.take_early(task.spec.task_id)
        if early is not None:
            if worker is not None:
                self.raylet.events.running(task, worker)
            self.raylet.actors.call_finished(task)
            self.complete_early(task, *early)
            return True
        if worker is None:
            return False
        self.raylet.attach(task, worker)
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
