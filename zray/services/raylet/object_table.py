"""The raylet's table of the objects it knows: state and lifetime rules only.

An object is freed when its owner released it, nothing pins it (pending
tasks that take it as an argument), nobody waits for it, and it never
escaped (was serialized inside another value or task: other processes may
hold it then, so it lives until its job ends).
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

    def unpin(self, oid: str) -> LocalObject | None:
        obj = self.objects.get(oid)
        if obj is not None:
            obj.pins -= 1
        return obj

    def seal(self, oid: str, size: int, data: object, in_store: bool, is_error: bool,
             owner: bytes | None = None, job_id: str = "") -> Sealed:
        obj = self.entry(oid)
        obj.ready, obj.size, obj.data, obj.in_store, obj.is_error = True, size, data, in_store, is_error
        if owner is not None:
            obj.owner = owner
            obj.job_id = job_id
        sealed = Sealed(obj)
        waiting, obj.waiting_tasks = obj.waiting_tasks, []
        for task in waiting:
            task.missing -= 1
            if task.missing == 0 and not task.cancelled:
                sealed.ready_tasks.append(task)
        sealed.clients, obj.waiting_clients = obj.waiting_clients, []
        return sealed

    def escaped(self, oid: str) -> None:
        self.entry(oid).escaped = True

    def released(self, oid: str) -> LocalObject | None:
        obj = self.objects.get(oid)
        if obj is not None:
            obj.released = True
        return obj

    @staticmethod
    def freeable(obj: LocalObject) -> bool:
        return (obj.released and obj.ready and not obj.escaped and obj.pins <= 0
                and not obj.waiting_clients)

    def remove(self, obj: LocalObject) -> None:
        self.objects.pop(obj.object_id, None)

    def of_job(self, job_id: str, owner: bytes) -> list[LocalObject]:
        return [o for o in self.objects.values() if o.job_id == job_id or o.owner == owner]
