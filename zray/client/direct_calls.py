"""Actor calls sent straight to the actor's worker (mixed into CoreClient).

The raylet tells a caller where an actor's worker is (ActorMoved) once it has
dispatched one of the caller's calls to the live actor. From then on a call
whose arguments are all inline goes to that worker's inbox directly (a peer
link, see peer_links.py); the worker sends the result straight back, so the
call costs two hops and no raylet wake-up. The caller reports the calls it
sent this way to the raylet in batches, soon after and off the call's path
(DirectCallsSent); the raylet tracks them for failures, retries,
cancellation and task states.

Order per caller holds: a call goes direct only while none of this caller's
calls to the actor that went through the raylet is outstanding, and direct
calls travel in order on one socket. Reports reach the raylet before
anything else this process sends it afterwards (a cancel, a release of the
calls' results, a kill).

Plain tasks take the same path to a worker the raylet leased to this driver
(WorkerLeased, see zray/services/raylet/leases.py): a task of the lease's
resources whose arguments are all inline goes to the worker directly while
the lease's previous such task has its result and no task the driver sent
through the raylet is due (the raylet may have given it to the leased
worker), so tasks run one after another cost two hops; tasks submitted in a
burst go through the raylet, which spreads them over its workers.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from zray.client.peer_links import PeerOutlets
from zray.common import wire
from zray.common.messages.base import construct
from zray.common.messages.raylet import (
    ActorMoved,
    DirectCallsSent,
    ExecuteTask,
    ExecuteTasks,
    LeaseEnded,
    WorkerLeased,
)
from zray.common.messages.task import TaskSpec

# Reports wait at most this long for company before they go to the raylet: a
# caller making calls one after another sends one report per ~20 calls, so
# the raylet (off the calls' path) wakes once for many.
REPORT_LINGER = 0.02
REPORT_BATCH = 256
DIRECT_LINGER = 1.0  # seconds a closing caller waits to deliver the calls it sent


class DirectCaller:
    expected: set[str]
    threaded: bool
    direct_links: PeerOutlets  # to the workers this process sends calls to

    def _transmit(self, frames: list[Any]) -> None:
        raise NotImplementedError

    def _init_direct(self) -> None:
        self.actor_routes: dict[str, str] = {}  # actor id -> its worker's id (hex)
        # actor id -> the returns of this process's latest call to it through the raylet
        self.actor_last_call: dict[str, list[str]] = {}
        self.leased: dict[str, dict[str, float]] = {}  # leased worker (hex) -> its resources
        self.may_be_leased = False  # a driver that submitted a plain task
        # First results of this driver's plain tasks sent through the raylet,
        # oldest first, pruned as they arrive: while one is due, the raylet may
        # have given it to a leased worker, which is then busy.
        self.via_raylet: deque[str] = deque()
        self.lease_last: dict[str, list[str]] = {}  # leased worker -> returns of its latest task
        self.leases_to_return: list[str] = []
        self._direct_out: dict[str, tuple[list[ExecuteTask], list[Any], list[int]]] = {}
        self._reports: list[tuple[TaskSpec, list[Any], str]] = []
        self._reports_since = 0.0
        # Tasks whose results go to their owners before the raylet hears of
        # them, not finished yet (worker side): calls received straight from
        # their callers and plain tasks; True for those the raylet may hear of
        # a moment later (see WorkerSide.flush_finished).
        self.owner_first: dict[str, bool] = {}

    def on_actor_moved(self, msg: ActorMoved) -> None:
        if msg.worker_id:
            self.actor_routes[msg.actor_id] = msg.worker_id
            return
        old = self.actor_routes.pop(msg.actor_id, None)
        if old is not None and old not in self.actor_routes.values():
            # Its worker is gone: what is unsent is reported as lost.
            self.direct_links.close(old, linger=0)

    def on_worker_leased(self, msg: WorkerLeased) -> None:
        self.leased[msg.worker_id] = msg.resources
        self.lease_last.pop(msg.worker_id, None)

    def on_lease_ended(self, msg: LeaseEnded) -> None:
        self.leased.pop(msg.worker_id, None)
        self.lease_last.pop(msg.worker_id, None)
        if msg.worker_id not in self.actor_routes.values():
            self.direct_links.close(msg.worker_id)  # what waits still reaches the live worker
        self.leases_to_return.append(msg.worker_id)  # once the reports are out (_process)

    def sent_via_raylet(self, first_return: str) -> None:
        self._raylet_tasks_due()
        self.via_raylet.append(first_return)

    def _raylet_tasks_due(self) -> bool:
        pending, expected = self.via_raylet, self.expected
        while pending and pending[0] not in expected:
            pending.popleft()
        return bool(pending)

    def lease_target(self, resources: dict[str, float], returns: list[str]) -> str:
        """A leased worker to send this plain task to directly, or '' for the raylet."""
        if self.threaded or self._raylet_tasks_due():
            return ""
        expected = self.expected
        for worker, leased in self.leased.items():
            if leased == resources and not any(o in expected for o in self.lease_last.get(worker, ())) \
                    and self.direct_links.link(worker) is not None:
                self.lease_last[worker] = returns
                return worker
        return ""

    def direct_target(self, actor_id: str, by_ref: bool, returns: list[str]) -> str:
        """The worker to send this call to directly, or '' to go through the raylet."""
        worker = self.actor_routes.get(actor_id, "")
        if worker and not by_ref and not self.threaded and \
                not any(o in self.expected for o in self.actor_last_call.get(actor_id, ())) \
                and self.direct_links.link(worker) is not None:
            return worker
        self.actor_last_call[actor_id] = returns
        return ""

    def queue_direct(self, spec: TaskSpec, bufs: list[Any], worker: str) -> int:
        """Buffer a call for its worker; returns how many calls are buffered."""
        out = self._direct_out.get(worker)
        if out is None:
            out = self._direct_out[worker] = ([], [], [])
        out[0].append(construct(ExecuteTask, spec=spec, arg_objects=[], gpu_ids=[]))
        out[1].extend(bufs)
        out[2].append(len(bufs))
        if not self._reports:
            self._reports_since = time.monotonic()
        self._reports.append((spec, bufs, worker))
        return sum(len(o[0]) for o in self._direct_out.values())

    def _flush_direct(self) -> None:
        """Send buffered calls to their workers (the reports wait)."""
        if not self._direct_out:
            return
        out, self._direct_out = self._direct_out, {}
        for worker, (tasks, bufs, counts) in out.items():
            msg = construct(ExecuteTasks, kind="ExecuteTasks", tasks=tasks, buf_counts=counts)
            # A worker gone since: the reports tell the raylet, which fails or retries them.
            self.direct_links.send(worker, wire.encode(msg, bufs))

    def _flush_reports(self, linger: float = 0.0) -> None:
        """Tell the raylet about calls sent directly (all, or those older than `linger`)."""
        if not self._reports or (linger and len(self._reports) < REPORT_BATCH
                                 and time.monotonic() - self._reports_since < linger):
            return
        self._flush_direct()  # a report never precedes its call
        reports, self._reports = self._reports, []
        bufs: list[Any] = []
        for _, call_bufs, _ in reports:
            bufs.extend(call_bufs)
        msg = DirectCallsSent.model_construct(
            kind="DirectCallsSent", specs=[s for s, _, _ in reports],
            buf_counts=[len(b) for _, b, _ in reports], workers=[w for _, _, w in reports])
        self._transmit(wire.encode(msg, bufs))

    def _close_direct(self) -> None:
        self.direct_links.close_all()
