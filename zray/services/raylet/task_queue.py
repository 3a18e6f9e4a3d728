"""The local scheduler's ready queue: one FIFO per resource shape, so a task
that cannot fit (say, wanting a GPU) never blocks tasks of another shape.

Pure: no sockets, no processes. Items carry their resource request.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from zray.services.raylet.resources import Resources, acquire, fits, release, shape

T = TypeVar("T")


class ReadyQueue(Generic[T]):
    def __init__(self, total: Resources) -> None:
        self.total = dict(total)
        self.available = dict(total)
        self._queues: dict[tuple[tuple[str, float], ...], deque[tuple[T, Resources]]] = {}
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[T]:
        for q in self._queues.values():
            for item, _ in q:
                yield item

    def feasible(self, request: Resources) -> bool:
        """Whether this node could ever run the request."""
        return fits(request, self.total)

    def push(self, item: T, request: Resources, front: bool = False) -> None:
        q = self._queues.setdefault(shape(request), deque())
        if front:
            q.appendleft((item, request))
        else:
            q.append((item, request))
        self._len += 1

    def pop_dispatchable(self, limit: int) -> list[T]:
        """Up to `limit` items whose resources fit now, FIFO per shape; acquires them."""
        out: list[T] = []
        for key in list(self._queues):
            q = self._queues[key]
            while q and len(out) < limit:
                item, request = q[0]
                if not fits(request, self.available):
                    break
                q.popleft()
                acquire(self.available, request)
                out.append(item)
            if not q:
                del self._queues[key]
            if len(out) >= limit:
                break
        self._len -= len(out)
        return out

    def pop_shape(self, request: Resources, limit: int,
                  eligible: Callable[[T], bool] = lambda _: True) -> list[T]:
        """Up to `limit` items from the head of the FIFO of `request`'s shape,
        while `eligible`, without acquiring resources (for a worker that holds them)."""
        key = shape(request)
        q = self._queues.get(key)
        out: list[T] = []
        while q and len(out) < limit and eligible(q[0][0]):
            out.append(q.popleft()[0])
        if q is not None and not q:
            del self._queues[key]
        self._len -= len(out)
        return out

    def remove(self, match: Callable[[T], bool]) -> list[T]:
        removed: list[T] = []
        for key in list(self._queues):
            q = self._queues[key]
            kept = deque(entry for entry in q if not match(entry[0]))
            removed.extend(entry[0] for entry in q if match(entry[0]))
            if kept:
                self._queues[key] = kept
            else:
                del self._queues[key]
        self._len -= len(removed)
        return removed

    def acquire(self, request: Resources) -> None:
        acquire(self.available, request)

    def release(self, request: Resources) -> None:
        release(self.available, request)
