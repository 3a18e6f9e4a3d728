"""Where an actor starts: its constructor is placed like a task, once.

The creating node decides by the rules for tasks (placement.py): it keeps
the actor when it can host it now, sends it straight to a node affinity's
node, and otherwise asks a global scheduler, which picks a node with the
resources (or SPREADs); an actor whose resources no node has waits for one
to join, as a task does. Only an actor's first start is placed: a restart
after its worker died runs where the actor lives, one after its node died
where the global scheduler's failover put it (actor_routes.py).

To start the actor elsewhere the creating node forwards its constructor
like a task and stays its owner: it keeps the constructor's lineage and
result, and the job's end ends the actor wherever it lives (job_ends.py).
The creating node hands the calls it queued for the actor to its routes,
first, and writes the actor's row naming the chosen node; the chosen node
hosts the actor from then on and publishes its rows. Calls from anywhere
follow the row there, in submission order (actor_routes.py). Should the
chosen node die, the row names it, so the failover restarts the actor or
records it dead, as for any actor of a dead node.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from zray.common.messages.tables import ACTORS

if TYPE_CHECKING:
    from zray.services.raylet.server import Raylet
    from zray.services.raylet.state import Task

log = logging.getLogger(__name__)


def placed_like_a_task(state: str, restarts: int, forwarded: bool) -> bool:
    """Whether a creation task goes through placement (pure): only the first
    start of an actor on the node that created it."""
    return state == "PENDING" and restarts == 0 and not forwarded


class ActorPlacement:
    def __init__(self, raylet: Raylet) -> None:
        self.raylet = raylet

    def placeable(self, task: Task) -> bool:
        creation = task.spec.actor_creation
        if creation is None:
            return False
        actor = self.raylet.actors.actors.get(creation.actor_id)
        return actor is not None and placed_like_a_task(
            actor.state.value, actor.restarts, bool(task.spec.origin_node))

    def moved(self, task: Task, node_id: str) -> None:
        """The actor's constructor was forwarded to `node_id`: the actor lives there."""
        creation = task.spec.actor_creation
        assert creation is not None
        raylet = self.raylet
        actor = raylet.actors.actors.pop(creation.actor_id, None)
        if actor is None:
            return
        info = raylet.actors.info(actor).model_copy(update={"node_id": node_id})
        raylet.gcs.write(ACTORS, info.actor_id, info.model_dump_json().encode())
        log.info("%s: actor %s (%s) starts on node %s", raylet.name, info.actor_id[:12],
                 info.class_name, node_id[:12])
        raylet.actor_routes.placed(info, actor.pending)

    def unschedulable(self, task: Task, error: BaseException) -> None:
        """A hard node affinity to a node that cannot host the actor: it is dead."""
        creation = task.spec.actor_creation
        assert creation is not None
        actor = self.raylet.actors.actors.get(creation.actor_id)
        if actor is not None:
            self.raylet.actors.died(actor, f"it cannot be placed: {error}")

    def argument_lost(self, task: Task, oid: str) -> None:
        """A constructor forwarded here goes back to its creating node (an argument
        could not be fetched): so do the calls that followed it here."""
        creation = task.spec.actor_creation
        links = self.raylet.links
        if creation is None or links is None:
            return
        actor = self.raylet.actors.actors.pop(creation.actor_id, None)
        for call in actor.pending if actor is not None else ():
            if self.raylet.tasks.pop(call.spec.task_id, None) is call:
                links.report_lost(call, [oid])

    def came_back(self, task: Task) -> None:
        """A constructor this node forwarded came back unrun: placed again from here."""
        creation = task.spec.actor_creation
        assert creation is not None
        if creation.actor_id not in self.raylet.actors.actors:
            self.raylet.actors.created(task)
