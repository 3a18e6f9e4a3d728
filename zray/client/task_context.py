"""Which task the calling code runs in: ids of tasks and puts it creates derive from it.

Kept in a ContextVar so that concurrent actor calls (threads or asyncio
tasks) each derive their own deterministic child ids.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from zray.common.ids import TaskID


@dataclass
class TaskContext:
    task_id: TaskID
    function: str
    task_counter: int = 0
    put_counter: int = 0


_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "zray_task_context", default=None)


class TaskContextMixin:
    """Properties over the current TaskContext, falling back to the process's own."""

    _root_context: TaskContext

    def _context(self) -> TaskContext:
        ctx = _current.get()
        return ctx if ctx is not None else self._root_context

    def enter_task(self, task_id: TaskID, function: str) -> None:
        _current.set(TaskContext(task_id, function))

    def leave_task(self) -> None:
        _current.set(None)

    @property
    def current_task_id(self) -> TaskID:
        return self._context().task_id

    @property
    def current_function(self) -> str:
        return self._context().function

    def next_child_counter(self) -> int:
        ctx = self._context()
        ctx.task_counter += 1
        return ctx.task_counter

    def next_put_counter(self) -> int:
        ctx = self._context()
        ctx.put_counter += 1
        return ctx.put_counter
