"""How many of a driver's tasks its raylet holds at once (pure bookkeeping).

A driver can submit tasks far faster than its node runs them. Sent at once,
a burst of a million tasks sits in the raylet's queue, in its object table
and in the GCS's lineage writes, all at the same time. The driver instead
keeps at most `limit` plain tasks in flight (sent, result not back yet) and
holds the rest itself, in submission order, as the compact specs it built;
each result that comes back lets one more go. The raylet then needs memory
for the window, not for the burst, and it still always has more queued work
than it has workers.

A held task is unknown to the raylet, so nothing that names its objects may
reach the raylet first: releases of its return objects or of the objects it
takes wait until it is sent (`pins`), and a message that may name them (a
call passing refs, a put nesting refs, a cancel) sends every held task first.
Actor calls are not windowed: a call can wait on a later call of the same
actor (an asyncio event, say), and holding that later call would deadlock.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from zray.common.ids import return_object_hex
from zray.common.messages.task import TaskSpec, plain_task

DEFAULT_LIMIT = 1_000


class SubmitWindow:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"the submit window must admit at least one task, got {limit}")
        self.limit = limit
        # First return object of each task in flight: its arrival frees a slot.
        self.in_flight: set[str] = set()
        self.held: deque[tuple[TaskSpec, list[Any]]] = deque()
        # Objects that held tasks return or take, with how many held tasks name each.
        self._pinned: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.held)

    def admit(self, spec: TaskSpec, bufs: list[Any]) -> bool:
        """True if the task may be sent now (it then counts as in flight);
        otherwise it is held, behind every task held before it."""
        if not self.held and len(self.in_flight) < self.limit:
            self._fly(spec)
            return True
        self.held.append((spec, bufs))
        for oid in _named(spec):
            self._pinned[oid] = self._pinned.get(oid, 0) + 1
        return False

    def arrived(self, object_id: str) -> None:
        """A result came back (or its last ref went): its task leaves the window."""
        self.in_flight.discard(object_id)

    def release(self, everything: bool = False) -> list[tuple[TaskSpec, list[Any]]]:
        """Held tasks that may be sent now, oldest first (all of them if `everything`)."""
        room = len(self.held) if everything else self.limit - len(self.in_flight)
        out: list[tuple[TaskSpec, list[Any]]] = []
        while self.held and room > 0:
            spec, bufs = self.held.popleft()
            for oid in _named(spec):
                count = self._pinned[oid] - 1
                if count:
                    self._pinned[oid] = count
                else:
                    del self._pinned[oid]
            self._fly(spec)
            out.append((spec, bufs))
            room -= 1
        return out

    def pins(self, object_id: str) -> bool:
        """Whether a held task names this object (its release must wait)."""
        return object_id in self._pinned

    def _fly(self, spec: TaskSpec) -> None:
        if spec.num_returns > 0:
            self.in_flight.add(return_object_hex(spec.task_id, 1))


def windowed(spec: TaskSpec) -> bool:
    """Plain tasks are windowed; actor creations and calls go at once."""
    return plain_task(spec)


def _named(spec: TaskSpec) -> list[str]:
    names = [return_object_hex(spec.task_id, i) for i in range(1, spec.num_returns + 1)]
    names.extend(a.ref for a in spec.args if a.ref is not None)
    names.extend(spec.nested_refs)
    return names
