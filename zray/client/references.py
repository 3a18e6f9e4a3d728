"""Reference counting on the client side (mixed into CoreClient).

Each live ObjectRef counts once. When the last one goes, an object this
process owns is released to the raylet, in batches for small objects and at
once for store objects. Refs serialized into values or tasks are reported as
escaped first: other processes may hold them now.
"""

from __future__ import annotations

import time
from typing import Any

from zray.common import wire
from zray.common.messages.raylet import ReleaseObjects

RELEASE_BATCH = 256
RELEASE_SECONDS = 0.05


class References:
    refcounts: dict[str, int]
    owned: set[str]
    to_release: list[str]
    escaped: set[str]
    to_escape: list[str]
    results: dict[str, Any]
    ready: set[str]
    _last_release: float

    def _transmit(self, frames: list[Any]) -> None:
        raise NotImplementedError

    def add_ref(self, oid: str, owned: bool) -> None:
        self.refcounts[oid] = self.refcounts.get(oid, 0) + 1
        if owned:
            self.owned.add(oid)

    def remove_ref(self, oid: str) -> None:
        # May run inside garbage collection at any point: only list appends here.
        self.to_release.append(oid)

    def _flush_refs(self, force: bool = False) -> None:
        if not self.to_escape:
            if not self.to_release:
                return
            # Releases of small objects go out in batches; store objects at once.
            if not force and len(self.to_release) < RELEASE_BATCH and \
                    time.monotonic() - self._last_release < RELEASE_SECONDS and \
                    not any(self._in_store(o) for o in self.to_release):
                return
        self._last_release = time.monotonic()
        released = []
        while self.to_release:
            oid = self.to_release.pop()
            count = self.refcounts.get(oid, 0) - 1
            if count > 0:
                self.refcounts[oid] = count
                continue
            self.refcounts.pop(oid, None)
            self.results.pop(oid, None)
            self.ready.discard(oid)
            if oid in self.owned:
                self.owned.discard(oid)
                released.append(oid)
        escaped, self.to_escape = self.to_escape, []
        if released or escaped:
            self._transmit(wire.encode(ReleaseObjects(object_ids=released, escaped=escaped)))

    def _flush_escapes(self) -> None:
        if self.to_escape:
            escaped, self.to_escape = self.to_escape, []
            self._transmit(wire.encode(ReleaseObjects(object_ids=[], escaped=escaped)))

    def _in_store(self, oid: str) -> bool:
        result = self.results.get(oid)
        return result is None or result.loc.in_store

    def _note_escaped(self, refs: list[str]) -> None:
        for oid in refs:
            if oid not in self.escaped:
                self.escaped.add(oid)
                self.to_escape.append(oid)

