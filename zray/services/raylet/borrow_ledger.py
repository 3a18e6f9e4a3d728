"""Which objects owned on other nodes this node holds, and whom it told.

The raylet of an object's owner counts its references; a process on another
node that holds a ref reports it to its own raylet (the borrower node), which
registers one borrow per object with the owner's node while anything there
holds it (a process, a pending task, an object that nests it), and releases
it once nothing does. The owner's node counts each borrower node as one
holder (`node_holder`), dropped when that node dies.

A ref nested in the arguments of a task forwarded here is already kept by
the node that forwarded it until the task's outcome arrives there: such an
object is *covered*, and a borrow still needed when the task ends travels in
that outcome (TasksDone) when the forwarding node is the owner, so that it is
counted before the task's own pin goes. Other borrows and all releases are
batched per loop turn.

Pure bookkeeping: the raylet feeds it events and sends what `drain` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NODE_HOLDER_PREFIX = b"node:"


def node_holder(node_id: str) -> bytes:
    """The holder key under which an owner's node counts a borrower node."""
    return NODE_HOLDER_PREFIX + node_id.encode()


def holder_node(holder: bytes) -> str:
    """The node id of a node holder key; '' for a process."""
    if holder.startswith(NODE_HOLDER_PREFIX):
        return holder[len(NODE_HOLDER_PREFIX):].decode(errors="replace")
    return ""


@dataclass(frozen=True)
class Registration:
    node: str
    # Sent on the connection the node forwarded tasks on (its replies channel);
    # the release must follow the same way to arrive after the borrow.
    via_reply: bool


@dataclass
class Batch:
    borrowed: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)


class BorrowLedger:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.owner_nodes: dict[str, str] = {}
        self.registered: dict[str, Registration] = {}
        self.covered: dict[str, int] = {}
        self.out: dict[Registration, Batch] = {}

    def tracks(self, oid: str) -> bool:
        return oid in self.owner_nodes or oid in self.covered or oid in self.registered

    def learn_owner(self, oid: str, node: str) -> bool:
        """`node` owns the object; False if that is this node (nothing to track)."""
        if not node or node == self.node_id:
            return False
        self.owner_nodes[oid] = node
        return True

    def cover(self, oids: list[str]) -> None:
        for oid in oids:
            self.covered[oid] = self.covered.get(oid, 0) + 1

    def held(self, oid: str) -> bool:
        """Something here holds the object now; True if a borrow was queued."""
        if oid in self.registered or self.covered.get(oid, 0) > 0:
            return False
        node = self.owner_nodes.get(oid)
        if node is None:
            return False
        self._register(oid, Registration(node, False))
        return True

    def task_done(self, oids: list[str], origin: str, still_held: dict[str, bool]) -> list[str]:
        """A task forwarded here by `origin` ends: its nested refs are no longer
        covered by it. Returns the ones to report as borrowed in its outcome (the
        owner is `origin`); borrows with other owners are queued."""
        piggyback: list[str] = []
        for oid in oids:
            count = self.covered.get(oid, 0) - 1
            if count > 0:
                self.covered[oid] = count
            else:
                self.covered.pop(oid, None)
            if oid in self.registered or not still_held.get(oid, False):
                continue
            node = self.owner_nodes.get(oid, origin)
            if node == origin:
                self.registered[oid] = Registration(origin, True)
                piggyback.append(oid)
            else:
                self._register(oid, Registration(node, False))
        return piggyback

    def kept_for_us(self, oid: str, node: str, owned_here: bool) -> bool:
        """`node` took a hold on the object for this one. It becomes this node's
        borrow there, unless one exists already or the object is this node's
        own: then the extra hold is released at once (True: a release was queued)."""
        if owned_here or oid in self.registered:
            self.out.setdefault(Registration(node, False), Batch()).released.append(oid)
            return True
        self.registered[oid] = Registration(node, False)
        return False

    def unheld(self, oid: str) -> bool:
        """Nothing here holds the object any more; True if a release was queued."""
        if self.covered.get(oid, 0) <= 0:
            self.owner_nodes.pop(oid, None)
        reg = self.registered.pop(oid, None)
        if reg is None:
            return False
        self.out.setdefault(reg, Batch()).released.append(oid)
        return True

    def drain(self) -> dict[Registration, Batch]:
        out, self.out = self.out, {}
        return out

    def pending_for(self, node: str) -> bool:
        return any(reg.node == node for reg in self.out)

    def node_died(self, node: str) -> list[str]:
        """Forget borrows registered with a dead node; returns the objects it owned."""
        for oid in [o for o, reg in self.registered.items() if reg.node == node]:
            del self.registered[oid]
        for reg in [r for r in self.out if r.node == node]:
            del self.out[reg]
        return [oid for oid, owner in self.owner_nodes.items() if owner == node]

    def _register(self, oid: str, reg: Registration) -> None:
        self.registered[oid] = reg
        self.out.setdefault(reg, Batch()).borrowed.append(oid)
