"""When to restart a service that exited: pure rules, as a compose restart
policy would apply them (always restart, with exponential backoff that
resets once a run has lasted long enough)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    first: float = 0.2
    factor: float = 2.0
    limit: float = 30.0
    # A run that lasted this long counts as healthy: the next failure starts over.
    stable_after: float = 10.0

    def delay(self, recent_failures: int) -> float:
        """Seconds to wait before the restart after `recent_failures` quick exits (>= 1)."""
        return min(self.limit, self.first * self.factor ** max(0, recent_failures - 1))

    def failures_after_exit(self, recent_failures: int, uptime: float) -> int:
        """The count of quick failures, including the exit that just happened."""
        return 1 if uptime >= self.stable_after else recent_failures + 1
