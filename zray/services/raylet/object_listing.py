"""`zray memory` rows: the node's largest objects and what keeps each alive."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

from zray.common.messages.raylet import ObjectSummary
from zray.services.raylet.state import LocalObject


def _where(obj: LocalObject) -> str:
    if not obj.ready:
        return "pending"
    if obj.spilled:
        return "spilled"
    return "memory" if obj.in_store else "inline"


def summarize(objects: Iterable[LocalObject], limit: int,
              describe: Callable[[bytes], str]) -> list[ObjectSummary]:
    """The `limit` largest objects, largest first."""
    largest = heapq.nlargest(max(0, limit), objects, key=lambda o: o.size)
    return [ObjectSummary(
        object_id=o.object_id, size=o.size, where=_where(o),  # type: ignore[arg-type]
        owner=describe(o.owner) if o.owner else "",
        holders=[describe(h) + (f" x{n}" if n > 1 else "") for h, n in o.holders.items()],
        pinned_by_tasks=o.pins, contained_in=o.contained_in) for o in largest]
