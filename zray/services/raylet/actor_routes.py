"""Calls to actors this node does not host, and actors restarted here.

Where an actor lives is its row in the GCS actor table, which every raylet
follows. A call to an actor on another node is forwarded to that node's
raylet like a task (its results come back the same way), in submission
order. Calls wait here, in order, while the actor has no live place: its
row not known yet, its node dead and the global scheduler's decision not
made yet (global_sched/actor_failover.py), or it restarting here. They go
on once the row names a live node, and fail with ActorDiedError naming the
cause once it says DEAD, or when no decision comes within FAILOVER_WAIT.

Calls that were forwarded to a node that died and did not come back are
retried on the restarted actor up to its `max_task_retries` (-1: always);
the others fail with ActorDiedError naming the node's death.

A row naming this node in state RESTARTING is an actor to restart here: the
constructor's spec, kept in the tasks table while the actor may restart, is
read and run again on a worker of this node.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zray.common import wire
from zray.common.errors import ActorDiedError
from zray.common.messages.base import Message
from zray.common.messages.gcs import GcsRead
from zray.common.messages.tables import ACTORS, TASKS, ActorInfo
from zray.common.messages.task import TaskSpec
from zray.services.raylet.state import Task

if TYPE_CHECKING:
    from zray.services.gcs.clone import RowChange
    from zray.services.gcs.subscriber import ServiceSubscriber
    from zray.services.raylet.server import Raylet

log = logging.getLogger(__name__)

# How long calls wait for a dead node's actor to be restarted or declared dead.
FAILOVER_WAIT = 30.0


class Route(enum.Enum):
    UNKNOWN = "unknown"  # no row seen: ask the GCS
    DEAD = "dead"
    HERE = "here"  # hosted by this node (or restarting here)
    FORWARD = "forward"  # to the live node the row names
    WAIT = "wait"  # no live place yet


def route(row: ActorInfo | None, here: str, alive: Callable[[str], bool]) -> Route:
    """Where a call to the actor with this row goes now (pure)."""
    if row is None:
        return Route.UNKNOWN
    if row.state == "DEAD":
        return Route.DEAD
    if row.node_id == here:
        return Route.HERE
    if row.node_id and alive(row.node_id):
        return Route.FORWARD
    return Route.WAIT


def retries_call(attempts: int, max_task_retries: int) -> bool:
    """Whether a call lost with its actor's node runs again (attempts so far)."""
    return max_task_retries < 0 or attempts < max_task_retries


