"""The raylet's link to the global schedulers: discovery through the GCS,
heartbeats of its load, and spilling tasks it cannot run itself.

Replicas refresh their GCS entry every few seconds; one that stops is taken
for dead, and the tasks it was placing go to another replica, or, with none
left, run here when they fit (the rest wait for a replica to appear).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

from zray.common import wire
from zray.common.messages.base import Message
from zray.common.messages.sched import SCHED_REPLIES, NodeHeartbeat, PlaceTask, TaskPlaced
from zray.common.messages.tables import KV, NODE_DEAD_PREFIX, SCHEDULERS_PREFIX
from zray.common.sockets import connect

if TYPE_CHECKING:
    from zray.services.gcs.clone import RowChange
    from zray.services.gcs.subscriber import ServiceSubscriber
    from zray.services.raylet.server import Raylet
    from zray.services.raylet.state import Task

log = logging.getLogger(__name__)

# A replica refreshes its entry every 2 s; silent this long, it is taken for dead.
SCHEDULER_STALE = 6.0


class SchedulerLink:
    def __init__(self, raylet: Raylet, on_placed: Callable[[TaskPlaced], None]) -> None:
        self.raylet = raylet
        self.on_placed = on_placed
        self.schedulers: dict[str, zmq.Socket[Any]] = {}
        self.addresses: dict[str, str] = {}
        self.refreshed: dict[str, float] = {}
        self.pending: dict[str, str] = {}  # task id -> the replica placing it
        self._next_req = 0
        self._turn = 0
        raylet.every(1.0, self.check_replicas)

    def live(self) -> list[str]:
        now = time.monotonic()
        return [sid for sid in self.schedulers if now - self.refreshed.get(sid, 0.0) < SCHEDULER_STALE]

    def spill(self, task: Task) -> bool:
        """Ask a live replica to place the task; False when none is alive."""
        live = self.live()
        if not live:
            log.info("%s: task %s needs a placement beyond this node (%s) and no global scheduler "
                     "is alive", self.raylet.name, task.spec.task_id[:12], task.resources)
            return False
        self._turn += 1
        sched_id = live[self._turn % len(live)]
        self._next_req += 1
        self.pending[task.spec.task_id] = sched_id
        self.raylet.send(self.schedulers[sched_id], [], PlaceTask(
            req_id=self._next_req, task_id=task.spec.task_id, resources=task.resources,
            arg_bytes=self._arg_bytes(task), strategy=task.spec.strategy))
        return True

    def check_replicas(self) -> None:
        """Fail over the placements of replicas that went silent."""
        live = set(self.live())
        dead = [sid for sid in self.schedulers if sid not in live]
        if not dead:
            return
        for sched_id in dead:
            log.warning("%s: global scheduler %s is silent; failing over", self.raylet.name, sched_id)
            self.raylet.remove_socket(self.schedulers.pop(sched_id))
            self.refreshed.pop(sched_id, None)
            self.addresses.pop(sched_id, None)
        orphans = [tid for tid, sid in self.pending.items() if sid in dead]
        for task_id in orphans:
            del self.pending[task_id]
            task = self.raylet.infeasible.get(task_id)
            if task is not None and not self.spill(task):
                self.raylet.place_locally(task)

    def _arg_bytes(self, task: Task) -> dict[str, int]:
        """Bytes of the task's inputs per node holding them (for locality)."""
        held: dict[str, int] = {}
        for arg in task.spec.args:
            obj = self.raylet.objects.get(arg.ref) if arg.ref is not None else None
            if obj is not None and (obj.in_store or obj.location):
                node = self.raylet.node_id if obj.in_store else obj.location
                held[node] = held.get(node, 0) + obj.size
        return held

    def _reply(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        if isinstance(msg, TaskPlaced):
            self.pending.pop(msg.task_id, None)
            self.on_placed(msg)

    def follow(self, subscriber: ServiceSubscriber) -> None:
        """Follow the replicas registered in the GCS kv table: connect new ones,
        drop gone ones, as their entries appear and disappear."""
        subscriber.follow(KV, self._on_kv_changes)

    def _on_kv_changes(self, changes: list[RowChange]) -> None:
        raylet = self.raylet
        for change in changes:
            if change.key.startswith(NODE_DEAD_PREFIX):
                if change.new is not None:
                    reason = json.loads(change.new).get("reason", "declared dead")
                    raylet.node_died(change.key[len(NODE_DEAD_PREFIX):], reason)
                continue
            if not change.key.startswith(SCHEDULERS_PREFIX):
                continue
            sched_id = change.key[len(SCHEDULERS_PREFIX):]
            if change.new is None:
                self.refreshed.pop(sched_id, None)
                self.addresses.pop(sched_id, None)
                sock = self.schedulers.pop(sched_id, None)
                if sock is not None:
                    log.info("%s: global scheduler %s left", raylet.name, sched_id)
                    raylet.remove_socket(sock)
                continue
            self.refreshed[sched_id] = time.monotonic()
            if sched_id in self.schedulers:
                continue  # a refresh of a known replica
            address = json.loads(change.new)["address"]
            sock = raylet.socket(zmq.DEALER)
            connect(sock, address)
            raylet.add_reader(sock, wire.Protocol("sched-replies", SCHED_REPLIES),
                              dict.fromkeys(SCHED_REPLIES, self._reply), routed=False)
            self.schedulers[sched_id] = sock
            self.addresses[sched_id] = address
            log.info("%s: found global scheduler %s at %s", raylet.name, sched_id, address)
            for task in list(raylet.infeasible.values()):
                if task.spec.task_id not in self.pending:
                    self.spill(task)

    def heartbeat(self) -> None:
        """Hand this node's load to the heartbeat thread, which sends it to every
        replica (heartbeat.py: a busy loop must not silence the node)."""
        r = self.raylet
        beat = NodeHeartbeat(node_id=r.node_id,
                             address=r.links.address if r.links is not None else r.local_address,
                             resources_total=r.total, resources_available=r.queue.available,
                             queue_len=len(r.queue), store_used=r.store.used,
                             store_capacity=r.store.capacity)
        r.heartbeats.hand_over(beat, list(self.addresses.values()))
