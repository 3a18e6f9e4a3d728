"""Room in the node's store: reserve, spill when full, restore on demand, and
hold creates that cannot fit yet (back-pressure) until memory frees or their
deadline passes. The raylet calls in; decisions come from memory_policy."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from zray.services.raylet.memory_policy import (
    Candidate,
    StoreUse,
    full_message,
    spill_batch_bytes,
    spill_victims,
)
from zray.services.raylet.object_store import SharedMemoryStore
from zray.services.raylet.object_table import ObjectTable
from zray.services.raylet.spill_dir import SpillDir, SpillError
from zray.services.raylet.state import LocalObject

log = logging.getLogger(__name__)

# After a failed spill (e.g. a full disk), wait this long before trying again:
# each try copies whole objects.
SPILL_RETRY_SECONDS = 1.0


@dataclass
class PendingCreate:
    route: list[bytes]
    req_id: int
    object_id: str
    size: int
    since: float
    deadline: float


class StoreMemory:
    def __init__(self, store: SharedMemoryStore, spill: SpillDir, objects: ObjectTable,
                 timeout: float, describe_holder: Callable[[bytes], str],
                 in_use: Callable[[], dict[str, int]]) -> None:
        self.store = store
        self.spill = spill
        self.objects = objects
        self.timeout = timeout
        self.describe_holder = describe_holder
        # Object id -> how many tasks on workers take it (mapped, or about to be).
        self.in_use = in_use
        self.pending: list[PendingCreate] = []
        self.spill_problem: str | None = None
        self._spill_retry_at = 0.0
        self.spilled_total = 0
        self.restored_total = 0

    # reserving -------------------------------------------------------------
    def reserve(self, object_id: str, size: int) -> str | None:
        """The file path for a new object, spilling others if needed; None if
        it cannot fit now."""
        store = self.store
        if object_id in store:
            return store.path(object_id)
        if store.used + size > store.capacity and not self._make_room(size):
            return None
        return store.reserve(object_id, size)

    def wait_for_room(self, route: list[bytes], req_id: int, object_id: str, size: int) -> None:
        now = time.monotonic()
        self.pending.append(PendingCreate(route, req_id, object_id, size, now, now + self.timeout))

    def retry_pending(self) -> tuple[list[tuple[PendingCreate, str]], list[tuple[PendingCreate, str]]]:
        """(granted creates with their paths, expired creates with their error text)."""
        granted: list[tuple[PendingCreate, str]] = []
        expired: list[tuple[PendingCreate, str]] = []
        now = time.monotonic()
        still: list[PendingCreate] = []
        for req in self.pending:
            path = self.reserve(req.object_id, req.size)
            if path is not None:
                granted.append((req, path))
            elif now >= req.deadline:
                expired.append((req, self.full_error(req.size, req.object_id, now - req.since)))
            else:
                still.append(req)
        self.pending = still
        return granted, expired

    def full_error(self, size: int, object_id: str, waited: float) -> str:
        return full_message(size, object_id, waited, self.usage(), self.spill_problem)

    # spilling and restoring ----------------------------------------------------
    def spillable(self, obj: LocalObject, in_use: dict[str, int]) -> bool:
        """Sealed, in memory, and neither read by a task on a worker nor awaited:
        arguments of queued tasks may spill (they are restored at dispatch)."""
        return (obj.ready and obj.in_store and not obj.spilled and obj.object_id not in in_use
                and not obj.waiting_clients and obj.object_id in self.store)

    def _make_room(self, size: int) -> bool:
        store = self.store
        need = store.used + size - store.capacity
        if size > store.capacity or time.monotonic() < self._spill_retry_at:
            return False
        in_use = self.in_use()
        candidates = [Candidate(o.object_id, o.size, o.last_used)
                      for o in self.objects.objects.values() if self.spillable(o, in_use)]
        victims = spill_victims(candidates, need, spill_batch_bytes(store.capacity))
        if not victims:
            return False
        spilled = 0
        for oid in victims:
            obj = self.objects.get(oid)
            if obj is None:
                continue
            try:
                self.spill.write(oid, store.path(oid), obj.size)
            except SpillError as exc:
                self.spill_problem = str(exc)
                self._spill_retry_at = time.monotonic() + SPILL_RETRY_SECONDS
                log.warning("spilling failed: %s", exc)
                break
            store.free(oid)
            obj.spilled = True
            spilled += obj.size
            self.spilled_total += 1
        if spilled:
            log.debug("spilled %d bytes to %s", spilled, self.spill.directory)
        return store.used + size <= store.capacity

    def restore(self, obj: LocalObject) -> bool:
        """Bring a spilled object back into the store; False if there is no room now."""
        if not obj.spilled:
            return True
        store = self.store
        if store.used + obj.size > store.capacity and not self._make_room(obj.size):
            return False
        path = store.reserve(obj.object_id, obj.size)
        try:
            self.spill.restore(obj.object_id, path)
        except OSError as exc:
            store.free(obj.object_id)
            log.error("restoring object %s from %s failed: %s", obj.object_id,
                      self.spill.directory, exc)
            return False
        self.spill.delete(obj.object_id)
        obj.spilled = False
        self.restored_total += 1
        return True

    def free(self, obj: LocalObject) -> None:
        if obj.spilled:
            self.spill.delete(obj.object_id)
            if not len(self.spill):
                self.spill_problem = None
        else:
            self.store.free(obj.object_id)

    # reporting -------------------------------------------------------------
    def usage(self) -> StoreUse:
        pinned = tasks = nested = spillable = sealed = 0
        held: dict[str, tuple[int, int]] = {}
        in_use = self.in_use()
        for obj in self.objects.objects.values():
            if not obj.in_store or obj.spilled or not obj.ready:
                continue
            sealed += obj.size
            if obj.object_id in in_use:
                pinned += obj.size
                tasks += in_use[obj.object_id]
            elif obj.holders:
                who = self.describe_holder(next(iter(obj.holders)))
                n, b = held.get(who, (0, 0))
                held[who] = (n + 1, b + obj.size)
            elif obj.contained_in > 0:
                nested += obj.size
            if self.spillable(obj, in_use):
                spillable += obj.size
        return StoreUse(capacity=self.store.capacity, used=self.store.used, pinned_by_tasks=pinned,
                        pinning_tasks=tasks, held=held, nested=nested,
                        unsealed=max(0, self.store.used - sealed), spillable=spillable)
