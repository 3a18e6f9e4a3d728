"""The actors of a dead node: restarted on another node, or recorded dead.

The replica that declares a node dead also claims its actors' failover in
the GCS (compare-and-swap on kv `actor_failover:<node id>`), so with several
replicas exactly one decides, whoever created the actors and wherever their
owners were. For each actor the dead node hosted the decision is pure
(`decide`): with restarts left and a live node that has its resources, the
row names that node, state RESTARTING and one more restart; else the row
says DEAD with the cause. The chosen node's raylet sees the row, reads the
constructor's spec from the tasks table and runs it again; callers' raylets
see the row too and send their calls there (see raylet/actor_routes.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from zray.common.messages.base import Message
from zray.common.messages.gcs import GcsPutIfAbsent, GcsPutIfAbsentReply
from zray.common.messages.tables import ACTOR_FAILOVER_PREFIX, ACTORS, KV, TASKS, ActorInfo
from zray.services.global_sched.policy import NodeLoad, place

if TYPE_CHECKING:
    from zray.services.global_sched.server import GlobalScheduler

log = logging.getLogger(__name__)


def has_restarts_left(info: ActorInfo) -> bool:
    return info.max_restarts < 0 or info.restarts < info.max_restarts


def decide(info: ActorInfo, dead_node: str, reason: str, nodes: list[NodeLoad]) -> ActorInfo:
    """The actor's new row after its node died: restarting elsewhere, or dead."""
    why = f"node {dead_node} died ({reason})"
    if not has_restarts_left(info):
        return info.model_copy(update={
            "state": "DEAD", "pid": 0,
            "death_cause": f"{why}, and it has no restarts left (used {info.restarts} of "
                           f"max_restarts={info.max_restarts})"})
    node = place(info.resources, [n for n in nodes if n.node_id != dead_node])
    if node is None:
        return info.model_copy(update={
            "state": "DEAD", "pid": 0,
            "death_cause": f"{why}, and no node has resources {info.resources} to restart it on"})
    node.queue_len += 1  # spread the actors of one dead node
    return info.model_copy(update={"state": "RESTARTING", "node_id": node.node_id, "pid": 0,
                                   "restarts": info.restarts + 1, "death_cause": ""})


class ActorFailover:
    def __init__(self, sched: GlobalScheduler) -> None:
        self.sched = sched

    def node_died(self, node_id: str, reason: str) -> None:
        """Claim the node's actors; the replica that wins restarts them."""
        me = self.sched.sched_id.encode()

        def claimed(reply: Message, bufs: list[Any]) -> None:
            assert isinstance(reply, GcsPutIfAbsentReply)
            if reply.stored or (bufs and bytes(bufs[0]) == me):
                self.sched.gcs.scan(ACTORS, "", lambda rows: self._fail_over(node_id, reason, rows))

        key = ACTOR_FAILOVER_PREFIX + node_id
        gcs = self.sched.gcs
        gcs.request(lambda r: GcsPutIfAbsent(req_id=r, table=KV, key=key), [me], claimed,
                    shard=gcs.shard_of(key))

    def _fail_over(self, node_id: str, reason: str, rows: list[tuple[str, bytes]]) -> None:
        nodes = [n for n in self.sched.nodes.values() if n.node_id not in self.sched.declared_dead]
        for _, raw in rows:
            info = ActorInfo.model_validate_json(raw)
            if info.node_id != node_id or info.state == "DEAD":
                continue
            new = decide(info, node_id, reason, nodes)
            if new.state == "DEAD":
                log.warning("%s: actor %s (%s) is dead: %s", self.sched.name, info.actor_id[:12],
                            info.class_name, new.death_cause)
                if new.creation_task_id:
                    self.sched.gcs.write(TASKS, new.creation_task_id, None)
            else:
                log.warning("%s: actor %s (%s) of dead node %s restarts on node %s (%d of %d)",
                            self.sched.name, info.actor_id[:12], info.class_name, node_id[:12],
                            new.node_id[:12], new.restarts, new.max_restarts)
            self.sched.gcs.write(ACTORS, info.actor_id, new.model_dump_json().encode())
