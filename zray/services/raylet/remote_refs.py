"""References that cross nodes: borrows reported to the owner's node, values
fetched from it, and what a borrower sees when the owner is gone.

Borrower side (a process here holds a ref whose owner runs on another node):
the borrow goes to the owner's node (borrow_ledger.py decides when), and a
`get` of an object this node lacks asks the owner's node for it
(ResolveObjects): the answer is the value inline, or the node whose store
holds it, to pull from.

Owner side: each borrower node counts as one holder of the object until it
releases it or dies; nodes that asked for an object not made yet are answered
when it is sealed.

When the owner is gone (its process exited, or its node died) and no copy of
the value is here, a get ends at once with OwnerDiedError instead of waiting
for an object nobody will make or keep.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from zray.common.errors import ObjectLostError, OwnerDiedError
from zray.common.messages.base import Message
from zray.common.messages.node import BorrowObjects, ObjectsResolved, ResolvedObject, ResolveObjects
from zray.common.messages.raylet import ObjectsReady
from zray.common.messages.task import ObjectLoc
from zray.common.owners import split_owner
from zray.common.serialization import serialize_error
from zray.services.raylet.borrow_ledger import BorrowLedger, node_holder
from zray.services.raylet.lineage import TASK_HEX

if TYPE_CHECKING:
    from zray.services.raylet.server import Raylet
    from zray.services.raylet.state import LocalObject, Task

log = logging.getLogger(__name__)

WORKER_ID_BYTES = 16  # a process holder's key; a node holder's is longer (node_holder)


class RemoteRefs:
    def __init__(self, raylet: Raylet) -> None:
        self.r = raylet
        self.ledger = BorrowLedger(raylet.node_id)
        # Borrower side: objects asked of their owner's node (object id -> node).
        self.resolving: dict[str, str] = {}
        self._resolves: dict[str, dict[str, str]] = {}
        # Owner side: nodes waiting for objects not sealed yet, and answers to send.
        self.waiters: dict[str, set[str]] = {}
        self._answers: dict[str, tuple[list[ResolvedObject], list[Any]]] = {}
        self._scheduled = False

    # borrower side ---------------------------------------------------------
    def borrowed(self, owner: str, oids: list[str]) -> None:
        """A process here reported refs it borrows from `owner` (WORKER@NODE)."""
        _, node = split_owner(owner)
        if self.r.links is None or not node or node == self.r.node_id:
            return
        for oid in oids:
            if self.ledger.learn_owner(oid, node) and self.ledger.held(oid):
                self._soon()

    def forwarded(self, task: Task) -> None:
        """A task another node forwarded is submitted here: that node keeps the
        refs nested in its arguments until the task's outcome arrives."""
        if task.spec.nested_refs:
            self.ledger.cover(list(task.spec.nested_refs))

    def task_done(self, task: Task) -> list[str]:
        """A forwarded task ends (before its pins go): the nested refs something
        here still holds, to report as borrowed in its outcome."""
        oids = task.spec.nested_refs
        if not oids:
            return []
        own = Counter(oids)
        own.update(arg.ref for arg in task.spec.args if arg.ref is not None)
        still: dict[str, bool] = {}
        for oid in own:
            obj = self.r.objects.get(oid)
            still[oid] = obj is not None and not _owned_by_a_process_here(obj) and (
                bool(obj.holders) or obj.contained_in > 0 or obj.pins > own[oid])
        piggyback = self.ledger.task_done(list(oids), task.owner.decode(), still)
        if self.ledger.out:
            self.flush()  # borrows registered with other owners leave before the outcome
        return piggyback

    def keep_for_origin(self, task: Task, contains: dict[str, list[str]] | None) -> list[str]:
        """A forwarded task's returns nest refs and go back to the node that
        forwarded it: hold those objects here for that node (before this node's
        own holds may go) unless it owns them; it releases them later."""
        if not contains:
            return []
        origin = task.owner.decode()
        kept = []
        for oid in dict.fromkeys(o for oids in contains.values() for o in oids):
            obj = self.r.objects.get(oid)
            if obj is None or not (_owned_by_a_process_here(obj)
                                   or self.ledger.owner_nodes.get(oid, origin) != origin):
                continue
            self.r.objects.hold(obj, node_holder(origin))
            kept.append(oid)
        return kept

    def kept_by(self, node: str, oids: list[str]) -> None:
        """Node `node` holds these objects for this one (nested in results it
        sent): one borrow registered there, released when nothing here holds them."""
        for oid in oids:
            obj = self.r.objects.get(oid)
            if self.ledger.kept_for_us(oid, node, obj is not None and _owned_by_a_process_here(obj)):
                self._soon()

    def maybe_released(self, obj: LocalObject) -> None:
        """Called whenever the object may have lost its last holder here."""
        oid = obj.object_id
        if not self.ledger.tracks(oid) or obj.holders or obj.pins > 0 or obj.contained_in > 0:
            return
        if self.ledger.unheld(oid):
            self._soon()
        if not obj.ready and not obj.waiting_clients and not obj.waiting_tasks \
                and oid not in self.resolving and oid[:TASK_HEX] not in self.r.tasks \
                and not self.ledger.tracks(oid):
            self.r.objects.remove(obj)  # a record of a ref never fetched here

    def unready(self, obj: LocalObject, owner: str) -> None:
        """A process here waits for an object this node does not have."""
        worker, node = split_owner(owner)
        oid = obj.object_id
        if node and node != self.r.node_id:
            self.ledger.learn_owner(oid, node)
            self._resolve(obj, worker, node)
        elif worker and not self._alive(worker) and oid[:TASK_HEX] not in self.r.tasks:
            self._owner_died(obj, f"its owner ({self._who(worker)}) exited")

    def args_missing(self, task: Task) -> None:
        """A task submitted here waits for arguments: ask their owners' nodes
        for the ones owned elsewhere."""
        for arg in task.spec.args:
            node = self.ledger.owner_nodes.get(arg.ref) if arg.ref is not None else None
            if node is not None and arg.ref is not None:
                obj = self.r.objects.get(arg.ref)
                if obj is not None and not obj.ready:
                    self._resolve(obj, "", node)

    def _resolve(self, obj: LocalObject, worker: str, node: str) -> None:
        oid = obj.object_id
        if oid in self.resolving:
            return
        links = self.r.links
        if links is None or node in links.dead or links.peer(node) is None:
            self._owner_died(obj, f"its owner's node {node[:12]} died or left the cluster")
            return
        self.resolving[oid] = node
        self._resolves.setdefault(node, {})[oid] = worker
        self._soon()

    def on_resolved(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, ObjectsResolved)
        for res in msg.objects:
            oid = res.object_id
            self.resolving.pop(oid, None)
            obj = self.r.objects.get(oid)
            if obj is None or obj.ready:
                continue
            if res.buf >= 0:
                if res.buf >= len(bufs):
                    raise ValueError(f"object {oid} names missing frame {res.buf}")
                self.r.seal_copy(oid, res.size, bufs[res.buf], False, res.is_error)
            elif self.r.links is not None:
                self.r.links.pull(oid, res.address,
                                  lambda error, oid=oid: self._pulled(oid, error))  # type: ignore[misc]

    def _pulled(self, oid: str, error: str | None) -> None:
        if error is None:
            return  # sealed here by the transfer
        obj = self.r.objects.get(oid)
        if obj is None or obj.ready:
            return
        data = serialize_error(ObjectLostError(
            f"object {oid} could not be fetched from the node that holds it: {error}")).to_bytes()
        waiting, obj.waiting_clients = obj.waiting_clients, []
        for ident, _ in waiting:
            self.r.send(self.r.router, [ident], ObjectsReady(objects=[ObjectLoc(
                object_id=oid, size=len(data), buf=0, is_error=True)]), [data])

    def _owner_died(self, obj: LocalObject, how: str) -> None:
        oid = obj.object_id
        text = (f"object {oid} is lost: {how}, and no copy of its value is left. The owner of a "
                "ref (the process that called put or the task that returns it) must stay alive "
                "while others use it; pass the value itself, or return it from a task, instead")
        log.info("%s: %s", self.r.name, text)
        data = serialize_error(OwnerDiedError(text)).to_bytes()
        self.r.seal_copy(oid, len(data), data, False, True)

    # owner side --------------------------------------------------------------
    def on_borrow(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, BorrowObjects)
        self.borrowed_by(msg.node_id, msg.borrowed)
        holder = node_holder(msg.node_id)
        for oid in msg.released:
            self.r.drop_hold(oid, holder)

    def borrowed_by(self, node: str, oids: list[str]) -> None:
        """Node `node` holds refs to these objects (counted before anything else
        in the message that carries them lets go)."""
        if not oids or (self.r.links is not None and node in self.r.links.dead):
            return
        holder = node_holder(node)
        for oid in oids:
            self.r.objects.hold(self.r.objects.entry(oid), holder)

    def on_resolve(self, route: list[bytes], msg: Message, bufs: list[Any]) -> None:
        assert isinstance(msg, ResolveObjects)
        node = route[0].decode(errors="replace")
        for oid, worker in msg.owners.items():
            obj = self.r.objects.get(oid)
            if obj is not None and obj.ready:
                self._answer(node, obj)
            elif oid[:TASK_HEX] in self.r.tasks or not worker or self._alive(worker):
                self.waiters.setdefault(oid, set()).add(node)
            else:
                self._answer_error(node, oid, OwnerDiedError(
                    f"object {oid} is lost: its owner ({self._who(worker)} on node "
                    f"{self.r.node_id[:12]}) exited, and no copy of its value is left. The owner "
                    "of a ref must stay alive while others use it; pass the value itself, or "
                    "return it from a task, instead"))
        self._soon()

    def sealed(self, obj: LocalObject) -> None:
        nodes = self.waiters.pop(obj.object_id, None)
        for node in nodes or ():
            self._answer(node, obj)
            self._soon()

    def _answer(self, node: str, obj: LocalObject) -> None:
        links = self.r.links
        assert links is not None
        oid = obj.object_id
        if obj.data is not None and not obj.in_store:
            objs, frames = self._answers.setdefault(node, ([], []))
            objs.append(ResolvedObject(object_id=oid, size=obj.size, buf=len(frames),
                                       is_error=obj.is_error))
            frames.append(obj.data)
            return
        if obj.in_store or obj.spilled:
            address = links.address
        else:
            info = links.peer(obj.location) if obj.location else None
            if info is None:
                self._answer_error(node, oid, ObjectLostError(
                    f"object {oid} has no copy left: the node that kept it "
                    f"({obj.location[:12] or 'unknown'}) is gone"))
                return
            address = info.address
        self._answers.setdefault(node, ([], []))[0].append(ResolvedObject(
            object_id=oid, size=obj.size, address=address, is_error=obj.is_error))

    def _answer_error(self, node: str, oid: str, error: BaseException) -> None:
        data = serialize_error(error).to_bytes()
        objs, frames = self._answers.setdefault(node, ([], []))
        objs.append(ResolvedObject(object_id=oid, size=len(data), buf=len(frames), is_error=True))
        frames.append(data)

    # both sides ---------------------------------------------------------------
    def node_died(self, node: str, why: str) -> None:
        for held in self.r.objects.drop_holder(node_holder(node)):
            self.r._maybe_free(held)
        for nodes in self.waiters.values():
            nodes.discard(node)
        self._answers.pop(node, None)
        self._resolves.pop(node, None)
        self.ledger.node_died(node)
        for oid, asked in list(self.resolving.items()):
            if asked != node:
                continue
            del self.resolving[oid]
            obj = self.r.objects.get(oid)
            if obj is not None and not obj.ready:
                self._owner_died(obj, f"its owner's node {node[:12]} died ({why})")

    def _soon(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.r.after_batch(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        links = self.r.links
        if links is None:
            return
        for reg, batch in self.ledger.drain().items():
            msg = BorrowObjects(node_id=self.r.node_id, borrowed=batch.borrowed,
                                released=batch.released)
            if reg.via_reply:
                self.r.send(links.router, [reg.node.encode()], msg)
            else:
                links.send_to_node(reg.node, msg)
        resolves, self._resolves = self._resolves, {}
        for node, owners in resolves.items():
            # Not reachable: the node just died; its death fails these gets.
            links.send_to_node(node, ResolveObjects(owners=owners))
        answers, self._answers = self._answers, {}
        for node, (objs, frames) in answers.items():
            self.r.send(links.router, [node.encode()], ObjectsResolved(objects=objs), frames)

    def _alive(self, worker_hex: str) -> bool:
        try:
            return bytes.fromhex(worker_hex) in self.r.clients
        except ValueError:
            return True

    def _who(self, worker_hex: str) -> str:
        return f"process {worker_hex[:12]}"


def _owned_by_a_process_here(obj: LocalObject) -> bool:
    return obj.owner is not None and len(obj.owner) == WORKER_ID_BYTES