class ActorRoutes:
    def __init__(self, raylet: Raylet) -> None:
        self.raylet = raylet
        self.rows: dict[str, ActorInfo] = {}  # actors not known dead
        self.waiting: dict[str, deque[Task]] = {}
        self.stuck_since: dict[str, float] = {}
        self.restoring: set[str] = set()
        self.looking_up: set[str] = set()
        # zray.kill() of actors elsewhere whose node is not known yet: no_restart.
        self.kills: dict[str, bool] = {}

    def follow(self, subscriber: ServiceSubscriber) -> None:
        subscriber.follow(ACTORS, self._on_changes)
        self.raylet.every(1.0, self._tick)

    # calls -------------------------------------------------------------------
    def submit(self, task: Task) -> None:
        """A call to an actor the ActorManager does not host."""
        actor_id = task.spec.actor_id or ""
        self.waiting.setdefault(actor_id, deque()).append(task)
        self._drain(actor_id)

    def placed(self, info: ActorInfo, pending: deque[Task]) -> None:
        """This node sent the actor's constructor to the node `info` names (see
        actor_placement.py): the calls it queued for the actor go there first."""
        actor_id = info.actor_id
        self.rows[actor_id] = info
        if pending:
            self.waiting.setdefault(actor_id, deque()).extendleft(reversed(pending))
        self._drain(actor_id)

    def args_ready(self, task: Task) -> None:
        self._drain(task.spec.actor_id or "")

    def lost_with_node(self, tasks: list[Task], why: str) -> None:
        """Calls forwarded to a node that died (in submission order)."""
        retried: dict[str, list[Task]] = {}
        for task in tasks:
            task.forwarded_to = ""
            actor_id = task.spec.actor_id or ""
            row = self.rows.get(actor_id)
            budget = row.max_task_retries if row is not None else 0
            if task.cancelled or not retries_call(task.spec.attempt, budget):
                self.raylet.fail_task(task, ActorDiedError(
                    f"actor {self._name(task)} died while running {task.spec.function_name}: "
                    f"{why}; the call is not retried (max_task_retries={budget})"))
                continue
            self.raylet.events.retried(task, f"was running on {why}")
            self.raylet.counters["retried"] += 1
            task.spec = task.spec.model_copy(update={"attempt": task.spec.attempt + 1})
            retried.setdefault(actor_id, []).append(task)
        for actor_id, again in retried.items():
            log.info("%s: %d call(s) to actor %s lost on %s; retried once it restarts",
                     self.raylet.name, len(again), actor_id[:12], why)
            self.waiting.setdefault(actor_id, deque()).extendleft(reversed(again))
            self._drain(actor_id)

    def kill(self, actor_id: str, no_restart: bool) -> None:
        """zray.kill() of an actor this node does not host: sent to its node."""
        self.kills[actor_id] = no_restart or self.kills.get(actor_id, False)
        if actor_id in self.rows:
            self._send_kill(actor_id)
        else:
            self._lookup(actor_id)

    def _send_kill(self, actor_id: str) -> None:
        row = self.rows.get(actor_id)
        links = self.raylet.links
        if actor_id not in self.kills or row is None:
            return
        if actor_id in self.raylet.actors.actors:  # restarted here meanwhile
            self.raylet.actors.kill(actor_id, self.kills.pop(actor_id))
        elif row.node_id and row.node_id != self.raylet.node_id and links is not None \
                and links.kill_actor(row.node_id, actor_id, self.kills[actor_id]):
            del self.kills[actor_id]

    def _drain(self, actor_id: str) -> None:
        """Send on what waits for the actor, in order, as far as its route allows."""
        queue = self.waiting.get(actor_id)
        while queue and self._gone(queue[0]):
            queue.popleft()
        if not queue:
            self.waiting.pop(actor_id, None)
            self.stuck_since.pop(actor_id, None)
            return
        links = self.raylet.links
        row = self.rows.get(actor_id)
        where = route(row, self.raylet.node_id,
                      lambda node: links is not None and links.peer(node) is not None)
        if where is Route.UNKNOWN:
            self._lookup(actor_id)
        elif where is Route.HERE:
            self.stuck_since.pop(actor_id, None)
            if actor_id in self.raylet.actors.actors:
                del self.waiting[actor_id]
                for task in queue:
                    if not self._gone(task):
                        self.raylet.actors.call_submitted(task)
            elif row is not None and row.state == "RESTARTING":
                self._restore(row)
            else:
                self.stuck_since.setdefault(actor_id, time.monotonic())
        elif where is Route.WAIT or links is None:
            if links is None:
                self._fail_all(actor_id, f"it lives on node {row.node_id if row else '?'}, and "
                                         "this node has no links to other nodes")
            else:
                self.stuck_since.setdefault(actor_id, time.monotonic())
        else:
            assert row is not None and where is Route.FORWARD
            self.stuck_since.pop(actor_id, None)
            while queue and (self._gone(queue[0]) or queue[0].missing == 0):
                task = queue.popleft()
                if not self._gone(task) and not links.forward(task, row.node_id):
                    queue.appendleft(task)
                    break
            if not queue:
                del self.waiting[actor_id]

    def _gone(self, task: Task) -> bool:
        return task.cancelled or self.raylet.tasks.get(task.spec.task_id) is not task

    def _fail_all(self, actor_id: str, cause: str) -> None:
        queue = self.waiting.pop(actor_id, deque())
        self.stuck_since.pop(actor_id, None)
        for task in queue:
            if not self._gone(task):
                self.raylet.fail_task(task, ActorDiedError(
                    f"actor {self._name(task)} is dead, so {task.spec.function_name} cannot "
                    f"run: {cause}"))

    def _name(self, task: Task) -> str:
        actor_id = task.spec.actor_id or ""
        return f"{task.spec.function_name.split('.')[0]} ({actor_id})"

    def _tick(self) -> None:
        now = time.monotonic()
        for actor_id in list(self.waiting):
            since = self.stuck_since.get(actor_id)
            if since is not None and now - since > FAILOVER_WAIT:
                row = self.rows.get(actor_id)
                if row is None or not row.node_id:
                    where = "it was never placed on a node"
                elif row.node_id == self.raylet.node_id:
                    where = "this node is named as its place but does not host it"
                else:
                    where = f"its node {row.node_id} is dead or not reachable"
                self._fail_all(actor_id, f"{where}, and no restart or death of the actor was "
                                         f"recorded within {FAILOVER_WAIT:.0f}s")
            else:
                self._drain(actor_id)  # e.g. a node that joined since

    # the actor table ------------------------------------------------------------
    def _on_changes(self, changes: list[RowChange]) -> None:
        for change in changes:
            if change.new is None:
                self.rows.pop(change.key, None)
                continue
            self._seen(ActorInfo.model_validate_json(change.new))

    def _seen(self, info: ActorInfo) -> None:
        actor_id = info.actor_id
        if info.state == "DEAD":
            self.rows.pop(actor_id, None)
            self.kills.pop(actor_id, None)
            self._fail_all(actor_id, info.death_cause or "it died")
            return
        self.rows[actor_id] = info
        self._send_kill(actor_id)
        if info.node_id == self.raylet.node_id and info.state == "RESTARTING":
            self._restore(info)
        if actor_id in self.waiting:
            self._drain(actor_id)

    def _lookup(self, actor_id: str) -> None:
        if actor_id in self.looking_up:
            return
        self.looking_up.add(actor_id)

        def found(reply: Message, bufs: list[Any]) -> None:
            self.looking_up.discard(actor_id)
            if getattr(reply, "found", [False])[0] and bufs:
                self._seen(ActorInfo.model_validate_json(bytes(bufs[0])))
                return
            self.kills.pop(actor_id, None)
            self._fail_all(actor_id, "no actor with this id is known to the cluster (it may "
                                     "belong to another cluster, or never existed)")

        gcs = self.raylet.gcs
        gcs.request(lambda r: GcsRead(req_id=r, table=ACTORS, keys=[actor_id]), (), found,
                    shard=gcs.shard_of(actor_id))

    # restarts on this node ---------------------------------------------------------
    def _restore(self, info: ActorInfo) -> None:
        """Run again here the constructor of an actor whose node died."""
        actor_id = info.actor_id
        if actor_id in self.raylet.actors.actors or actor_id in self.restoring:
            return
        self.restoring.add(actor_id)
        task_id = info.creation_task_id

        def read(reply: Message, bufs: list[Any]) -> None:
            self.restoring.discard(actor_id)
            if actor_id in self.raylet.actors.actors:
                return
            if not task_id or not getattr(reply, "found", [False])[0] or not bufs:
                self._record_dead(info, "its node died and the spec of its constructor was not "
                                        "kept to restart it from")
                return
            if info.job_id in self.raylet.job_ends.ended and not info.detached:
                self._record_dead(info, "its node died after the job that created it ended")
                return
            blobs = wire.unpack_blobs(bytes(bufs[0]))
            spec = TaskSpec.model_validate_json(blobs[0])
            if any(arg.ref is not None for arg in spec.args) or spec.nested_refs:
                self._record_dead(info, "its node died, and its constructor takes object refs, "
                                        "which a restart on another node does not restore")
                return
            self._create(spec, list(blobs[1:]), info.restarts)

        gcs = self.raylet.gcs
        gcs.request(lambda r: GcsRead(req_id=r, table=TASKS, keys=[task_id or "-"]), (), read,
                    shard=gcs.shard_of(task_id or "-"))

    def _create(self, spec: TaskSpec, bufs: list[Any], restarts: int) -> None:
        raylet = self.raylet
        # Its results go to this raylet, not to the creator, which may be gone.
        spec = spec.model_copy(update={"attempt": spec.attempt + 1, "origin_node": "", "owner": ""})
        creation = spec.actor_creation
        assert creation is not None
        log.info("%s: actor %s (%s) restarts on this node (%d of %d); its node died",
                 raylet.name, creation.actor_id[:12], creation.class_name, restarts,
                 creation.max_restarts)
        task = Task(spec, bufs, b"", spec.resources)
        raylet.tasks[spec.task_id] = task
        raylet.events.submitted(task)
        raylet.actors.created(task, restarts)
        raylet.restart_actor(task)
        self._send_kill(creation.actor_id)
        if creation.actor_id in self.waiting:
            self._drain(creation.actor_id)

    def _record_dead(self, info: ActorInfo, cause: str) -> None:
        log.warning("%s: actor %s (%s) is dead: %s", self.raylet.name, info.actor_id[:12],
                    info.class_name, cause)
        dead = info.model_copy(update={"state": "DEAD", "death_cause": cause, "pid": 0})
        self.raylet.gcs.write(ACTORS, info.actor_id, dead.model_dump_json().encode())
        if info.creation_task_id:
            self.raylet.gcs.write(TASKS, info.creation_task_id, None)
        self._seen(dead)
