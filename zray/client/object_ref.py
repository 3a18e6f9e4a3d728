"""ObjectRef: a handle to an object that may not exist yet.

Each live ObjectRef counts as one local reference with the process's client;
when the last one goes, the client tells the raylet (see references.py).
A pickled ref carries its owner (`WORKER@NODE`, see owners.py), so the
process that unpickles it can report its borrow, and its raylet can tell the
owner's node and fetch the value from there.
"""

from __future__ import annotations

from typing import Any

from zray.common import serialization
from zray.common.ids import ObjectID

# Set by the active client; None when no client runs in this process.
_tracker: Any = None


def set_tracker(tracker: Any) -> None:
    global _tracker
    _tracker = tracker


class ObjectRef:
    __slots__ = ("_hex", "_tracked", "__weakref__")

    def __init__(self, hex_id: str, owned: bool = False) -> None:
        self._hex = hex_id
        tracker = _tracker
        self._tracked = tracker
        if tracker is not None:
            tracker.add_ref(hex_id, owned)

    def hex(self) -> str:
        return self._hex

    def binary(self) -> bytes:
        return bytes.fromhex(self._hex)

    def object_id(self) -> ObjectID:
        return ObjectID.from_hex(self._hex)

    def task_id(self) -> str:
        return self._hex[:32]

    def __repr__(self) -> str:
        return f"ObjectRef({self._hex})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other._hex == self._hex

    def __hash__(self) -> int:
        return hash(self._hex)

    def __reduce__(self) -> tuple[Any, ...]:
        serialization.note_contained_ref(self._hex)
        tracker = _tracker
        owner = tracker.owner_of(self._hex) if tracker is not None else ""
        return (_rebuild, (self._hex, owner))

    def __await__(self) -> Any:
        """`await ref` in async code (async actors): waits without blocking the event loop."""
        import asyncio

        from zray.client import api

        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, api.get, self).__await__()

    def __del__(self) -> None:
        tracker = self._tracked
        if tracker is not None:
            try:
                tracker.remove_ref(self._hex)
            except Exception:  # interpreter shutdown
                pass


def _rebuild(hex_id: str, owner: str = "") -> ObjectRef:
    ref = ObjectRef.__new__(ObjectRef)
    ref._hex = hex_id
    tracker = ref._tracked = _tracker
    if tracker is not None:
        tracker.add_ref(hex_id, False, owner)
    return ref
