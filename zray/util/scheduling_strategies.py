"""Scheduling strategies for `.options(scheduling_strategy=...)` (Ray's names).

- "DEFAULT": run on the submitting node when it can, else where the global
  scheduler finds room and the inputs (least expected wait).
- "SPREAD": spread tasks over the nodes that can run them.
- NodeAffinitySchedulingStrategy(node_id, soft): run on that node; with
  soft=True elsewhere when it is dead or cannot ever run the task, else the
  task fails with TaskUnschedulableError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zray.common.errors import ConfigError


@dataclass(frozen=True)
class NodeAffinitySchedulingStrategy:
    node_id: str
    soft: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.node_id, str) or not self.node_id:
            raise ConfigError(f"NodeAffinitySchedulingStrategy needs a node id string (see "
                              f"zray.nodes()), got {self.node_id!r}")


def placement_fields(strategy: Any) -> dict[str, Any]:
    """The task spec fields for a scheduling_strategy option value."""
    if strategy is None or strategy == "DEFAULT":
        return {"strategy": "DEFAULT"}
    if strategy == "SPREAD":
        return {"strategy": "SPREAD"}
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return {"strategy": "DEFAULT", "affinity_node": strategy.node_id,
                "affinity_soft": strategy.soft}
    raise ConfigError(f"scheduling_strategy must be 'DEFAULT', 'SPREAD' or a "
                      f"NodeAffinitySchedulingStrategy, got {strategy!r}")
