"""Which task specs the GCS tasks table must keep (pure bookkeeping).

A spec is lineage: it can rebuild the task's return objects. It is needed
while any of its returns may still be referenced, and while a spec that is
still needed takes one of its returns as an argument (rebuilding that task
may first need this one's output rebuilt). When neither holds, the spec is
released, which may in turn release the specs of its inputs' producers, so
a long run of tasks keeps the table at the size of what is still reachable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TASK_HEX = 32  # an object id is its task id (32 hex digits) and a return index


@dataclass(slots=True)
class _Entry:
    live_returns: int
    dependents: int = 0
    producers: list[str] = field(default_factory=list)


class Lineage:
    def __init__(self) -> None:
        self._tasks: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: str) -> bool:
        return task_id in self._tasks

    def submitted(self, task_id: str, num_returns: int, arg_object_ids: list[str]) -> None:
        if task_id in self._tasks:
            return  # a resubmission (retry) of a spec already kept
        producers = [oid[:TASK_HEX] for oid in arg_object_ids if oid[:TASK_HEX] in self._tasks]
        for producer in producers:
            self._tasks[producer].dependents += 1
        self._tasks[task_id] = _Entry(live_returns=max(1, num_returns), producers=producers)

    def object_freed(self, object_id: str) -> list[str]:
        """The task specs no longer needed now that this object is gone."""
        entry = self._tasks.get(object_id[:TASK_HEX])
        if entry is None:
            return []
        entry.live_returns -= 1
        return self._release_unneeded(object_id[:TASK_HEX])

    def _release_unneeded(self, task_id: str) -> list[str]:
        released: list[str] = []
        todo = [task_id]
        while todo:
            tid = todo.pop()
            entry = self._tasks.get(tid)
            if entry is None or entry.live_returns > 0 or entry.dependents > 0:
                continue
            del self._tasks[tid]
            released.append(tid)
            for producer in entry.producers:
                parent = self._tasks.get(producer)
                if parent is not None:
                    parent.dependents -= 1
                    todo.append(producer)
        return released
