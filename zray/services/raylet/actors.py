"""Actors on one raylet: each owns a dedicated worker for its lifetime.

The constructor runs as the actor's creation task on a worker taken out of
the task pool; method calls queue per actor in submission order and go to
that worker as soon as their arguments exist. A dead worker restarts the
actor (constructor re-run) up to `max_restarts`; calls in flight are retried
up to `max_task_retries`, others fail with ActorDiedError naming the cause.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zray.common.errors import ActorDiedError
from zray.common.messages.tables import ACTORS, TASKS, ActorInfo
from zray.common.messages.task import ActorCreation
from zray.services.raylet.state import Task
from zray.services.raylet.worker_pool import WorkerProc

if TYPE_CHECKING:
    from zray.services.raylet.server import Raylet

log = logging.getLogger(__name__)


class ActorState(enum.Enum):
    PENDING = "PENDING"
    ALIVE = "ALIVE"
    RESTARTING = "RESTARTING"
    DEAD = "DEAD"


@dataclass(eq=False)
class Actor:
    creation: Task
    options: ActorCreation
    state: ActorState = ActorState.PENDING
    worker: WorkerProc | None = None
    restarts: int = 0
    death_cause: str = ""
    no_restart: bool = False
    # Calls in submission order, not yet sent to the worker.
    pending: deque[Task] = field(default_factory=deque)
    call_retries: dict[str, int] = field(default_factory=dict)
    # Local callers told to send calls straight to `worker` (direct_calls.py).
    told: set[bytes] = field(default_factory=set)

    @property
    def actor_id(self) -> str:
        return self.options.actor_id

    @property
    def job_id(self) -> str:
        return self.creation.spec.job_id


class ActorManager:
    def __init__(self, raylet: Raylet) -> None:
        self.raylet = raylet
        self.actors: dict[str, Actor] = {}

    # creation ------------------------------------------------------------
    def created(self, task: Task, restarts: int = 0) -> None:
        """A creation task was submitted (`restarts` > 0: the actor's node died
        and it restarts here; see actor_routes.py)."""
        options = task.spec.actor_creation
        assert options is not None
        actor = Actor(task, options, restarts=restarts)
        if restarts:
            actor.state = ActorState.RESTARTING
        self.actors[options.actor_id] = actor
        self.publish(actor)

    def assigned(self, task: Task, worker: WorkerProc) -> None:
        """The creation task goes to `worker`, which now belongs to the actor."""
        actor = self.actors[task.spec.actor_creation.actor_id]  # type: ignore[union-attr]
        actor.worker = worker
        worker.actor_id = actor.actor_id
        self.raylet.pool.dedicate(worker)

    def constructor_done(self, task: Task, failed: bool, error_text: str) -> None:
        actor = self.actors.get(task.spec.actor_creation.actor_id)  # type: ignore[union-attr]
        if actor is None or actor.state is ActorState.DEAD:
            return
        if failed:
            self.died(actor, f"its constructor raised:\n{error_text}")
            return
        actor.state = ActorState.ALIVE
        self.publish(actor)
        self.pump(actor)

    # calls ---------------------------------------------------------------
    def call_submitted(self, task: Task, direct_to: str | None = None) -> None:
        """A call to queue; or, with `direct_to`, one the caller sent to that worker."""
        actor = self.actors.get(task.spec.actor_id or "")
        if actor is None:
            self.raylet.actor_routes.submit(task)  # it lives on another node
            return
        if direct_to is not None:
            self._direct_call(actor, task, direct_to)
            return
        if actor.state is ActorState.DEAD:
            self.raylet.fail_task(task, self._died_error(actor, task))
            return
        actor.pending.append(task)
        self.pump(actor)

    def _direct_call(self, actor: Actor, task: Task, worker_hex: str) -> None:
        worker = actor.worker
        if worker is None or worker.worker_id.hex() != worker_hex:
            worker = None
        if self.raylet.direct.started(task, worker):
            return
        # Sent to a worker that died before it reported a result for the call.
        cause = actor.death_cause or "its worker died"
        if actor.state is ActorState.DEAD:
            self.raylet.fail_task(task, self._died_error(actor, task))
            return
        used = actor.call_retries.get(task.spec.task_id, 0)
        budget = actor.options.max_task_retries
        if used < budget or budget < 0:
            actor.call_retries[task.spec.task_id] = used + 1
            actor.pending.append(task)
            self.pump(actor)
        else:
            self.raylet.fail_task(task, ActorDiedError(
                f"actor {actor.options.class_name} ({actor.actor_id}) died while running "
                f"{task.spec.function_name}: {cause}; the call is not retried "
                f"(max_task_retries={budget})"))

    def pump(self, actor: Actor) -> None:
        """Send the calls at the head of the queue whose arguments exist, in order."""
        worker = actor.worker
        if actor.state is not ActorState.ALIVE or worker is None:
            return
        while actor.pending:
            task = actor.pending[0]
            if task.cancelled:
                actor.pending.popleft()
                continue
            if task.missing:
                break
            actor.pending.popleft()
            self.raylet.send_task(task, worker)
            self.raylet.direct.tell(actor.actor_id, actor.told, task.owner, worker)

    def pump_for(self, task: Task) -> None:
        actor = self.actors.get(task.spec.actor_id or "")
        if actor is not None:
            self.pump(actor)
        else:
            self.raylet.actor_routes.args_ready(task)

    def call_finished(self, task: Task) -> None:
        actor = self.actors.get(task.spec.actor_id or "")
        if actor is not None:
            actor.call_retries.pop(task.spec.task_id, None)

    # failures --------------------------------------------------------------
    def worker_died(self, worker: WorkerProc, tasks: list[Task], how: str) -> None:
        actor = self.actors.get(worker.actor_id or "")
        if actor is None:
            return
        actor.worker = None
        self.raylet.direct.untell(actor.actor_id, actor.told)
        in_flight = [t for t in tasks if t is not actor.creation]
        if actor.state is ActorState.DEAD:
            for task in in_flight:
                self.raylet.fail_task(task, self._died_error(actor, task))
            return
        if actor.no_restart:
            cause = "it was killed with zray.kill()"
        elif actor.state is ActorState.PENDING or actor.creation in tasks:
            cause = f"its worker (pid {worker.pid}) {how} while running the constructor"
        else:
            cause = f"its worker (pid {worker.pid}) {how}"
        can_restart = not actor.no_restart and (
            actor.restarts < actor.options.max_restarts or actor.options.max_restarts < 0)
        if not can_restart and not actor.no_restart:
            cause += (f", and it has no restarts left (used {actor.restarts} of "
                      f"max_restarts={actor.options.max_restarts})")
        if not can_restart:
            for task in in_flight:
                self.raylet.fail_task(task, self._died_error(actor, task, cause))
            self.died(actor, cause)
            return
        retry_budget = actor.options.max_task_retries
        for task in reversed(in_flight):
            used = actor.call_retries.get(task.spec.task_id, 0)
            if used < retry_budget or retry_budget < 0:
                actor.call_retries[task.spec.task_id] = used + 1
                actor.pending.appendleft(task)
            else:
                self.raylet.fail_task(task, ActorDiedError(
                    f"actor {actor.options.class_name} ({actor.actor_id}) died while running "
                    f"{task.spec.function_name}: {cause}; the call is not retried "
                    f"(max_task_retries={retry_budget}); the actor restarts "
                    f"({actor.restarts + 1} of {actor.options.max_restarts})"))
        actor.restarts += 1
        actor.state = ActorState.RESTARTING
        log.info("actor %s (%s) restarts (%d of %d): %s", actor.actor_id[:12],
                 actor.options.class_name, actor.restarts, actor.options.max_restarts, cause)
        self.publish(actor)
        self.raylet.restart_actor(actor.creation)

    def died(self, actor: Actor, cause: str) -> None:
        actor.state = ActorState.DEAD
        actor.death_cause = cause
        log.info("actor %s (%s) died: %s", actor.actor_id[:12], actor.options.class_name, cause)
        while actor.pending:
            task = actor.pending.popleft()
            self.raylet.fail_task(task, self._died_error(actor, task))
        worker = actor.worker
        actor.worker = None
        self.raylet.direct.untell(actor.actor_id, actor.told)
        if worker is not None:
            self.raylet.pool.kill(worker)
        if actor.options.max_restarts:
            # Its constructor's spec was kept for restarts on another node.
            self.raylet.gcs.write(TASKS, actor.creation.spec.task_id, None)
        self.publish(actor)

    def kill(self, actor_id: str, no_restart: bool) -> None:
        actor = self.actors.get(actor_id)
        if actor is None:
            self.raylet.actor_routes.kill(actor_id, no_restart)  # it lives on another node
            return
        if actor.state is ActorState.DEAD:
            return
        actor.no_restart = actor.no_restart or no_restart
        if actor.worker is not None:
            self.raylet.pool.kill(actor.worker)
        elif actor.state is ActorState.PENDING or (actor.state is ActorState.RESTARTING
                                                   and actor.no_restart):
            self.raylet.cancel_queued(actor.creation)
            self.died(actor, "it was killed with zray.kill() before it "
                             + ("started" if actor.state is ActorState.PENDING else "restarted"))
            if actor.creation.spec.origin_node:  # the creating node waits for its outcome
                self.raylet.fail_task(actor.creation, self._died_error(actor, actor.creation))

    def job_ended(self, job_id: str) -> None:
        for actor in list(self.actors.values()):
            if actor.job_id == job_id and not actor.options.detached \
                    and actor.state is not ActorState.DEAD:
                actor.no_restart = True
                if actor.worker is None:
                    self.raylet.cancel_queued(actor.creation)
                self.died(actor, "the job that created it ended")

    def _died_error(self, actor: Actor, task: Task, cause: str = "") -> ActorDiedError:
        return ActorDiedError(
            f"actor {actor.options.class_name} ({actor.actor_id}) is dead, so "
            f"{task.spec.function_name} cannot run: {cause or actor.death_cause}")

    # GCS -----------------------------------------------------------------
    def publish(self, actor: Actor) -> None:
        info = self.info(actor)
        self.raylet.gcs.write(ACTORS, info.actor_id, info.model_dump_json().encode())

    def info(self, actor: Actor) -> ActorInfo:
        """The actor's row in the GCS actor table, naming this node."""
        o = actor.options
        worker = actor.worker
        return ActorInfo(
            actor_id=o.actor_id, class_name=o.class_name, job_id=actor.job_id,
            state=actor.state.value, name=o.name, namespace=o.namespace, detached=o.detached,
            node_id=self.raylet.node_id, pid=worker.pid if worker is not None else 0,
            restarts=actor.restarts, max_restarts=o.max_restarts, death_cause=actor.death_cause,
            is_async=o.is_async, methods=o.methods, creation_task_id=actor.creation.spec.task_id,
            resources=actor.creation.resources, max_task_retries=o.max_task_retries)
