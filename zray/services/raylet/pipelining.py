"""When the local scheduler may queue a task behind a worker's running one.

Queueing short tasks on busy workers hides the round trip between them, but a
task must never wait behind a long one while it could run elsewhere. So a
task is queued on a busy worker only when (pure decisions, tested alone):
- no resources are free for it: a free CPU means a worker of its own is better;
- its function has run briefly before (unknown functions are not queued);
- the worker is making progress: it reported a result recently.
"""

from __future__ import annotations

SHORT_SECONDS = 0.005
PROGRESS_SECONDS = 0.005
DEPTH = 8
_WEIGHT = 0.3


class Durations:
    """Recent run time per function, as an exponentially weighted mean."""

    def __init__(self) -> None:
        self._mean: dict[str, float] = {}

    def observe(self, function_id: str, seconds: float) -> None:
        old = self._mean.get(function_id)
        self._mean[function_id] = seconds if old is None else old + _WEIGHT * (seconds - old)

    def is_short(self, function_id: str) -> bool:
        mean = self._mean.get(function_id)
        return mean is not None and mean < SHORT_SECONDS


def may_queue_behind(resources_free: bool, function_short: bool, worker_last_progress: float,
                     now: float) -> bool:
    return (not resources_free and function_short
            and now - worker_last_progress < PROGRESS_SECONDS)


def depth(queued: int, busy_workers: int) -> int:
    """How many tasks a busy worker may hold, spreading the queue evenly."""
    return min(DEPTH, queued // max(1, busy_workers) + 1)
