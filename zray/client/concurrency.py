"""Concurrent actor calls: async actors run calls as coroutines on one event
loop, threaded actors (max_concurrency > 1) on a thread pool.

The worker's main thread keeps receiving calls; finished ones are handed back
through a deque and a wake-up pipe, and the main thread reports them.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zray.common.ids import TaskID
from zray.common.messages.base import construct
from zray.common.messages.raylet import ExecuteTask, FinishedTask
from zray.common.messages.task import ObjectLoc, direct_owner

if TYPE_CHECKING:
    from zray.client.worker import Worker

ASYNC_DEFAULT_CONCURRENCY = 1000


@dataclass
class Outcome:
    """What a call produced: return values, or an error payload."""

    values: list[Any] | None = None
    error: bytes | None = None
    app_error: bool = False
    cancelled: bool = False
    # Return object id -> refs nested in it; held until the result is sent.
    contains: dict[str, list[str]] = field(default_factory=dict)

    def finished(self, task_id: str, returns: list[ObjectLoc]) -> FinishedTask:
        return construct(FinishedTask, task_id=task_id, returns=returns, app_error=self.app_error,
                         cancelled=self.cancelled, contains=self.contains)

    def final(self, spec: Any) -> bool:
        """No retry can replace this result, so its owner may have it at once."""
        return not (self.app_error and spec.retry_exceptions and spec.attempt < spec.max_retries)


class ConcurrentCalls:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.done: deque[tuple[Any, FinishedTask, list[Any], bool]] = deque()

    def submit(self, msg: ExecuteTask, bufs: list[Any]) -> None:
        raise NotImplementedError

    def _finish(self, msg: ExecuteTask, outcome: Outcome) -> None:
        spec = msg.spec
        frames: list[Any] = []
        returns = self.worker.package(spec, outcome, frames)
        self.done.append((spec, outcome.finished(spec.task_id, returns), frames, outcome.final(spec)))
        self.worker.client.wake()

    def report(self) -> None:
        """I/O thread: send the results of calls that finished."""
        client = self.worker.client
        while self.done:
            spec, result, frames, final = self.done.popleft()
            client.add_finished_frames(result, frames, direct_owner(spec), final)
        client.flush_finished()


class ThreadedCalls(ConcurrentCalls):
    def __init__(self, worker: Worker, max_concurrency: int) -> None:
        super().__init__(worker)
        self.pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="zray-actor")

    def submit(self, msg: ExecuteTask, bufs: list[Any]) -> None:
        self.pool.submit(self._run, msg, bufs)

    def _run(self, msg: ExecuteTask, bufs: list[Any]) -> None:
        client = self.worker.client
        client.enter_task(TaskID.from_hex(msg.spec.task_id), msg.spec.function_name)
        try:
            outcome = self.worker.call(msg, bufs)
            self._finish(msg, outcome)
        finally:
            client.leave_task()


class AsyncCalls(ConcurrentCalls):
    def __init__(self, worker: Worker, max_concurrency: int) -> None:
        super().__init__(worker)
        self.loop = asyncio.new_event_loop()
        self.limit = asyncio.Semaphore(max_concurrency)
        threading.Thread(target=self.loop.run_forever, name="zray-actor-loop", daemon=True).start()

    def submit(self, msg: ExecuteTask, bufs: list[Any]) -> None:
        asyncio.run_coroutine_threadsafe(self._run(msg, bufs), self.loop)

    async def _run(self, msg: ExecuteTask, bufs: list[Any]) -> None:
        async with self.limit:
            client = self.worker.client
            client.enter_task(TaskID.from_hex(msg.spec.task_id), msg.spec.function_name)
            outcome = await self.worker.call_async(msg, bufs)
            self._finish(msg, outcome)
