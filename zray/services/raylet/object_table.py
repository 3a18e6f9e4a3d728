"""The raylet's table of the objects it knows: state and lifetime rules only.

An object lives while anything can still reach it: a process holding a
reference (its owner, or a borrower that reported the ref), a pending task
that takes it as an argument or nests it in its arguments, or another live
object that nests it. It is freed as soon as none remains.

The table is kept by the raylet of the object's owner; reference reports
carry the owner's id, so with several nodes a borrower's raylet can forward
them to the owner's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zray.services.raylet.state import LocalObject, Task


@dataclass
class Sealed:
    """What sealing an object set in motion."""

    obj: LocalObject
    ready_tasks: list[Task] = field(default_factory=list)
    clients: list[tuple[bytes, bool]] = field(default_factory=list)


class ObjectTable:
    def __init__(self) -> None:
        self.objects: dict[str, LocalObject] = {}

    def __len__(self) -> int:
        return len(self.objects)

    def get(self, oid: str) -> LocalObject | None:
        return self.objects.get(oid)

    def entry(self, oid: str) -> LocalObject:
        """The object's record, created (not ready) if unknown."""
        obj = self.objects.get(oid)
        if obj is None:
            obj = self.objects[oid] = LocalObject(oid)
        return obj

    def depend(self, task: Task, oid: str) -> None:
        """`task` takes the object as an argument: pin it, and wait for it if not ready."""
        obj = self.entry(oid)
        obj.pins += 1
        if not obj.ready:
            obj.waiting_tasks.append(task)
            task.missing += 1

    def pin(self, oid: str) -> None:
        """A pending task nests the ref in its arguments: keep it, without waiting for it."""
        self.entry(oid).pins += 1

    def unpin(self, oid: str) -> LocalObject | None:
        obj = self.objects.get(oid)
        if obj is not None:
            obj.pins -= 1
        return obj

    def seal(self, oid: str, size: int, data: object, in_store: bool, is_error: bool,
             owner: bytes | None = None, job_id: str = "", contains: list[str] | None = None,
             now: float = 0.0) -> Sealed:
        obj = self.entry(oid)
        first = not obj.ready
        obj.ready, obj.size, obj.data, obj.in_store, obj.is_error = True, size, data, in_store, is_error
        obj.last_used = now
        if owner is not None:
            obj.owner = owner
            obj.job_id = job_id
            if first:
                self.hold(obj, owner)
        if contains and first:
            obj.contains = contains
            for nested in contains:
                self.entry(nested).contained_in += 1
        sealed = Sealed(obj)
        waiting, obj.waiting_tasks = obj.waiting_tasks, []
        for task in waiting:
            task.missing -= 1
            if task.missing == 0 and not task.cancelled:
                sealed.ready_tasks.append(task)
        sealed.clients, obj.waiting_clients = obj.waiting_clients, []
        return sealed

    @staticmethod
    def hold(obj: LocalObject, holder: bytes) -> None:
        obj.holders[holder] = obj.holders.get(holder, 0) + 1

    def drop(self, oid: str, holder: bytes) -> LocalObject | None:
        """`holder` let go of one of its holds; the object if it is known."""
        obj = self.objects.get(oid)
        if obj is None:
            return None
        count = obj.holders.get(holder, 0) - 1
        if count > 0:
            obj.holders[holder] = count
        else:
            obj.holders.pop(holder, None)
        return obj

    def drop_holder(self, holder: bytes) -> list[LocalObject]:
        """A process died: every hold it had goes (rare, so a scan)."""
        dropped = []
        for obj in self.objects.values():
            if obj.holders.pop(holder, None) is not None:
                dropped.append(obj)
        return dropped

    @staticmethod
    def freeable(obj: LocalObject) -> bool:
        return (obj.ready and not obj.holders and obj.pins <= 0 and obj.contained_in <= 0
                and not obj.waiting_clients)

    def remove(self, obj: LocalObject) -> list[LocalObject]:
        """Forget a freed object; returns the objects it nested, which may be free now."""
        self.objects.pop(obj.object_id, None)
        nested = []
        for oid in obj.contains:
            inner = self.objects.get(oid)
            if inner is not None:
                inner.contained_in -= 1
                nested.append(inner)
        return nested

    def of_job(self, job_id: str, owner: bytes) -> list[LocalObject]:
        return [o for o in self.objects.values() if o.job_id == job_id or o.owner == owner]
