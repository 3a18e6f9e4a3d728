"""Reference counting on the client side (mixed into CoreClient).

Each live ObjectRef counts once. The raylet of the object's owner keeps, per
object, how many references each process holds; this process reports:

- nothing extra for objects it creates (the raylet counts the owner's hold
  when the task is submitted or the object put);
- a *borrow* when it first holds a ref another process owns (a ref that came
  nested inside a value, an argument or a result), keyed by the owner
  (`WORKER@NODE`, see owners.py: the raylet tells the owner's node, if another);
- a *release* when its last ref to an object goes, owned or borrowed.

Borrows go out before any other message, so they reach the raylet before
whatever let go of the object that carried the ref (the task that passed it
finishes, the containing object is released). Releases of small objects are
batched; releases of store objects go at once.

A ref nested inside a task's result must outlive this process's own refs
until the result reaches the raylet: serializing the result takes a *hold*
(a local ref count) that is released once that result is sent.
"""

from __future__ import annotations

import time
from typing import Any

from zray.common import wire
from zray.common.messages.raylet import ReleaseObjects
from zray.common.owners import owner_key

RELEASE_BATCH = 256
RELEASE_SECONDS = 0.05


class References:
    refcounts: dict[str, int]
    owned: set[str]
    borrowed: dict[str, str]
    to_release: list[str]
    to_borrow: list[tuple[str, str]]
    results: dict[str, Any]
    ready: set[str]
    fetch_needed: set[str]
    _last_release: float
    _release_scanned: int
    worker_id: bytes
    node_id: str

    def _transmit(self, frames: list[Any]) -> None:
        raise NotImplementedError

    def _flush_reports(self, linger: float = 0.0) -> None:
        raise NotImplementedError

    def _release_waits(self, oid: str) -> bool:
        """Whether this release must wait (the raylet does not know the object yet)."""
        return False

    def add_ref(self, oid: str, owned: bool, owner: str = "") -> None:
        count = self.refcounts.get(oid, 0)
        self.refcounts[oid] = count + 1
        if owned:
            self.owned.add(oid)
        elif count == 0 and oid not in self.owned:
            self.borrowed[oid] = owner
            self.to_borrow.append((owner, oid))

    def owner_of(self, oid: str) -> str:
        """The owner (`WORKER@NODE`) of a ref this process holds; '' if unknown."""
        if oid in self.owned:
            return owner_key(self.worker_id.hex(), self.node_id)
        return self.borrowed.get(oid, "")

    def remove_ref(self, oid: str) -> None:
        # May run inside garbage collection at any point: only list appends here.
        self.to_release.append(oid)

    def hold_refs(self, oids: list[str]) -> None:
        """Keep refs nested in a task result counted until the result is sent."""
        for oid in oids:
            self.refcounts[oid] = self.refcounts.get(oid, 0) + 1

    def release_held(self, contains: dict[str, list[str]]) -> None:
        """The results that nest these refs went out (or were dropped)."""
        for oids in contains.values():
            self.to_release.extend(oids)

    def _flush_refs(self, force: bool = False) -> None:
        if not self.to_borrow:
            if not self.to_release:
                return
            # Releases of small objects go out in batches; store objects at once.
            # Each entry is looked at once: those before `_release_scanned` hold none.
            if not force and len(self.to_release) < RELEASE_BATCH and \
                    time.monotonic() - self._last_release < RELEASE_SECONDS:
                scanned, self._release_scanned = self._release_scanned, len(self.to_release)
                if not any(self._in_store(o) for o in self.to_release[scanned:]):
                    return
        self._last_release = time.monotonic()
        self._release_scanned = 0
        released = []
        while self.to_release:
            oid = self.to_release.pop()
            if self._release_waits(oid):
                continue
            count = self.refcounts.get(oid, 0) - 1
            if count > 0:
                self.refcounts[oid] = count
                continue
            self.refcounts.pop(oid, None)
            self.results.pop(oid, None)
            self.ready.discard(oid)
            self.fetch_needed.discard(oid)
            if oid in self.owned:
                self.owned.discard(oid)
                released.append(oid)
            elif self.borrowed.pop(oid, None) is not None:
                released.append(oid)
        borrowed: dict[str, list[str]] = {}
        if self.to_borrow:
            for owner, oid in self.to_borrow:
                borrowed.setdefault(owner, []).append(oid)
            self.to_borrow = []
        if released or borrowed:
            self._flush_reports()  # calls that return these objects are known first
            self._transmit(wire.encode(ReleaseObjects(object_ids=released, borrowed=borrowed)))

    def _flush_borrows(self) -> None:
        """Borrows only: releases must wait for buffered tasks that may pin them."""
        if self.to_borrow:
            borrowed: dict[str, list[str]] = {}
            for owner, oid in self.to_borrow:
                borrowed.setdefault(owner, []).append(oid)
            self.to_borrow = []
            self._transmit(wire.encode(ReleaseObjects(object_ids=[], borrowed=borrowed)))

    def _in_store(self, oid: str) -> bool:
        result = self.results.get(oid)
        return result is None or result.loc.in_store
