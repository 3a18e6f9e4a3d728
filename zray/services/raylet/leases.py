"""Workers leased to drivers, for plain tasks sent straight to them.

A driver that runs plain tasks one after another would otherwise pay three
hops per task (driver, raylet, worker, back to the driver) and a raylet
wake-up on its path. When a driver's task leaves a worker idle and nothing
else waits here, the raylet keeps the worker's resources held for that
driver and tells it so (WorkerLeased). The driver then sends its next task
of the same shape, with inline arguments only, to the worker itself, one at
a time, and reports it afterwards as it reports direct actor calls
(DirectCallsSent); the raylet tracks the reported task as running there, so
a worker's death retries it and cancellation and task states work as ever.

A lease ends when other work waits for resources here, when it went unused
for `lease_idle_seconds`, when its worker dies or its driver goes. The
raylet tells the driver (LeaseEnded), which answers once it has reported
every task it sent the worker (LeaseReturned, after the reports on the same
socket); only then does the worker take other work. So a task sent just
before the driver heard can never run behind, say, the constructor of an
actor the worker was given meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zray.common.errors import WorkerCrashedError
from zray.common.messages.base import Message
from zray.common.messages.raylet import LeaseEnded, LeaseReturned, WorkerLeased
from zray.common.messages.task import TaskSpec, plain_task
from zray.services.raylet.state import Client, Task
from zray.services.raylet.worker_pool import WorkerProc

if TYPE_CHECKING:
    from zray.services.raylet.server import Raylet

log = logging.getLogger(__name__)

MAX_DEATHS = 1_000


def leasable(spec: TaskSpec, resources: dict[str, float], client: Client | None) -> bool:
    """Whether a worker that just ran this task may be leased to its owner."""
    return client is not None and client.is_driver and plain_task(spec) \
        and not spec.origin_node and spec.strategy == "DEFAULT" and spec.affinity_node is None \
        and set(resources) <= {"CPU"}


def may_go_direct(spec: TaskSpec) -> bool:
    """Whether a reported plain task could have been sent straight to a worker:
    the raylet had nothing to resolve for it (no refs among its arguments)."""
    return all(a.ref is None for a in spec.args) and not spec.nested_refs


def _plain_of(owner: bytes) -> Callable[[Task], bool]:
    return lambda task: task.owner == owner and plain_task(task.spec)


class Leases:
    def __init__(self, raylet: Raylet, idle_seconds: float) -> None:
        self.raylet = raylet
        self.idle_seconds = idle_seconds
        self.by_owner: dict[bytes, WorkerProc] = {}
        # Direct tasks a blocked worker handed back before their reports came
        # (task id -> its owner, whose going forgets them: no report will come).
        self.handed_back: dict[str, bytes] = {}
        # Recently dead leased workers (hex id -> the worker, how it died), for
        # the reports of tasks sent to them that come after their deaths.
        self.deaths: OrderedDict[str, tuple[WorkerProc, str]] = OrderedDict()

    # granting and ending ---------------------------------------------------
    def keep(self, task: Task, worker: WorkerProc) -> bool:
        """`worker` just ran out of tasks: True if it stays (or becomes) leased."""
        now = time.monotonic()
        if worker.leased_to is not None:
            worker.lease_used = now
            return True
        raylet = self.raylet
        owner = task.owner
        if not self.idle_seconds or owner in self.by_owner or len(raylet.queue) \
                or worker.blocked or worker.killed or worker.gpu_ids or worker.lease is None \
                or worker.worker_id not in raylet.pool.workers \
                or not leasable(task.spec, task.resources, raylet.clients.get(owner)):
            return False
        worker.leased_to = owner
        worker.ever_leased = True
        worker.lease_used = now
        self.by_owner[owner] = worker
        raylet.send(raylet.router, [owner], WorkerLeased(worker_id=worker.worker_id.hex(),
                                                         resources=dict(worker.lease)))
        return True

    def end(self, worker: WorkerProc) -> None:
        """End the worker's lease: the driver stops sending it tasks and returns
        it once the raylet has heard of every task it sent there."""
        owner = worker.leased_to
        if owner is None or worker.lease_ending:
            return
        if self.by_owner.get(owner) is worker:
            del self.by_owner[owner]
        raylet = self.raylet
        if owner in raylet.clients and worker.worker_id in raylet.pool.workers:
            worker.lease_ending = True
            raylet.send(raylet.router, [owner], LeaseEnded(worker_id=worker.worker_id.hex()))
            return
        self._release(worker)

    def on_returned(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, LeaseReturned)
        for worker_hex in msg.workers:
            try:
                worker = self.raylet.pool.workers.get(bytes.fromhex(worker_hex))
            except ValueError:
                raise ValueError(f"LeaseReturned names {worker_hex!r}, not a worker id") from None
            if worker is not None and worker.leased_to == route[0] and worker.lease_ending:
                self._release(worker)
        self.raylet.schedule_soon()

    def died(self, worker: WorkerProc, how: str) -> None:
        """The worker is gone: its driver goes through the raylet again."""
        if worker.ever_leased:
            self.deaths[worker.worker_id.hex()] = \
                (worker, f"the worker (pid {worker.pid}) {how}; see its log {worker.log_path}")
            while len(self.deaths) > MAX_DEATHS:
                self.deaths.popitem(last=False)
        owner = worker.leased_to
        if owner is None:
            return
        raylet = self.raylet
        if not worker.lease_ending and owner in raylet.clients:
            raylet.send(raylet.router, [owner], LeaseEnded(worker_id=worker.worker_id.hex()))
        if self.by_owner.get(owner) is worker:
            del self.by_owner[owner]
        self._release(worker)

    def owner_gone(self, owner: bytes) -> None:
        self.by_owner.pop(owner, None)
        for task_id in [t for t, o in self.handed_back.items() if o == owner]:
            del self.handed_back[task_id]
        for worker in list(self.raylet.pool.workers.values()):
            if worker.leased_to == owner:
                self._release(worker)

    def _release(self, worker: WorkerProc) -> None:
        """The lease is over; an idle worker frees its resources (and goes back
        to the pool, if alive)."""
        worker.leased_to = None
        worker.lease_ending = False
        raylet = self.raylet
        if not worker.tasks:
            raylet._release_lease(worker)
            if worker.worker_id in raylet.pool.workers:
                raylet.pool.give_back(worker)

    def expire(self) -> None:
        """End leases left unused for `idle_seconds`."""
        cutoff = time.monotonic() - self.idle_seconds
        for worker in list(self.by_owner.values()):
            if not worker.tasks and not worker.blocked and worker.lease_used < cutoff:
                self.end(worker)

    # scheduling -----------------------------------------------------------
    def serve(self) -> None:
        """Give idle leased workers their owners' queued tasks; end the leases
        of those still idle while other work waits."""
        raylet = self.raylet
        for owner, worker in list(self.by_owner.items()):
            if worker.tasks or worker.blocked or worker.lease is None:
                continue
            for task in raylet.queue.pop_shape(worker.lease, 1, _plain_of(owner)):
                raylet.send_task(task, worker)
        if len(raylet.queue):
            for worker in list(self.by_owner.values()):
                if not worker.tasks and not worker.blocked:
                    self.end(worker)

    # tasks reported by their drivers ----------------------------------------
    def started(self, task: Task, worker_hex: str) -> None:
        """A reported plain task its driver sent straight to `worker_hex`."""
        raylet = self.raylet
        task_id = task.spec.task_id
        try:
            worker = raylet.pool.workers.get(bytes.fromhex(worker_hex))
        except ValueError:
            worker = None
        early = raylet.direct.take_early(task_id)
        if early is not None:
            if worker is not None:
                raylet.events.running(task, worker)
                worker.lease_used = time.monotonic()
            raylet.direct.complete_early(task, *early)
            return
        if self.handed_back.pop(task_id, None) is not None:
            raylet._enqueue(task)  # its worker blocked in a get before running it
            return
        if worker is None or worker.actor_id is not None:
            dead, death = self.deaths.get(worker_hex, (None, f"worker {worker_hex[:12]} is gone"))
            if dead is not None:
                raylet.events.running(task, dead)  # the attempt ran there (and died with it)
            if task.retries_left > 0:
                raylet._retry(task, f"was sent to a worker that is gone: {death}")
            else:
                raylet.fail_task(task, WorkerCrashedError(
                    f"task {task.spec.function_name} ({task_id[:12]}) was sent straight to a "
                    f"worker that died before it reported a result: {death}; retried "
                    f"{task.spec.attempt} times (max_retries={task.spec.max_retries})"))
            return
        task.sent_direct = True
        raylet.attach(task, worker)
        worker.lease_used = task.dispatched_at
        if worker in raylet.pool.idle:
            # The lease ended before the report came: the task holds the worker now.
            raylet.pool.idle.remove(worker)
            worker.lease = task.resources
            worker.lease_held = True
            raylet.queue.acquire(task.resources)
