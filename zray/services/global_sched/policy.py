"""Placement policy: pure code, state in, decision out.

A node is feasible when its total resources cover the request. Among the
feasible nodes, pick the least expected wait: its queueing delay, plus a
task's worth of waiting when its resources are busy now, plus the time to
move the task's inputs that it lacks. So a free node wins over a busy one,
unless the busy one holds inputs that would take longer to move.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Assumed costs; rough is enough to rank nodes.
TASK_SECONDS = 0.001
BUSY_SECONDS = 0.01  # until a busy node frees the resources (heartbeats are a moment old)
TRANSFER_BYTES_PER_SECOND = 1e9


@dataclass
class NodeLoad:
    node_id: str
    address: str
    total: dict[str, float]
    available: dict[str, float]
    queue_len: int = 0
    alive: bool = True
    extra: dict[str, float] = field(default_factory=dict)


def fits(request: dict[str, float], resources: dict[str, float]) -> bool:
    return all(resources.get(name, 0.0) >= amount for name, amount in request.items() if amount > 0)


def expected_wait(node: NodeLoad, arg_bytes: dict[str, int]) -> float:
    missing = sum(size for holder, size in arg_bytes.items() if holder != node.node_id)
    return node.queue_len * TASK_SECONDS + missing / TRANSFER_BYTES_PER_SECOND


def place(request: dict[str, float], nodes: list[NodeLoad],
          arg_bytes: dict[str, int] | None = None) -> NodeLoad | None:
    """The node to run on, or None when no live node can ever run the task."""
    arg_bytes = arg_bytes or {}
    feasible = [n for n in nodes if n.alive and fits(request, n.total)]
    if not feasible:
        return None

    def wait(n: NodeLoad) -> float:
        busy = 0.0 if fits(request, n.available) else BUSY_SECONDS
        return expected_wait(n, arg_bytes) + busy

    return min(feasible, key=lambda n: (wait(n), n.queue_len, n.node_id))


def place_spread(request: dict[str, float], nodes: list[NodeLoad],
                 placed: dict[str, int]) -> NodeLoad | None:
    """SPREAD: among the nodes that can run the task (now, else ever), the one
    this scheduler has given the fewest such tasks so far."""
    feasible = [n for n in nodes if n.alive and fits(request, n.total)]
    if not feasible:
        return None
    ready = [n for n in feasible if fits(request, n.available)]
    candidates = ready or feasible
    return min(candidates, key=lambda n: (placed.get(n.node_id, 0), n.queue_len, n.node_id))


def charge(node: NodeLoad, request: dict[str, float]) -> None:
    """Count a placement against the node until its next heartbeat says otherwise:
    a burst placed between two heartbeats must not all see the same free node."""
    node.queue_len += 1
    for name, amount in request.items():
        if amount > 0:
            node.available[name] = node.available.get(name, 0.0) - amount


def dead_nodes_to_forget(dead: list[tuple[str, float]], keep: int) -> list[str]:
    """Of (node_id, last heartbeat time) of dead nodes, those beyond the newest `keep`."""
    if len(dead) <= keep:
        return []
    dead = sorted(dead, key=lambda item: item[1], reverse=True)
    return [node_id for node_id, _ in dead[keep:]]
