"""A global scheduler replica: heartbeats in, placements out. Stateless but for
the load it last heard, so any replica can place any task."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import zmq

from zray.common import wire
from zray.common.config import SchedSettings
from zray.common.messages.base import Message
from zray.common.messages.sched import (
    SCHED_REQUESTS,
    NodeHeartbeat,
    PlaceTask,
    SchedPing,
    SchedPong,
    TaskPlaced,
)
from zray.common.messages.tables import (
    ACTOR_FAILOVER_PREFIX,
    KV,
    NODE_DEAD_PREFIX,
    NODES,
    SCHEDULERS_PREFIX,
    NodeInfo,
)
from zray.common.service import Service
from zray.common.sockets import bind
from zray.services.gcs.client import ServiceGcs
from zray.services.gcs.subscriber import ServiceSubscriber
from zray.services.global_sched.actor_failover import ActorFailover
from zray.services.global_sched.policy import (
    NodeLoad,
    charge,
    dead_nodes_to_forget,
    place,
    place_spread,
)

log = logging.getLogger(__name__)


class GlobalScheduler(Service):
    name = "global-sched"

    def __init__(self, settings: SchedSettings) -> None:
        super().__init__()
        self.settings = settings
        self.sched_id = settings.sched_id or os.urandom(4).hex()
        self.nodes: dict[str, NodeLoad] = {}
        self.spread_counts: dict[str, int] = {}
        self.last_seen: dict[str, float] = {}
        self.waiting: list[tuple[list[bytes], PlaceTask]] = []
        self.address = ""

    def setup(self) -> None:
        self.router = self.socket(zmq.ROUTER)
        self.address = bind(self.router, self.settings.address)
        if self.settings.advertise_host and self.address.startswith("tcp://"):
            self.address = f"tcp://{self.settings.advertise_host}:{self.address.rsplit(':', 1)[1]}"
        self.add_reader(self.router, wire.Protocol("global-sched", SCHED_REQUESTS), {
            NodeHeartbeat: self.on_heartbeat,
            PlaceTask: self.on_place,
            SchedPing: self.on_ping,
        }, routed=True)
        self.gcs = ServiceGcs(self, self.settings.gcs_address)
        self._register()
        self.every(2.0, self._register)
        self.every(0.25, self._expire_nodes)
        self.node_infos: dict[str, NodeInfo] = {}
        self.declared_dead: set[str] = set()
        self.subscriber = ServiceSubscriber(self, self.gcs)
        self.subscriber.follow(NODES, self._on_nodes)
        self.actor_failover = ActorFailover(self)
        log.info("%s %s: serving on %s", self.name, self.sched_id, self.address)

    def _register(self) -> None:
        # A kv entry so raylets discover the replicas; refreshed as a liveness hint.
        value = f'{{"address": "{self.address}", "time": {time.time()}, "pid": {os.getpid()}}}'
        self.gcs.write("kv", SCHEDULERS_PREFIX + self.sched_id, value.encode())

    def on_heartbeat(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        assert isinstance(msg, NodeHeartbeat)
        if msg.node_id in self.declared_dead:
            return  # fenced: it must come back as a new node
        self.nodes[msg.node_id] = NodeLoad(msg.node_id, msg.address, msg.resources_total,
                                           dict(msg.resources_available), msg.queue_len)
        if msg.address.startswith("tcp://"):
            # Nodes others can reach are watched; a single-node cluster has nobody to fail over to.
            self.last_seen[msg.node_id] = time.monotonic()
        if self.waiting:
            self._retry_waiting()

    def on_place(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        assert isinstance(msg, PlaceTask)
        if not self._try_place(routing, msg):
            log.info("%s: task %s needs %s, which no live node has; waiting", self.name,
                     msg.task_id[:12], msg.resources)
            self.waiting.append((routing, msg))

    def _try_place(self, routing: list[bytes], msg: PlaceTask) -> bool:
        if msg.strategy == "SPREAD":
            node = place_spread(msg.resources, list(self.nodes.values()), self.spread_counts)
        else:
            node = place(msg.resources, list(self.nodes.values()), msg.arg_bytes)
        if node is None:
            return False
        if msg.strategy == "SPREAD":
            self.spread_counts[node.node_id] = self.spread_counts.get(node.node_id, 0) + 1
        charge(node, msg.resources)
        self.send(self.router, routing, TaskPlaced(req_id=msg.req_id, task_id=msg.task_id,
                                                   node_id=node.node_id, address=node.address))
        return True

    def _retry_waiting(self) -> None:
        waiting, self.waiting = self.waiting, []
        for routing, msg in waiting:
            if not self._try_place(routing, msg):
                self.waiting.append((routing, msg))

    def _on_nodes(self, changes: list[Any]) -> None:
        joined = False
        for change in changes:
            if change.new is None:
                self.node_infos.pop(change.key, None)
                continue
            info = NodeInfo.model_validate_json(change.new)
            self.node_infos[info.node_id] = info
            if not info.alive:
                self.nodes.pop(info.node_id, None)
            elif info.node_id not in self.nodes and info.node_id not in self.declared_dead \
                    and time.time() - info.heartbeat_time < self.settings.node_timeout:
                # Placed on from the moment it registers, as its (fresh) record describes
                # it: a task spilled before its first heartbeat arrives must not miss it.
                self.nodes[info.node_id] = NodeLoad(
                    info.node_id, info.address or info.local_address, dict(info.resources_total),
                    dict(info.resources_available), info.tasks_queued)
                joined = True
            # A node registered in the GCS must also heartbeat here, or it is declared dead.
            if info.alive and info.address and info.node_id not in self.last_seen \
                    and info.node_id not in self.declared_dead:
                self.last_seen[info.node_id] = time.monotonic()
        if joined and self.waiting:
            # The record may arrive after a task that needs it: that task waits here.
            self._retry_waiting()

    def _expire_nodes(self) -> None:
        now = time.monotonic()
        timeout = self.settings.node_timeout
        for node_id, seen in list(self.last_seen.items()):
            if now - seen > timeout:
                del self.last_seen[node_id]
                self.nodes.pop(node_id, None)
                self._declare_dead(node_id, f"no heartbeat for {now - seen:.1f}s")

    def _declare_dead(self, node_id: str, reason: str) -> None:
        """Record the death in the GCS: every raylet fails over the node's work, and
        the node itself, should it come back, is fenced (it restarts as a new node)."""
        log.warning("%s: node %s declared dead: %s", self.name, node_id[:12], reason)
        self.declared_dead.add(node_id)
        self.gcs.write(KV, NODE_DEAD_PREFIX + node_id,
                       json.dumps({"reason": reason, "time": time.time(), "by": self.sched_id}).encode())
        info = self.node_infos.get(node_id)
        if info is not None and info.alive:
            dead = info.model_copy(update={"alive": False})
            self.node_infos[node_id] = dead
            self.gcs.write(NODES, node_id, dead.model_dump_json().encode())
        self.actor_failover.node_died(node_id, reason)
        self._forget_old_dead()

    def _forget_old_dead(self) -> None:
        dead = [(i.node_id, i.heartbeat_time) for i in self.node_infos.values() if not i.alive]
        for node_id in dead_nodes_to_forget(dead, self.settings.dead_nodes_kept):
            # Still fenced here: the id stays in declared_dead.
            del self.node_infos[node_id]
            self.gcs.write(NODES, node_id, None)
            self.gcs.write(KV, NODE_DEAD_PREFIX + node_id, None)
            self.gcs.write(KV, ACTOR_FAILOVER_PREFIX + node_id, None)

    def on_ping(self, routing: list[bytes], msg: Message, buffers: list[Any]) -> None:
        assert isinstance(msg, SchedPing)
        self.send(self.router, routing, SchedPong(req_id=msg.req_id, nodes=len(self.nodes)))

    def on_close(self) -> None:
        self.gcs.write("kv", SCHEDULERS_PREFIX + self.sched_id, None)
        self.gcs.flush()
