"""The raylet's links to the other raylets: forwarded tasks and object transfer.

A task this node forwards stays in its task table (it owns the task's
lineage and its caller's references) until the node that ran it reports the
results: small ones inline, store objects as kept there. Those copies are
held for this node and freed when it lets go. A task forwarded here runs like
a local one; its arguments missing from this store are pulled first.

Pulls move an object in chunks straight between the two stores (pread on
one side, pwrite on the other), so no process holds a whole large object in
Python memory; concurrent pulls of one object share one transfer.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import zmq

from zray.common import wire
from zray.common.messages.base import ErrorReply, Message
from zray.common.messages.node import (
    NODE_REPLIES,
    NODE_REQUESTS,
    BorrowObjects,
    CancelForwarded,
    ForwardedTask,
    ForwardTasks,
    FreeObjects,
    ObjectChunk,
    ObjectMissing,
    ObjectsResolved,
    PullObject,
    RemoteArg,
    RemoteResult,
    ResolveObjects,
    TasksDone,
)
from zray.common.messages.raylet import KillActor, split_frames
from zray.common.messages.tables import NODES, NodeInfo
from zray.common.messages.task import ObjectLoc
from zray.common.sockets import bind, connect

if TYPE_CHECKING:
    from zray.services.gcs.clone import RowChange
    from zray.services.gcs.subscriber import ServiceSubscriber
    from zray.services.raylet.server import Raylet
    from zray.services.raylet.state import LocalObject, Task

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 * 1024 * 1024
# A pull that sees no chunk for this long is given up (the holder died or lost it).
PULL_TIMEOUT = 30.0

PullDone = Callable[[str | None], None]  # None: the object is in this store now; else why not


@dataclass
class _Pull:
    object_id: str
    address: str
    waiters: list[PullDone]
    size: int = -1
    received: int = 0
    fd: int = -1
    is_error: bool = False
    last_chunk: float = field(default_factory=time.monotonic)


class NodeLinks:
    def __init__(self, raylet: Raylet, bind_address: str) -> None:
        self.r = raylet
        self.router = raylet.socket(zmq.ROUTER)
        self.address = bind(self.router, bind_address)
        raylet.add_reader(self.router, wire.Protocol("node", NODE_REQUESTS), {
            ForwardTasks: self.on_forward_tasks,
            PullObject: self.on_pull_request,
            FreeObjects: self.on_free,
            CancelForwarded: self.on_cancel_forwarded,
            KillActor: self.on_kill_actor,
            BorrowObjects: raylet.remote_refs.on_borrow,
            ResolveObjects: raylet.remote_refs.on_resolve,
        }, routed=True)
        self.nodes: dict[str, NodeInfo] = {}
        self.dead: set[str] = set()
        self._socks: dict[str, zmq.Socket[Any]] = {}
        self._pulls: dict[str, _Pull] = {}
        self._frees: dict[str, list[str]] = {}
        # For the metrics exporter: transfers and forwarded tasks so far.
        self.stats = dict.fromkeys(("pulls", "pulled_bytes", "served_bytes", "forwarded", "received"), 0)
        raylet.every(1.0, self._expire_pulls)

    # peers ----------------------------------------------------------------
    def follow(self, subscriber: ServiceSubscriber) -> None:
        subscriber.follow(NODES, self._on_node_changes)

    def _on_node_changes(self, changes: list[RowChange]) -> None:
        for change in changes:
            if change.new is None:
                self.nodes.pop(change.key, None)
                continue
            info = NodeInfo.model_validate_json(change.new)
            if info.node_id != self.r.node_id and info.node_id not in self.dead:
                self.nodes[info.node_id] = info

    def forget(self, node_id: str) -> str:
        """A node died: never place or forward on it again. Returns its address."""
        self.dead.add(node_id)
        info = self.nodes.pop(node_id, None)
        return info.address if info is not None else ""

    def drop_peer(self, node_id: str, address: str) -> None:
        """Stop talking to a dead node; transfers from it fail (their waiters rebuild)."""
        sock = self._socks.pop(address, None)
        if sock is not None:
            self.r.remove_socket(sock)
        for pull in [p for p in self._pulls.values() if p.address == address]:
            self._finish(pull, f"node {node_id[:12]} died")

    def peers(self) -> list[NodeInfo]:
        return [n for n in self.nodes.values() if n.alive and n.address.startswith("tcp://")]

    def peer(self, node_id: str) -> NodeInfo | None:
        info = self.nodes.get(node_id)
        return info if info is not None and info.alive and info.address else None

    def _sock(self, address: str) -> zmq.Socket[Any]:
        sock = self._socks.get(address)
        if sock is None:
            sock = self.r.socket(zmq.DEALER, identity=self.r.node_id.encode())
            connect(sock, address)
            self.r.add_reader(sock, wire.Protocol("node-replies", NODE_REPLIES), {
                TasksDone: self.on_tasks_done,
                ObjectChunk: self.on_chunk,
                ObjectMissing: self.on_missing,
                ErrorReply: self.on_error,
                BorrowObjects: self.r.remote_refs.on_borrow,
                ObjectsResolved: self.r.remote_refs.on_resolved,
            }, routed=False)
            self._socks[address] = sock
        return sock

    def send_to_node(self, node_id: str, msg: Message, frames: list[Any] | None = None) -> bool:
        """Send a request to a live peer; False if it is not reachable."""
        info = self.peer(node_id)
        if info is None:
            return False
        self.r.send(self._sock(info.address), [], msg, frames or [])
        return True

    def on_error(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, ErrorReply)
        log.error("%s: a peer refused a request: %s", self.r.name, msg.error)

    # forwarding (this node owns the task) ----------------------------------
    def forward(self, task: Task, node_id: str) -> bool:
        """Send a ready task to run on `node_id`; False if that node is not reachable."""
        info = self.peer(node_id)
        if info is None:
            return False
        frames = list(task.bufs)
        args: list[RemoteArg] = []
        for arg in task.spec.args:
            if arg.ref is None:
                continue
            obj = self.r.objects.entry(arg.ref)
            if obj.in_store or obj.location:
                where = self.address if not obj.location else self._address_of(obj.location)
                args.append(RemoteArg(object_id=arg.ref, size=obj.size, address=where,
                                      is_error=obj.is_error))
            else:
                args.append(RemoteArg(object_id=arg.ref, size=obj.size, buf=len(frames),
                                      is_error=obj.is_error))
                frames.append(obj.data)
        task.forwarded_to = node_id
        self.stats["forwarded"] += 1
        self.r.send(self._sock(info.address), [],
                    ForwardTasks(tasks=[ForwardedTask(spec=task.spec, args=args)],
                                 buf_counts=[len(frames)]), frames)
        log.debug("%s: task %s forwarded to node %s", self.r.name, task.spec.task_id[:12], node_id[:8])
        return True

    def _address_of(self, node_id: str) -> str:
        info = self.nodes.get(node_id)
        return info.address if info is not None else ""

    def on_tasks_done(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, TasksDone)
        for result in msg.results:
            task = self.r.tasks.get(result.task_id)
            if task is None or task.forwarded_to != msg.node_id:
                continue
            if result.lost_args:
                task.forwarded_to = ""
                self.r.rerun_forwarded(task, result.lost_args)
                continue
            returns: list[ObjectLoc] = []
            for loc in result.returns:
                if loc.in_store:
                    # Kept on the node that ran it: ready here, bytes there. The owner
                    # hears it is ready; the bytes move only when something reads them.
                    obj = self.r.objects.entry(loc.object_id)
                    obj.location = msg.node_id
                    obj.waiting_clients = [(ident, False) if ident == task.owner else (ident, fetch)
                                           for ident, fetch in obj.waiting_clients]
                    returns.append(loc.model_copy(update={"in_store": False}))
                else:
                    returns.append(loc)
            task.forwarded_to = ""
            self.r.remote_refs.borrowed_by(msg.node_id, result.borrowed)  # before its pins go
            self.r.remote_refs.kept_by(msg.node_id, result.kept)
            self.r.finish_forwarded(task, returns, bufs, result.app_error, result.contains)
            self._seal_nested(msg.node_id, result, bufs)

    def free_remote(self, obj: LocalObject) -> None:
        """This node let go of an object whose bytes another node keeps for it."""
        self._free_at(obj.location, obj.object_id)

    def _free_at(self, node_id: str, oid: str) -> None:
        info = self.nodes.get(node_id)
        if info is None:
            return
        if not self._frees:
            self.r.after_batch(self._flush_frees)
        self._frees.setdefault(info.address, []).append(oid)

    def _flush_frees(self) -> None:
        frees, self._frees = self._frees, {}
        for address, oids in frees.items():
            self.r.send(self._sock(address), [], FreeObjects(object_ids=oids))

    def cancel(self, task: Task, force: bool) -> None:
        info = self.peer(task.forwarded_to)
        if info is not None:
            self.r.send(self._sock(info.address), [],
                        CancelForwarded(task_id=task.spec.task_id, force=force))

    def kill_actor(self, node_id: str, actor_id: str, no_restart: bool) -> bool:
        """Ask the node hosting an actor to kill it; False if that node is not reachable."""
        info = self.peer(node_id)
        if info is not None:
            self.r.send(self._sock(info.address), [], KillActor(actor_id=actor_id, no_restart=no_restart))
        return info is not None

    def on_kill_actor(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, KillActor)
        self.r.actors.kill(msg.actor_id, msg.no_restart)

    # running tasks another node forwarded ----------------------------------
    def on_forward_tasks(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, ForwardTasks)
        origin = route[0]
        if len(msg.buf_counts) != len(msg.tasks):
            raise ValueError(f"{len(msg.tasks)} tasks but {len(msg.buf_counts)} buf_counts")
        for fwd, frames in zip(msg.tasks, split_frames(bufs, msg.buf_counts), strict=True):
            spec = fwd.spec.model_copy(update={"origin_node": origin.decode()})
            self.stats["received"] += 1
            for arg in fwd.args:
                obj = self.r.objects.entry(arg.object_id)
                if obj.ready:
                    continue
                if arg.buf >= 0:
                    if arg.buf >= len(frames):
                        raise ValueError(f"task {spec.task_id} names missing frame {arg.buf}")
                    self.r.seal_copy(arg.object_id, arg.size, frames[arg.buf], False, arg.is_error)
                elif arg.address != self.address:
                    self.pull(arg.object_id, arg.address, self._pulled_arg(arg.object_id))
            own_frames = frames[:len(frames) - sum(1 for a in fwd.args if a.buf >= 0)]
            self.r.submit_forwarded(origin, spec, own_frames)

    def _pulled_arg(self, oid: str) -> PullDone:
        def done(error: str | None) -> None:
            if error is not None:
                self.r.argument_lost(oid, error)

        return done

    def report_done(self, task: Task, returns: list[ObjectLoc], bufs: list[Any],
                    contains: dict[str, list[str]] | None) -> None:
        """A forwarded task finished here: tell the node that owns it."""
        origin = task.owner
        frames: list[Any] = []
        locs: list[ObjectLoc] = []
        for loc in returns:
            if loc.buf >= 0:
                locs.append(loc.model_copy(update={"buf": len(frames)}))
                frames.append(bufs[loc.buf])
            else:
                locs.append(loc)
        contains = dict(contains or {})
        nested = self._nested_copies(contains, origin, frames)
        result = RemoteResult(task_id=task.spec.task_id, returns=locs,
                              app_error=any(loc.is_error for loc in returns), contains=contains,
                              borrowed=self.r.remote_refs.task_done(task),
                              kept=self.r.remote_refs.keep_for_origin(task, contains),
                              nested=nested)
        self.r.send(self.router, [origin], TasksDone(node_id=self.r.node_id, results=[result]), frames)

    def _nested_copies(self, contains: dict[str, list[str]], origin: bytes,
                       frames: list[Any]) -> list[ObjectLoc]:
        """The objects of this node that a forwarded task's returns nest, at any
        depth (a put's ref returned in a list): small ones travel inline in
        `frames`; store ones stay here, held for the origin until it frees them.
        Their own nesting is added to `contains`."""
        locs: list[ObjectLoc] = []
        seen: set[str] = set()
        todo = [oid for inner in list(contains.values()) for oid in inner]
        while todo:
            oid = todo.pop(0)
            obj = self.r.objects.get(oid)
            if oid in seen or obj is None or not obj.ready or obj.location:
                continue  # not here (e.g. a ref the task borrowed): its owner keeps it
            seen.add(oid)
            if obj.in_store or obj.spilled:
                self.r.objects.hold(obj, origin)
                locs.append(ObjectLoc(object_id=oid, size=obj.size, in_store=True, is_error=obj.is_error))
            elif obj.data is not None:
                locs.append(ObjectLoc(object_id=oid, size=obj.size, buf=len(frames), is_error=obj.is_error))
                frames.append(obj.data)
            else:
                continue
            if obj.contains:
                contains[oid] = list(obj.contains)
                todo.extend(obj.contains)
        return locs

    def _seal_nested(self, node_id: str, result: RemoteResult, bufs: list[Any]) -> None:
        """Objects a forwarded task's returns nest, sent with them (after the
        returns, which keep them alive through their nesting)."""
        for loc in result.nested:
            obj = self.r.objects.entry(loc.object_id)
            if obj.ready:
                if loc.in_store:  # a copy is here already: the node need not keep one
                    self._free_at(node_id, loc.object_id)
                continue
            if loc.in_store:
                obj.location = node_id
            data = bufs[loc.buf] if loc.buf >= 0 else None
            self.r.seal_copy(loc.object_id, loc.size, data, False, loc.is_error,
                             contains=result.contains.get(loc.object_id))

    def report_lost(self, task: Task, lost: list[str]) -> None:
        """A forwarded task cannot run here: an argument could not be fetched."""
        result = RemoteResult(task_id=task.spec.task_id, returns=[], lost_args=lost,
                              borrowed=self.r.remote_refs.task_done(task))
        self.r.send(self.router, [task.owner], TasksDone(node_id=self.r.node_id, results=[result]))

    def on_free(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, FreeObjects)
        for oid in msg.object_ids:
            self.r.drop_hold(oid, route[0])

    def on_cancel_forwarded(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, CancelForwarded)
        self.r.cancel_task(msg.task_id, msg.force)

    # object transfer ------------------------------------------------------
    def pull(self, oid: str, address: str, done: PullDone) -> None:
        """Copy an object from the store of the node at `address` into this one."""
        pull = self._pulls.get(oid)
        if pull is not None:
            pull.waiters.append(done)  # one transfer serves every waiter
            return
        if not address:
            done(f"no node is known to hold object {oid}")
            return
        self._pulls[oid] = _Pull(oid, address, [done])
        self.r.send(self._sock(address), [], PullObject(object_id=oid))

    def pull_from_node(self, oid: str, node_id: str, done: PullDone) -> None:
        self.pull(oid, self._address_of(node_id), done)

    def on_pull_request(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, PullObject)
        oid = msg.object_id
        obj = self.r.objects.get(oid)
        if obj is None or not obj.ready or not obj.in_store or oid not in self.r.store:
            reason = "not in this node's store" if obj is None or not obj.spilled else "spilled"
            if obj is not None and obj.spilled and self.r.memory.restore(obj):
                reason = ""
            if reason:
                self.r.send(self.router, route, ObjectMissing(object_id=oid, reason=reason))
                return
        assert obj is not None
        path = self.r.store.path(oid)
        size = obj.size
        with open(path, "rb") as f:
            fd = f.fileno()
            offset = 0
            while True:
                chunk = os.pread(fd, min(CHUNK_BYTES, size - offset), offset) if size else b""
                self.r.send(self.router, route, ObjectChunk(object_id=oid, size=size, offset=offset,
                                                            is_error=obj.is_error), [chunk])
                offset += len(chunk)
                self.stats["served_bytes"] += len(chunk)
                if offset >= size or not chunk:
                    break

    def on_chunk(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, ObjectChunk)
        pull = self._pulls.get(msg.object_id)
        if pull is None or len(bufs) != 1:
            return
        pull.last_chunk = time.monotonic()
        if pull.fd < 0:
            path = self.r.memory.reserve(msg.object_id, msg.size)
            if path is None:
                self._finish(pull, f"no room in this node's store for {msg.size} bytes")
                return
            pull.size, pull.is_error = msg.size, msg.is_error
            pull.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            os.ftruncate(pull.fd, msg.size)
        data = bufs[0]
        os.pwrite(pull.fd, memoryview(data), msg.offset)
        pull.received += len(data)
        if pull.received >= pull.size:
            os.close(pull.fd)
            pull.fd = -1
            self.r.seal_copy(msg.object_id, pull.size, None, True, pull.is_error)
            self.stats["pulls"] += 1
            self.stats["pulled_bytes"] += pull.size
            self._finish(pull, None)

    def on_missing(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, ObjectMissing)
        pull = self._pulls.get(msg.object_id)
        if pull is not None:
            self._finish(pull, f"object {msg.object_id} is {msg.reason} at {pull.address}")

    def _finish(self, pull: _Pull, error: str | None) -> None:
        self._pulls.pop(pull.object_id, None)
        if pull.fd >= 0:
            os.close(pull.fd)
            pull.fd = -1
        if error is not None and pull.size >= 0 and pull.object_id in self.r.store:
            self.r.store.free(pull.object_id)
        for done in pull.waiters:
            done(error)

    def _expire_pulls(self) -> None:
        now = time.monotonic()
        for pull in list(self._pulls.values()):
            if now - pull.last_chunk > PULL_TIMEOUT:
                self._finish(pull, f"no data from {pull.address} for {PULL_TIMEOUT:.0f}s")
