"""The raylet service: local scheduling, worker pool, object store, heartbeats.

Clients (drivers and workers of this node) talk to one ROUTER over ipc; their
zmq identity is their worker id. Results are pushed to each task's owner as
soon as they exist, batched per owner per loop turn.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import psutil
import zmq

from zray.common import wire
from zray.common.config import RayletSettings
from zray.common.errors import (
    NodeDiedError,
    ObjectLostError,
    ObjectStoreFullError,
    OutOfMemoryError,
    TaskCancelledError,
    TaskUnschedulableError,
    WorkerCrashedError,
)
from zray.common.ids import PUT_FLAG, NodeID, return_object_hex
from zray.common.messages.base import ErrorReply, Message, construct
from zray.common.messages.gcs import GcsRead
from zray.common.messages.raylet import (
    CLIENT_TO_RAYLET,
    CancelTask,
    ClientRegistered,
    CreateObject,
    DirectCallsSent,
    DisconnectClient,
    ExecuteTask,
    ExecuteTasks,
    GetObjects,
    KillActor,
    LeaseReturned,
    ListObjectsReply,
    ListObjectsRequest,
    LogLines,
    NodeStatsReply,
    NodeStatsRequest,
    ObjectCreated,
    ObjectsReady,
    PutObject,
    RegisterClient,
    ReleaseObjects,
    SubmitTasks,
    TaskFinished,
    WorkerBlocked,
    WorkerUnblocked,
    split_frames,
)
from zray.common.messages.sched import TaskPlaced
from zray.common.messages.tables import NODES, OBJECTS, TASKS, NodeInfo, ObjectInfo
from zray.common.messages.task import ObjectLoc, TaskSpec
from zray.common.serialization import deserialize, serialize_error
from zray.common.service import Service
from zray.common.sockets import bind
from zray.services.gcs.client import ServiceGcs
from zray.services.gcs.subscriber import ServiceSubscriber
from zray.services.raylet import pipelining
from zray.services.raylet.actor_placement import ActorPlacement
from zray.services.raylet.actor_routes import ActorRoutes
from zray.services.raylet.actors import ActorManager
from zray.services.raylet.borrow_ledger import holder_node
from zray.services.raylet.direct_calls import DirectCalls
from zray.services.raylet.heartbeat import HeartbeatThread
from zray.services.raylet.job_ends import JobEnds
from zray.services.raylet.leases import Leases
from zray.services.raylet.lineage import TASK_HEX, Lineage
from zray.services.raylet.node_links import NodeLinks
from zray.services.raylet.object_listing import summarize
from zray.services.raylet.object_store import SharedMemoryStore, check_shm, default_capacity
from zray.services.raylet.object_table import ObjectTable
from zray.services.raylet.observe import RayletObserver
from zray.services.raylet.placement import Situation, Where, decide
from zray.services.raylet.remote_refs import RemoteRefs
from zray.services.raylet.resources import fits, node_resources
from zray.services.raylet.sched_link import SchedulerLink
from zray.services.raylet.spill_dir import SpillDir
from zray.services.raylet.state import Client, LocalObject, Task
from zray.services.raylet.store_memory import StoreMemory
from zray.services.raylet.task_events import TaskEvents
from zray.services.raylet.task_queue import ReadyQueue
from zray.services.raylet.worker_pool import WorkerPool, WorkerProc, describe_exit

log = logging.getLogger(__name__)

CONTROL_SUFFIX = b"/ctl"
# A task placed on a node this one does not know alive is placed again after this long.
PLACE_AGAIN_DELAY = 0.5


class Raylet(Service):
    name = "raylet"

    def __init__(self, settings: RayletSettings, pool: WorkerPool | None = None) -> None:
        super().__init__()
        self.settings = settings
        self._prespawned = pool
        self.node_id = NodeID.from_random().hex()
        self.name = f"raylet[{self.node_id[:8]}]"
        self.session_dir = settings.session_dir or f"/tmp/zray_sessions/raylet-{self.node_id[:8]}"
        self.store_dir = settings.store_dir or f"/dev/shm/zray-{self.node_id[:12]}"
        self.local_address = settings.local_address or \
            f"ipc://{self.session_dir}/sockets/raylet-{self.node_id[:8]}"
        self.log_address = self.local_address + ".logs"
        capacity = settings.object_store_memory or default_capacity(os.path.dirname(self.store_dir))
        self.store = SharedMemoryStore(self.store_dir, capacity)
        self.total = node_resources(settings.num_cpus, settings.num_gpus, settings.resources, capacity,
                                    psutil.virtual_memory().total)
        self.queue: ReadyQueue[Task] = ReadyQueue(self.total)
        self.free_gpus = list(range(int(self.total.get("GPU", 0))))
        self.tasks: dict[str, Task] = {}
        self.objects = ObjectTable()
        self.remote_refs = RemoteRefs(self)
        self.lineage = Lineage()
        self.spill_dir = settings.spill_dir or os.path.join(self.session_dir, "spill")
        self.memory = StoreMemory(self.store, SpillDir(self.spill_dir), self.objects,
                                  settings.store_full_timeout, self.describe_client,
                                  self.args_in_use)
        # Gets of spilled objects that wait for room to restore them.
        self.restore_waiting: list[tuple[bytes, str]] = []
        self.clients: dict[bytes, Client] = {}
        self.infeasible: dict[str, Task] = {}
        self.outbox: dict[bytes, list[tuple[LocalObject, bool]]] = {}
        self._outbox_scheduled = False
        self._schedule_scheduled = False
        self._assignments: dict[WorkerProc, list[tuple[ExecuteTask, list[Any]]]] = {}
        self.actors = ActorManager(self)
        self.actor_routes = ActorRoutes(self)
        self.actor_placement = ActorPlacement(self)
        self.job_ends = JobEnds(self)
        self.direct = DirectCalls(self)
        self.leases = Leases(self, settings.lease_idle_seconds)
        self.durations = pipelining.Durations()
        self.counters = {"finished": 0, "failed": 0, "retried": 0, "submitted": 0}
        self.started = time.time()
        self.events = TaskEvents(self.node_id, settings.task_events_max)
        self.observer = RayletObserver(self)

    # set-up --------------------------------------------------------------
    def setup(self) -> None:
        s = self.settings
        self.router = self.socket(zmq.ROUTER)
        bind(self.router, self.local_address)
        self.log_pub = self.socket(zmq.PUB)
        bind(self.log_pub, self.log_address)
        self.add_reader(self.router, wire.Protocol("raylet", CLIENT_TO_RAYLET), {
            RegisterClient: self.on_register,
            SubmitTasks: self.on_submit,
            PutObject: self.on_put,
            CreateObject: self.on_create,
            GetObjects: self.on_get,
            ReleaseObjects: self.on_release,
            CancelTask: self.on_cancel,
            WorkerBlocked: self.on_blocked,
            WorkerUnblocked: self.on_unblocked,
            TaskFinished: self.on_task_finished,
            LogLines: self.on_log,
            DisconnectClient: self.on_disconnect,
            NodeStatsRequest: self.on_stats,
            KillActor: self.on_kill_actor,
            ListObjectsRequest: self.on_list_objects,
            DirectCallsSent: self.direct.on_sent,
            LeaseReturned: self.leases.on_returned,
        }, routed=True)
        self.gcs = ServiceGcs(self, s.gcs_address)
        warning = check_shm(os.path.dirname(self.store_dir), self.store.capacity,
                            explicit=bool(s.object_store_memory))
        if warning:
            log.warning("%s: %s", self.name, warning)
        self.every(0.1, self.memory_tick)
        if self._prespawned is not None:
            self.pool = self._prespawned
        else:
            self.pool = WorkerPool(self.local_address, os.path.join(self.session_dir, "logs"), {})
        if s.prestart_workers and not self.pool.workers:
            for _ in range(max(1, int(self.total.get("CPU", 1)))):
                self.pool.spawn()
        self.every(0.05, self.reap_workers)
        self.sched = SchedulerLink(self, self.on_placed)
        self.heartbeats = HeartbeatThread(self.ctx, s.heartbeat_interval, s.heartbeat_stall_limit,
                                          self.name)
        self.every(s.heartbeat_interval, self.sched.heartbeat)
        self.every(1.0, self.publish_node)
        self.every(1.0, self.check_drivers)
        self.every(5.0, self.direct.expire)
        if self.leases.idle_seconds:
            self.every(min(0.05, self.leases.idle_seconds), self.leases.expire)
        self.subscriber = ServiceSubscriber(self, self.gcs)
        self.sched.follow(self.subscriber)
        self.actor_routes.follow(self.subscriber)
        self.job_ends.follow(self.subscriber)
        # Other nodes reach this one over TCP; an embedded single-node cluster binds none.
        self.links = NodeLinks(self, s.address) if s.address else None
        if self.links is not None:
            self.links.follow(self.subscriber)
        self.observer.install()
        self.publish_node()
        self.gcs.flush()  # the node's row goes out before any client can ask for it
        self.heartbeats.start()
        log.info("%s: serving on %s%s; resources %s; store %s (%.2f GiB); spill folder %s; "
                 "a full store fails puts after %.1fs", self.name, self.local_address,
                 f" and {self.links.address}" if self.links else "", self.total,
                 self.store_dir, self.store.capacity / 1024**3, self.spill_dir,
                 s.store_full_timeout)

    # client registry -----------------------------------------------------
    def on_register(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, RegisterClient)
        ident = route[0]
        self.clients[ident] = Client(ident, msg.pid, msg.is_driver, msg.job_id or "")
        if not msg.is_driver:
            worker = self.pool.registered(ident)
            if worker is None:
                log.warning("%s: unknown worker %s registered; ignored", self.name, msg.worker_id)
                return
        self.send(self.router, route, ClientRegistered(
            req_id=msg.req_id, node_id=self.node_id, job_id=msg.job_id or "",
            session_dir=self.session_dir, store_dir=self.store_dir,
            gcs_address=self.settings.gcs_address, log_address=self.log_address,
            inline_limit=self.settings.inline_limit,
            store_full_timeout=self.settings.store_full_timeout, raylet_pid=os.getpid()))
        self.schedule_soon()

    @staticmethod
    def _is_detached_creation(task: Task) -> bool:
        creation = task.spec.actor_creation
        return creation is not None and creation.detached

    def on_disconnect(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        self._drop_client(route[0], "disconnected")

    def check_drivers(self) -> None:
        for ident, client in list(self.clients.items()):
            if client.is_driver and not psutil.pid_exists(client.pid):
                self._drop_client(ident, f"driver pid {client.pid} exited")

    def _drop_client(self, ident: bytes, why: str) -> None:
        client = self.clients.pop(ident, None)
        if client is None or not client.is_driver:
            return
        self.leases.owner_gone(ident)
        job = client.job_id
        log.info("%s: job %s ends (%s)", self.name, job, why)
        self.actors.job_ended(job)
        self.job_ends.record(job)  # its actors on other nodes end too
        for task in self.queue.remove(lambda t: t.spec.job_id == job
                                      and not self._is_detached_creation(t)):
            self.tasks.pop(task.spec.task_id, None)
        for task_id, task in list(self.tasks.items()):
            if task.spec.job_id != job or self._is_detached_creation(task):
                continue
            task.cancelled = True
            if task.worker is not None and task.worker.actor_id is None:
                self.pool.kill(task.worker)
            else:
                self.tasks.pop(task_id, None)
                self.infeasible.pop(task_id, None)
        for obj in self.objects.of_job(job, ident):
            self._free(obj)
        self.outbox.pop(ident, None)

    # tasks ---------------------------------------------------------------
    def on_submit(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, SubmitTasks)
        if len(msg.buf_counts) != len(msg.specs):
            raise ValueError(f"{len(msg.specs)} specs but {len(msg.buf_counts)} buf_counts")
        for spec, task_bufs in zip(msg.specs, split_frames(bufs, msg.buf_counts), strict=True):
            self._submit(route[0], spec, task_bufs)

    def _submit(self, owner: bytes, spec: TaskSpec, bufs: list[Any],
                direct_to: str | None = None) -> None:
        for arg in spec.args:
            if arg.ref is None and not 0 <= arg.buf < len(bufs):
                raise ValueError(f"task {spec.task_id} names missing argument frame {arg.buf}")
        task = Task(spec, bufs, owner, spec.resources, retries_left=spec.max_retries)
        self.tasks[spec.task_id] = task
        self.counters["submitted"] += 1
        for i in range(1, spec.num_returns + 1):
            obj = self.objects.entry(return_object_hex(spec.task_id, i))
            obj.owner = owner
            obj.job_id = spec.job_id
            obj.waiting_clients.append((owner, True))
            self.objects.hold(obj, owner)
        for arg in spec.args:
            if arg.ref is not None:
                self.objects.depend(task, arg.ref)
        for oid in spec.nested_refs:
            self.objects.pin(oid)
        self.events.submitted(task)
        if spec.actor_creation is not None:
            self.actors.created(task)
        if spec.actor_id is not None:
            self.actors.call_submitted(task, direct_to)
        elif task.missing == 0 and direct_to is None:
            self._enqueue(task)
        if task.missing and self.remote_refs.ledger.owner_nodes:
            self.remote_refs.args_missing(task)
        if spec.origin_node:
            self.remote_refs.forwarded(task)
            return  # the node that forwarded it keeps its lineage
        if spec.actor_id is not None:
            return  # an actor call is never replayed (its state is the actor's): no lineage
        self.gcs.write(TASKS, spec.task_id,
                       wire.pack_blobs([spec.__pydantic_serializer__.to_json(spec, exclude_defaults=True),
                                        *bufs]))
        if spec.actor_creation is not None and spec.actor_creation.max_restarts:
            return  # kept while the actor may restart on another node (actors.py deletes it)
        self.lineage.submitted(spec.task_id, spec.num_returns,
                               [arg.ref for arg in spec.args if arg.ref is not None])
        if direct_to is not None:
            self.leases.started(task, direct_to)  # a plain task sent to a leased worker

    def _enqueue(self, task: Task, front: bool = False) -> None:
        feasible = self.queue.feasible(task.resources)
        where = self._placement(task, feasible)
        if where is Where.FORWARD:
            assert task.spec.affinity_node is not None
            if self._forward(task, task.spec.affinity_node):
                return
            where = Where.LOCAL if feasible else Where.SPILL
        if where is Where.UNSCHEDULABLE:
            error = TaskUnschedulableError(
                f"task {task.spec.function_name} ({task.spec.task_id[:12]}) must run on node "
                f"{task.spec.affinity_node}, which is not alive or cannot ever provide "
                f"{task.resources}; use NodeAffinitySchedulingStrategy(..., soft=True) to run it "
                "elsewhere then")
            if task.spec.actor_creation is not None:
                self.actor_placement.unschedulable(task, error)
            self.fail_task(task, error)
            return
        self.events.queued(task, feasible)
        if task.spec.actor_creation is not None and not feasible \
                and not self.actor_placement.placeable(task):
            log.warning("%s: actor %s restarts here but needs %s, which this node cannot "
                        "provide; it waits", self.name, task.spec.actor_creation.class_name,
                        task.resources)
            self.infeasible[task.spec.task_id] = task
            return
        if where is Where.SPILL or not feasible:
            self.infeasible[task.spec.task_id] = task
            if not self.sched.spill(task) and feasible:
                self.place_locally(task)
            return
        if self._pull_remote_args(task, front):
            return
        self.queue.push(task, task.resources, front=front)
        self.schedule_soon()

    def _placement(self, task: Task, feasible: bool) -> Where:
        spec = task.spec
        if spec.actor_creation is not None and not self.actor_placement.placeable(task):
            return Where.LOCAL  # a restart runs where the actor lives (actor_placement.py)
        if self.links is None:
            return Where.LOCAL if not spec.affinity_node or spec.affinity_node == self.node_id \
                or spec.affinity_soft else Where.UNSCHEDULABLE
        remote = local = 0
        for arg in spec.args:
            if arg.ref is not None:
                obj = self.objects.get(arg.ref)
                if obj is not None and obj.location and not obj.in_store:
                    remote += obj.size
                elif obj is not None:
                    local += obj.size
        affinity_ok = False
        if spec.affinity_node and spec.affinity_node != self.node_id:
            peer = self.links.peer(spec.affinity_node)
            affinity_ok = peer is not None and fits(task.resources, peer.resources_total)
        situation = Situation(
            node_id=self.node_id, feasible_here=feasible,
            free_here=fits(task.resources, self.queue.available), queue_len=len(self.queue),
            cpus=self.total.get("CPU", 1.0), remote_input_bytes=remote, local_input_bytes=local,
            has_peers=bool(self.links.peers()), has_scheduler=bool(self.sched.live()),
            forwarded=bool(spec.origin_node))
        return decide(situation, spec.strategy, spec.affinity_node, spec.affinity_soft, affinity_ok)

    def _forward(self, task: Task, node_id: str) -> bool:
        """Send a task to run on another node; an actor's constructor takes the actor there."""
        if self.links is None or not self.links.forward(task, node_id):
            return False
        if task.spec.actor_creation is not None:
            self.actor_placement.moved(task, node_id)
        return True

    def _pull_remote_args(self, task: Task, front: bool) -> bool:
        """Start pulling the arguments whose bytes are on other nodes; the task is
        queued again once they are here. False when all are here already."""
        remote = [self.objects.entry(a.ref) for a in task.spec.args if a.ref is not None]
        remote = [o for o in remote if o.location and not o.in_store and o.data is None]
        if not remote or self.links is None:
            return False
        task.missing += len(remote)

        def pulled(error: str | None, obj: LocalObject) -> None:
            if error is not None:
                if task.cancelled or task.spec.task_id not in self.tasks:
                    return
                if not obj.ready:
                    obj.waiting_tasks.append(task)  # lost with its node: rebuilt, then sealed
                    return
                # Its node may be dead without being declared so yet: try again shortly.
                log.info("%s: argument %s of task %s not fetched (%s); trying again", self.name,
                         obj.object_id[:16], task.spec.task_id[:12], error)
                task.missing -= 1
                self.loop.call_later(1.0, lambda: self._retry_args(task, front))
                return
            task.missing -= 1
            if task.missing == 0 and not task.cancelled:
                self._enqueue(task, front)

        for obj in remote:
            self.links.pull_from_node(obj.object_id, obj.location,
                                      lambda error, obj=obj: pulled(error, obj))  # type: ignore[misc]
        return True

    def _retry_args(self, task: Task, front: bool) -> None:
        if task.spec.task_id in self.tasks and not task.cancelled and task.missing == 0:
            self._enqueue(task, front)
        self.settle()

    def _wait_for_args(self, task: Task) -> bool:
        """Arguments that are not ready (e.g. lost and being rebuilt): wait for
        them before running the task. False when all are ready."""
        waiting = False
        for arg in task.spec.args:
            if arg.ref is None:
                continue
            obj = self.objects.entry(arg.ref)
            if not obj.ready and task not in obj.waiting_tasks:
                obj.waiting_tasks.append(task)
                task.missing += 1
                waiting = True
        return waiting

    def schedule_soon(self) -> None:
        if not self._schedule_scheduled:
            self._schedule_scheduled = True
            self.after_batch(self.schedule)

    def schedule(self) -> None:
        self._schedule_scheduled = False
        queue = self.queue
        if self.leases.by_owner:
            self.leases.serve()
        while len(queue) and self.pool.idle:
            batch = queue.pop_dispatchable(len(self.pool.idle))
            if not batch:
                break
            for task in batch:
                worker = self.pool.take_idle()
                assert worker is not None
                worker.lease = task.resources
                worker.lease_held = True
                if task.spec.actor_creation is not None:
                    self.actors.assigned(task, worker)
                    self._keep_pool_size()
                self.send_task(task, worker)
        if len(queue):
            self._pipeline()
        if len(queue) and not self.pool.idle:
            self._maybe_spawn()

    def _pipeline(self) -> None:
        """Queue short tasks behind busy workers' running ones, so a worker does
        not wait a round trip between them (see pipelining.py for when)."""
        busy = [w for w in self.pool.workers.values()
                if w.tasks and w.lease is not None and w.lease_held and not w.blocked
                and w.actor_id is None]
        if not busy:
            return
        now = time.monotonic()
        room_per_worker = pipelining.depth(len(self.queue), len(busy))
        for worker in busy:
            lease = worker.lease
            assert lease is not None
            room = room_per_worker - len(worker.tasks)
            if room <= 0 or not pipelining.may_queue_behind(
                    fits(lease, self.queue.available), True, worker.last_progress, now):
                continue
            for task in self.queue.pop_shape(lease, room, self._may_pipeline(worker)):
                self.send_task(task, worker)

    def _may_pipeline(self, worker: WorkerProc) -> Callable[[Task], bool]:
        """Short tasks, and behind a leased worker's tasks only its driver's:
        the driver may send the worker tasks of its own, which would wait."""
        owner = worker.leased_to
        short = self.durations.is_short
        return lambda t: short(t.spec.function_id) and (owner is None or t.owner == owner)

    def _maybe_spawn(self) -> None:
        # Start a worker when a CPU is free but every worker is busy (some block in get).
        free_cpu = self.queue.available.get("CPU", 0.0)
        limit = max(1, int(self.total.get("CPU", 1))) * self.settings.max_workers_per_cpu
        if free_cpu >= 1 and self.pool.starting < math.floor(free_cpu) \
                and len(self.pool.workers) < limit:
            self.pool.spawn()

    def attach(self, task: Task, worker: WorkerProc) -> None:
        """The task runs on `worker` from now (sent there by this raylet or by its caller)."""
        task.worker = worker
        task.dispatched_at = time.monotonic()
        self.events.running(task, worker)
        worker.tasks.append(task)

    def send_task(self, task: Task, worker: WorkerProc) -> None:
        """Assign a task to a worker; assignments go out batched per worker."""
        self.attach(task, worker)
        bufs = list(task.bufs)
        arg_objects = []
        now = time.monotonic()
        for arg in task.spec.args:
            if arg.ref is None:
                continue
            obj = self.objects.entry(arg.ref)
            obj.last_used = now
            if obj.spilled and not self.memory.restore(obj):
                log.warning("%s: no room to restore argument %s of task %s: %s", self.name,
                            arg.ref[:16], task.spec.task_id[:12],
                            self.memory.full_error(obj.size, arg.ref, 0.0))
            if obj.in_store:
                arg_objects.append(ObjectLoc(object_id=arg.ref, size=obj.size, in_store=True,
                                             is_error=obj.is_error))
            else:
                arg_objects.append(ObjectLoc(object_id=arg.ref, size=obj.size, buf=len(bufs),
                                             is_error=obj.is_error))
                bufs.append(obj.data)
        gpus = int(task.resources.get("GPU", 0))
        if gpus and not worker.gpu_ids:
            worker.gpu_ids = [self.free_gpus.pop() for _ in range(min(gpus, len(self.free_gpus)))]
        if not self._assignments:
            self.after_batch(self._flush_assignments)
        self._assignments.setdefault(worker, []).append(
            (construct(ExecuteTask, spec=task.spec, arg_objects=arg_objects, gpu_ids=worker.gpu_ids), bufs))

    def _flush_assignments(self) -> None:
        assignments, self._assignments = self._assignments, {}
        for worker, items in assignments.items():
            frames: list[Any] = []
            for _, bufs in items:
                frames.extend(bufs)
            self.send(self.router, [worker.worker_id],
                      construct(ExecuteTasks, kind="ExecuteTasks", tasks=[a for a, _ in items],
                                buf_counts=[len(b) for _, b in items]),
                      frames)

    def _observe_duration(self, worker: WorkerProc, task: Task) -> None:
        now = time.monotonic()
        started = max(task.dispatched_at, worker.last_progress)
        worker.last_progress = now
        if task.spec.actor_id is None:
            self.durations.observe(task.spec.function_id, now - started)

    def _detach(self, task: Task) -> WorkerProc | None:
        """Take a task off its worker; an emptied worker releases its lease and goes idle."""
        worker = task.worker
        task.worker = None
        if worker is None:
            return None
        try:
            worker.tasks.remove(task)
        except ValueError:
            pass
        if worker.actor_id is not None:
            return worker  # an actor's worker keeps its resources for the actor's life
        if not worker.tasks and not self.leases.keep(task, worker):
            self._release_lease(worker)
            if worker.worker_id in self.pool.workers:
                self.pool.give_back(worker)
        return worker

    def _release_lease(self, worker: WorkerProc) -> None:
        if worker.lease is not None and worker.lease_held:
            self.queue.release(worker.lease)
        worker.lease_held = False
        worker.lease = None
        self.free_gpus.extend(worker.gpu_ids)
        worker.gpu_ids = []

    def on_task_finished(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, TaskFinished)
        worker = self.pool.workers.get(route[0])
        for result in msg.results:
            task = self.tasks.get(result.task_id)
            if task is None and worker is not None and \
                    (worker.actor_id is not None or worker.ever_leased):
                self.direct.result_first(result, bufs)  # sent directly, not reported yet
                continue
            if worker is None or task is None or task.worker is not worker:
                # E.g. a queued task that was cancelled (and answered) before it ran.
                log.debug("%s: stale result for task %s ignored", self.name, result.task_id[:12])
                continue
            self._observe_duration(worker, task)
            self._detach(task)
            if result.delivered:
                self._skip_owner_push(task)
            if task.spec.actor_creation is not None:
                self._complete(task, result.returns, bufs, result.contains)
                self.actors.constructor_done(task, result.app_error,
                                             _error_text(result.returns, bufs))
                continue
            if task.spec.actor_id is not None:
                self.actors.call_finished(task)
                self._complete(task, result.returns, bufs, result.contains)
                continue
            if result.app_error and task.spec.retry_exceptions and task.retries_left > 0 \
                    and not task.cancelled:
                self._retry(task, "raised an exception")
            else:
                if result.app_error:
                    self.counters["failed"] += 1
                self._complete(task, result.returns, bufs, result.contains)
        self.schedule_soon()

    def _skip_owner_push(self, task: Task) -> None:
        for i in range(1, task.spec.num_returns + 1):
            obj = self.objects.get(return_object_hex(task.spec.task_id, i))
            if obj is not None and (task.owner, True) in obj.waiting_clients:
                obj.waiting_clients.remove((task.owner, True))

    def _retry(self, task: Task, why: str) -> None:
        self.events.retried(task, why)
        task.retries_left -= 1
        self.counters["retried"] += 1
        task.spec = task.spec.model_copy(update={"attempt": task.spec.attempt + 1})
        if self._wait_for_args(task):  # an input lost with a dead node is being rebuilt
            return
        log.info("%s: task %s (%s) %s; retrying (%d retries left)", self.name,
                 task.spec.task_id[:12], task.spec.function_name, why, task.retries_left)
        self._enqueue(task, front=True)

    def _complete(self, task: Task, returns: list[ObjectLoc], bufs: list[Any],
                  contains: dict[str, list[str]] | None = None) -> None:
        self.tasks.pop(task.spec.task_id, None)
        self.counters["finished"] += 1
        self.events.finished(task, returns, bufs)
        for loc in returns:
            data = bufs[loc.buf] if loc.buf >= 0 else None
            self._seal(loc.object_id, loc.size, data, loc.in_store, loc.is_error,
                       contains=contains.get(loc.object_id) if contains else None)
        if task.spec.origin_node and self.links is not None:
            self.links.report_done(task, returns, bufs, contains)
            for loc in returns:
                if not loc.in_store:  # the origin has the bytes now; store copies stay for it
                    self.drop_hold(loc.object_id, task.owner)
        if task.spec.actor_creation is not None and task.spec.actor_creation.max_restarts:
            return  # a restart runs the constructor again: its arguments stay pinned
        for arg in task.spec.args:
            if arg.ref is not None:
                obj = self.objects.unpin(arg.ref)
                if obj is not None:
                    self._maybe_free(obj)
        for oid in task.spec.nested_refs:
            obj = self.objects.unpin(oid)
            if obj is not None:
                self._maybe_free(obj)

    def fail_task(self, task: Task, error: BaseException) -> None:
        self.counters["failed"] += 1
        payload = serialize_error(error).to_bytes()
        returns = [ObjectLoc(object_id=return_object_hex(task.spec.task_id, i), size=len(payload),
                             buf=0, is_error=True) for i in range(1, task.spec.num_returns + 1)]
        self._complete(task, returns, [payload])

    # objects -------------------------------------------------------------
    def _seal(self, oid: str, size: int, data: Any, in_store: bool, is_error: bool,
              owner: bytes | None = None, job_id: str = "",
              contains: list[str] | None = None) -> None:
        sealed = self.objects.seal(oid, size, data, in_store, is_error, owner, job_id, contains,
                                   time.monotonic() if in_store else 0.0)
        for task in sealed.ready_tasks:
            if task.spec.actor_id is not None:
                self.actors.pump_for(task)
            else:
                self._enqueue(task)
        for ident, fetch in sealed.clients:
            self._push(ident, sealed.obj, fetch)
        if self.remote_refs.waiters:
            self.remote_refs.sealed(sealed.obj)
        if in_store:
            info = ObjectInfo(object_id=oid, size=size, locations=[self.node_id],
                              task_id=oid[:32], is_put=bool(int(oid[32:], 16) & 0x8000_0000))
            self.gcs.write(OBJECTS, oid, info.model_dump_json().encode())
        self._maybe_free(sealed.obj)

    def _push(self, ident: bytes, obj: LocalObject, fetch: bool) -> None:
        if ident not in self.clients:
            return
        if fetch and obj.location and not obj.in_store and obj.data is None \
                and self.links is not None:
            # The bytes are on another node: bring them here first.
            self.links.pull_from_node(obj.object_id, obj.location,
                                      lambda error: self._pushed_after_pull(ident, obj, error))
            return
        if not self._outbox_scheduled:
            self._outbox_scheduled = True
            self.after_batch(self._flush_outbox)
        if obj.in_store:
            obj.last_used = time.monotonic()
        self.outbox.setdefault(ident, []).append((obj, fetch))

    def _pushed_after_pull(self, ident: bytes, obj: LocalObject, error: str | None) -> None:
        if error is None or not obj.ready or obj.is_error:
            # Here now; or lost with its node and being rebuilt: answered once
            # sealed; or found lost meanwhile: the error says why.
            if obj.ready:
                self._push(ident, obj, True)
            else:
                obj.waiting_clients.append((ident, True))
            return
        where = f"node {obj.location[:12]}" if obj.location else "its node"
        payload = serialize_error(ObjectLostError(
            f"object {obj.object_id} could not be fetched from {where}: {error}"))
        data = payload.to_bytes()
        self.send(self.router, [ident], ObjectsReady(objects=[ObjectLoc(
            object_id=obj.object_id, size=len(data), buf=0, is_error=True)]), [data])

    def _flush_outbox(self) -> None:
        self._outbox_scheduled = False
        outbox, self.outbox = self.outbox, {}
        for ident, entries in outbox.items():
            locs: list[ObjectLoc] = []
            bufs: list[Any] = []
            for obj, fetch in entries:
                if fetch and not obj.in_store:
                    locs.append(construct(ObjectLoc, object_id=obj.object_id, size=obj.size,
                                          buf=len(bufs), is_error=obj.is_error))
                    bufs.append(obj.data)
                else:
                    locs.append(construct(ObjectLoc, object_id=obj.object_id, size=obj.size,
                                          in_store=obj.in_store and fetch, is_error=obj.is_error))
            msg = construct(ObjectsReady, kind="ObjectsReady", objects=locs)
            self.send(self.router, [ident], msg, bufs)

    def on_get(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, GetObjects)
        ident = route[0]
        for oid in msg.object_ids:
            obj = self.objects.entry(oid)
            if not obj.ready:
                obj.waiting_clients.append((ident, msg.fetch))
                if oid in msg.owners:  # a borrowed ref: its owner may be elsewhere, or gone
                    self.remote_refs.unready(obj, msg.owners[oid])
            elif msg.fetch and obj.spilled and not self.memory.restore(obj):
                self.restore_waiting.append((ident, oid))
            else:
                self._push(ident, obj, msg.fetch)

    def on_put(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, PutObject)
        if msg.in_store and msg.object_id not in self.store:
            raise ValueError(f"object {msg.object_id} was sealed without CreateObject")
        if not msg.in_store and len(bufs) != 1:
            raise ValueError(f"inline put of {msg.object_id} needs 1 frame, got {len(bufs)}")
        client = self.clients.get(route[0])
        self._seal(msg.object_id, msg.size, None if msg.in_store else bufs[0], msg.in_store, False,
                   owner=route[0], job_id=client.job_id if client else "", contains=msg.contains)

    def on_create(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, CreateObject)
        if msg.size < 0:
            raise ValueError(f"object {msg.object_id} has negative size {msg.size}")
        if msg.size > self.store.capacity:
            raise ObjectStoreFullError(self.memory.full_error(msg.size, msg.object_id, 0.0))
        path = self.memory.reserve(msg.object_id, msg.size)
        if path is None:
            # Back-pressure: answered when memory frees, or with an error at the deadline.
            self.memory.wait_for_room(route, msg.req_id, msg.object_id, msg.size)
        else:
            self.send(self.router, route, ObjectCreated(req_id=msg.req_id, path=path))

    def memory_tick(self) -> None:
        """Grant or fail creates waiting for memory; restore objects gets wait for."""
        if self.memory.pending:
            granted, expired = self.memory.retry_pending()
            for req, path in granted:
                self.send(self.router, req.route, ObjectCreated(req_id=req.req_id, path=path))
            for req, text in expired:
                log.warning("%s: %s", self.name, text)
                self.send(self.router, req.route, ErrorReply(
                    req_id=req.req_id, error=f"ObjectStoreFullError: {text}"))
        if self.restore_waiting:
            waiting, self.restore_waiting = self.restore_waiting, []
            for ident, oid in waiting:
                obj = self.objects.get(oid)
                if obj is not None:
                    self.on_get([ident], GetObjects(object_ids=[oid]), [])

    def on_release(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, ReleaseObjects)
        holder = route[0]
        # Borrows first: a ref borrowed and dropped in one report nets out.
        for owner, oids in msg.borrowed.items():
            for oid in oids:
                self.objects.hold(self.objects.entry(oid), holder)
            self.remote_refs.borrowed(owner, oids)  # owned on another node: tell it
        for oid in msg.object_ids:
            obj = self.objects.drop(oid, holder)
            if obj is not None:
                self._maybe_free(obj)

    def _maybe_free(self, obj: LocalObject) -> None:
        self.remote_refs.maybe_released(obj)
        if self.objects.freeable(obj):
            self._free(obj)

    def _free(self, obj: LocalObject) -> None:
        for inner in self.objects.remove(obj):
            self._maybe_free(inner)
        if obj.in_store:
            self.memory.free(obj)
            self.gcs.write(OBJECTS, obj.object_id, None)
            if self.memory.pending:
                self.after_batch(self.memory_tick)
        if obj.location and self.links is not None:
            self.links.free_remote(obj)
        for task_id in self.lineage.object_freed(obj.object_id):
            self.gcs.write(TASKS, task_id, None)

    def args_in_use(self) -> dict[str, int]:
        """Store objects that tasks sent to workers read: these must not spill."""
        used: dict[str, int] = {}
        for worker in self.pool.workers.values():
            for task in worker.tasks:
                for arg in task.spec.args:
                    if arg.ref is not None:
                        used[arg.ref] = used.get(arg.ref, 0) + 1
        return used

    def describe_client(self, ident: bytes) -> str:
        """Who a holder is, for `zray memory` and the full-store error."""
        client = self.clients.get(ident)
        worker = self.pool.workers.get(ident)
        if holder_node(ident):
            return f"node {holder_node(ident)[:12]} (borrower)"
        if worker is not None and worker.actor_id is not None:
            return f"actor {worker.actor_id[:12]} (pid {worker.pid})"
        if client is None:
            return f"process {ident.hex()[:12]} (gone)"
        return f"{'driver' if client.is_driver else 'worker'} pid {client.pid}"

    def on_list_objects(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, ListObjectsRequest)
        objects = list(self.objects.objects.values())
        self.send(self.router, route, ListObjectsReply(
            req_id=msg.req_id, total=len(objects),
            objects=summarize(objects, msg.limit, self.describe_client)))

    # cancellation and blocking ---------------------------------------------
    def on_cancel(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, CancelTask)
        self.cancel_task(msg.task_id, msg.force)

    def cancel_task(self, task_id: str, force: bool) -> None:
        msg = CancelTask(task_id=task_id, force=force)
        task = self.tasks.get(msg.task_id)
        if task is None or task.cancelled:
            return
        if task.forwarded_to and self.links is not None:
            self.links.cancel(task, msg.force)  # the node running it answers with the outcome
            return
        task.cancelled = True
        worker = task.worker
        if worker is None:
            self.queue.remove(lambda t: t is task)
            self.infeasible.pop(msg.task_id, None)
            self.fail_task(task, TaskCancelledError(
                f"task {task.spec.function_name} ({msg.task_id[:12]}) was cancelled before it ran"))
        elif worker.task is not task and not task.sent_direct:
            # Queued behind the worker's running task: resolved now; the worker
            # skips it when it gets there. (A task its driver sent the worker
            # may be running already: the tasks ahead may have ended untold.)
            self.send(self.router, [worker.worker_id + CONTROL_SUFFIX], msg)
            self._detach(task)
            self.fail_task(task, TaskCancelledError(
                f"task {task.spec.function_name} ({msg.task_id[:12]}) was cancelled before it ran"))
        elif msg.force:
            self.pool.kill(worker)
        else:
            # The worker interrupts it (KeyboardInterrupt) if it is still running it.
            self.send(self.router, [worker.worker_id + CONTROL_SUFFIX], msg)
            try:
                os.kill(worker.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def on_blocked(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, WorkerBlocked)
        worker = self.pool.workers.get(route[0])
        if worker is None or worker.actor_id is not None:
            return
        for task_id in msg.returned:
            task = self.tasks.get(task_id)
            if task is not None and task.worker is worker:
                worker.tasks.remove(task)
                task.worker = None
                self.queue.push(task, task.resources, front=True)
            elif task is None and worker.ever_leased:
                # Sent directly; queued once reported.
                self.leases.handed_back[task_id] = worker.leased_to or b""
        # A leased worker may block in a task the raylet has not heard of yet.
        if (worker.tasks or worker.leased_to is not None) and not worker.blocked:
            worker.blocked = True
            if worker.lease is not None and worker.lease_held:
                self.queue.release(worker.lease)
                worker.lease_held = False
        self.schedule_soon()

    def on_unblocked(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        worker = self.pool.workers.get(route[0])
        if worker is not None and worker.blocked:
            worker.blocked = False
            if worker.lease is not None and not worker.lease_held:
                # May oversubscribe for a moment, as the task resumes where it was.
                self.queue.acquire(worker.lease)
                worker.lease_held = True

    # workers -------------------------------------------------------------
    def reap_workers(self) -> None:
        dead = self.pool.reap()
        if dead:
            # Results a worker sent just before it died are read first, so that
            # finished tasks are not taken for lost ones.
            self._readers[self.router].drain_batch()
        for worker, code in dead:
            how = worker.exit_how or describe_exit(code)
            self.clients.pop(worker.worker_id, None)
            self.leases.died(worker, how)
            for obj in self.objects.drop_holder(worker.worker_id):
                self._maybe_free(obj)
            tasks = list(worker.tasks)
            if worker.actor_id is not None and not tasks:
                self._release_lease(worker)
                self.actors.worker_died(worker, [], how)
                continue
            if not tasks:
                if code != 0 and self.status.value == "running":
                    log.warning("%s: idle worker pid %d %s", self.name, worker.pid, how)
                continue
            self._release_lease(worker)
            worker.tasks.clear()
            for task in tasks:
                task.worker = None
            if worker.actor_id is not None:
                self.actors.worker_died(worker, tasks, how)
                continue
            head, queued = tasks[0], tasks[1:]
            for task in reversed(queued):  # never started: back to the front, no retry spent
                if task.sent_direct:
                    # It may have run: the worker may not have told of the tasks ahead yet.
                    self._worker_lost(task, worker, how)
                elif task.cancelled:
                    self.fail_task(task, TaskCancelledError(
                        f"task {task.spec.function_name} ({task.spec.task_id[:12]}) was cancelled"))
                else:
                    self._enqueue(task, front=True)
            self._worker_lost(head, worker, how)
        if dead:
            self._keep_pool_size()
            self.schedule_soon()

    def _keep_pool_size(self) -> None:
        """Keep at least one task worker per CPU (actors take theirs out of the pool)."""
        wanted = max(1, int(self.total.get("CPU", 1)))
        for _ in range(wanted - self.pool.task_workers()):
            self.pool.spawn()

    def restart_actor(self, creation: Task) -> None:
        creation.cancelled = False
        self.tasks[creation.spec.task_id] = creation
        self._enqueue(creation, front=True)

    def cancel_queued(self, task: Task) -> None:
        self.queue.remove(lambda t: t is task)
        self.infeasible.pop(task.spec.task_id, None)
        self.tasks.pop(task.spec.task_id, None)

    def on_kill_actor(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, KillActor)
        self.actors.kill(msg.actor_id, msg.no_restart)

    def _worker_lost(self, task: Task, worker: WorkerProc, how: str) -> None:
        if task.cancelled:
            self.fail_task(task, TaskCancelledError(
                f"task {task.spec.function_name} ({task.spec.task_id[:12]}) was cancelled; "
                f"its worker pid {worker.pid} was stopped"))
        elif task.retries_left > 0:
            self._retry(task, f"lost its worker pid {worker.pid} ({how})")
        else:
            error = OutOfMemoryError if worker.oom else WorkerCrashedError
            self.fail_task(task, error(
                f"the worker (pid {worker.pid}) running task {task.spec.function_name} "
                f"({task.spec.task_id[:12]}) {how}; retried {task.spec.attempt} times "
                f"(max_retries={task.spec.max_retries}); see its log {worker.log_path}"))

    def on_log(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, LogLines)
        self.log_pub.send_multipart([msg.job_id.encode(), *wire.encode(msg)], zmq.NOBLOCK)

    def place_locally(self, task: Task) -> None:
        """Queue here a task that was waiting for a placement."""
        self.infeasible.pop(task.spec.task_id, None)
        if not self._pull_remote_args(task, False):
            self.queue.push(task, task.resources)
            self.schedule_soon()

    # node failures and lineage replay -------------------------------------------
    def node_died(self, node_id: str, reason: str) -> None:
        """Another node was declared dead: rerun what it ran for this node, and
        rebuild the objects whose only copy it held."""
        if node_id == self.node_id:
            log.error("%s: this node was declared dead (%s); its results are no longer trusted, "
                      "so it stops (a supervisor restarts it as a new node)", self.name, reason)
            self.close(f"declared dead: {reason}")
            return
        if self.links is None or node_id in self.links.dead:
            return
        address = self.links.forget(node_id)  # first: nothing below may be sent there
        self.remote_refs.node_died(node_id, reason)
        why = f"node {node_id[:12]} died ({reason})"
        log.warning("%s: %s; failing over its work", self.name, why)
        lost = [o for o in self.objects.objects.values()
                if o.location == node_id and not o.in_store and o.data is None]
        for obj in self.objects.objects.values():
            if obj.location == node_id:
                obj.location = ""
        gone = [t for t in self.tasks.values() if t.forwarded_to == node_id]
        self.actor_routes.lost_with_node([t for t in gone if t.spec.actor_id is not None], why)
        for task in [t for t in gone if t.spec.actor_id is None]:
            task.forwarded_to = ""
            # A constructor is not rerun from here: the actor's row names the dead node.
            if task.retries_left > 0 and not task.cancelled and task.spec.actor_creation is None:
                self._retry(task, f"was running on {why}")
            else:
                self.fail_task(task, NodeDiedError(
                    f"task {task.spec.function_name} ({task.spec.task_id[:12]}) was running on "
                    f"{why}, and no retries are left (max_retries={task.spec.max_retries})"))
        for obj in lost:
            self.rebuild(obj, why)
        self._hold_tasks_with_lost_args()
        self.links.drop_peer(node_id, address)

    def _hold_tasks_with_lost_args(self) -> None:
        """Tasks queued here or waiting for a placement whose inputs were just
        lost: they wait for the rebuilt objects, then are queued again."""
        def lost_input(task: Task) -> bool:
            return any(arg.ref is not None and not self.objects.entry(arg.ref).ready
                       for arg in task.spec.args)

        for task in self.queue.remove(lost_input):
            self._wait_for_args(task)
        for task_id, task in list(self.infeasible.items()):
            if task.spec.actor_creation is None and lost_input(task):
                del self.infeasible[task_id]
                self.sched.pending.pop(task_id, None)
                self._wait_for_args(task)

    def rebuild(self, obj: LocalObject, why: str) -> None:
        """Lineage replay: run again the task that made a lost object, from its
        spec in the GCS (its own lost inputs are rebuilt the same way)."""
        oid = obj.object_id
        task_id = oid[:TASK_HEX]
        if task_id in self.tasks:
            obj.ready = False  # its task is queued or running already
            return
        if int(oid[TASK_HEX:], 16) & PUT_FLAG:
            self._lose(obj, f"object {oid} was stored with zray.put and its only copy was lost: "
                            f"{why}; a put has no lineage, so it cannot be rebuilt (keep a copy "
                            "elsewhere, or return the value from a task, which can be rerun)")
            return
        obj.ready = False

        def replay(reply: Message, bufs: list[Any]) -> None:
            found = getattr(reply, "found", [False])
            if not found or not found[0] or not bufs:
                self._lose(obj, f"object {oid} was lost on {why} and the task that made it left "
                                "no lineage to rebuild it from")
                return
            blobs = wire.unpack_blobs(bytes(bufs[0]))
            spec = TaskSpec.model_validate_json(blobs[0])
            if spec.max_retries == 0:
                self._lose(obj, f"object {oid} was lost on {why}; its task "
                                f"{spec.function_name} has max_retries=0, so it is not rebuilt")
                return
            self._replay(spec, list(blobs[1:]), obj.owner or b"", why)

        self.gcs.request(lambda r: GcsRead(req_id=r, table=TASKS, keys=[task_id]), (), replay,
                         shard=self.gcs.shard_of(task_id))

    def _replay(self, spec: TaskSpec, bufs: list[Any], owner: bytes, why: str) -> None:
        if spec.task_id in self.tasks:
            return
        spec = spec.model_copy(update={"attempt": spec.attempt + 1, "origin_node": ""})
        log.info("%s: rebuilding the results of task %s (%s), lost on %s", self.name,
                 spec.task_id[:12], spec.function_name, why)
        task = Task(spec, bufs, owner, spec.resources, retries_left=max(0, spec.max_retries - 1))
        self.tasks[spec.task_id] = task
        self.counters["reconstructed"] = self.counters.get("reconstructed", 0) + 1
        for arg in spec.args:
            if arg.ref is None:
                continue
            arg_obj = self.objects.entry(arg.ref)
            if not arg_obj.ready and arg.ref[:TASK_HEX] not in self.tasks:
                arg_obj.owner = arg_obj.owner or owner
                self.rebuild(arg_obj, why)  # an input that is gone too
            self.objects.depend(task, arg.ref)
        for oid in spec.nested_refs:
            self.objects.pin(oid)
        if task.missing == 0:
            self._enqueue(task)

    def _lose(self, obj: LocalObject, text: str) -> None:
        log.warning("%s: %s", self.name, text)
        data = serialize_error(ObjectLostError(text)).to_bytes()
        obj.ready = False
        self._seal(obj.object_id, len(data), data, False, True)

    # other nodes -------------------------------------------------------------
    def submit_forwarded(self, origin: bytes, spec: TaskSpec, bufs: list[Any]) -> None:
        """Run a task another node forwarded; its results go back to that node."""
        self._submit(origin, spec, bufs)

    def finish_forwarded(self, task: Task, returns: list[ObjectLoc], bufs: list[Any],
                         app_error: bool, contains: dict[str, list[str]]) -> None:
        """The node this task was forwarded to reports its outcome."""
        if app_error:
            self.counters["failed"] += 1
        self._complete(task, returns, bufs, contains)
        self.schedule_soon()

    def seal_copy(self, oid: str, size: int, data: Any, in_store: bool, is_error: bool,
                  contains: list[str] | None = None) -> None:
        """A copy of an object owned on another node arrived here."""
        self._seal(oid, size, data, in_store, is_error, contains=contains)

    def drop_hold(self, oid: str, holder: bytes) -> None:
        obj = self.objects.drop(oid, holder)
        if obj is not None:
            self._maybe_free(obj)

    def argument_lost(self, oid: str, why: str) -> None:
        """An argument of tasks forwarded here could not be fetched: hand them back
        to their owners' nodes, which rerun them once it is available again."""
        obj = self.objects.get(oid)
        if obj is None:
            return
        log.info("%s: argument %s not fetched (%s); returning its tasks to their owners",
                 self.name, oid[:16], why)
        waiting, obj.waiting_tasks = obj.waiting_tasks, []
        for task in waiting:
            if self.tasks.pop(task.spec.task_id, None) is None or self.links is None:
                continue
            self.links.report_lost(task, [oid])
            self.actor_placement.argument_lost(task, oid)
            for i in range(1, task.spec.num_returns + 1):
                ret = self.objects.get(return_object_hex(task.spec.task_id, i))
                if ret is not None and not ret.ready:
                    self.objects.remove(ret)
            for arg in task.spec.args:
                if arg.ref is not None and arg.ref != oid:
                    other = self.objects.unpin(arg.ref)
                    if other is not None:
                        if task in other.waiting_tasks:
                            other.waiting_tasks.remove(task)
                        self._maybe_free(other)
        if not obj.waiting_tasks and obj.pins <= len(waiting):
            self.objects.remove(obj)

    def rerun_forwarded(self, task: Task, lost: list[str]) -> None:
        """The node a task was forwarded to could not fetch its arguments."""
        log.info("%s: task %s came back unrun (arguments %s not fetched there); rescheduling",
                 self.name, task.spec.task_id[:12], ", ".join(o[:16] for o in lost))
        if task.spec.actor_id is not None:
            self.actor_routes.submit(task)
            return
        if task.spec.actor_creation is not None:
            self.actor_placement.came_back(task)
        if not self._wait_for_args(task):
            self._enqueue(task)

    # spill-over --------------------------------------------------------------
    def on_placed(self, msg: TaskPlaced) -> None:
        task = self.infeasible.get(msg.task_id)
        if task is None or (task.spec.actor_creation is not None
                            and not self.actor_placement.placeable(task)):
            return
        if self._wait_for_args(task):  # an input was lost meanwhile: placed again once rebuilt
            del self.infeasible[msg.task_id]
            return
        if msg.node_id == self.node_id:
            if self.queue.feasible(task.resources):
                self.place_locally(task)
            return
        if self._forward(task, msg.node_id):
            del self.infeasible[msg.task_id]
            return
        # The node died since the scheduler chose it, or its record has not
        # reached this node yet: run the task here if it can, else ask again.
        log.info("%s: task %s placed on node %s, which this node does not know alive; "
                 "placing it again", self.name, msg.task_id[:12], msg.node_id[:8])
        if self.queue.feasible(task.resources):
            self.place_locally(task)
        else:
            self.loop.call_later(PLACE_AGAIN_DELAY, self._place_again, msg.task_id)

    def _place_again(self, task_id: str) -> None:
        task = self.infeasible.get(task_id)
        if task is not None and task_id not in self.sched.pending:
            self.sched.spill(task)
        self.settle()

    def node_info(self, alive: bool = True) -> NodeInfo:
        now = time.time()
        return NodeInfo(
            node_id=self.node_id, node_name=self.settings.node_name or socket.gethostname(),
            host=socket.gethostname(), address=self.links.address if self.links else "",
            local_address=self.local_address, store_dir=self.store_dir,
            session_dir=self.session_dir, pid=os.getpid(), alive=alive, start_time=self.started,
            heartbeat_time=now, resources_total=self.total,
            resources_available=dict(self.queue.available), store_used=self.store.used,
            store_capacity=self.store.capacity, num_objects=len(self.objects),
            spilled_bytes=self.memory.spill.used, num_spilled=len(self.memory.spill),
            tasks_queued=len(self.queue) + sum(1 for t in self.tasks.values() if t.missing),
            tasks_running=sum(1 for w in self.pool.workers.values() if w.task is not None),
            tasks_finished=self.counters["finished"], tasks_failed=self.counters["failed"],
            workers=len(self.pool.workers), tasks_waiting=self._waiting_shapes())

    def _waiting_shapes(self) -> list[str]:
        shapes: dict[str, int] = {}
        for task in self.infeasible.values():
            shape = str(dict(sorted(task.resources.items())))
            shapes[shape] = shapes.get(shape, 0) + 1
        return [f"{count} x {shape}" for shape, count in sorted(shapes.items())]

    def publish_node(self) -> None:
        self.gcs.write(NODES, self.node_id, self.node_info().model_dump_json().encode())

    def on_stats(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, NodeStatsRequest)
        stats: dict[str, object] = {**self.node_info().model_dump(), **self.counters,
                                    "infeasible": len(self.infeasible)}
        self.send(self.router, route, NodeStatsReply(req_id=msg.req_id, stats=stats))

    def on_close(self) -> None:
        self.heartbeats.close()
        self.pool.stop_all()
        self.store.destroy()
        self.memory.spill.destroy()
        if not self.settings.spill_dir:
            shutil.rmtree(self.spill_dir, ignore_errors=True)
        self.observer.close()
        self.gcs.write(NODES, self.node_id, self.node_info(alive=False).model_dump_json().encode())
        self.gcs.flush()
        # Give the final node record a moment to leave; other sockets do not linger.
        self.gcs.linger(0.5)


def _error_text(returns: list[ObjectLoc], bufs: list[Any]) -> str:
    """The message of the error a failed task returned, for logs and causes."""
    for loc in returns:
        if loc.is_error and loc.buf >= 0:
            try:
                _, error = deserialize(bufs[loc.buf])
            except Exception as exc:  # unpicklable here: the raylet lacks the user's modules
                return f"(error not readable by the raylet: {exc})"
            return str(error)
    return ""
