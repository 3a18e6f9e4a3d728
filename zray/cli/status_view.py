"""`zray status` output: pure functions from GCS node records to text or JSON."""

from __future__ import annotations

from typing import Any

from zray.common.messages.tables import ActorInfo, NodeInfo

# A node whose record is older than this is shown dead (same rule as zray.nodes()).
NODE_DEAD_AFTER = 10.0
BYTES_RESOURCES = ("memory", "object_store_memory")


def node_alive(node: NodeInfo, now: float) -> bool:
    return node.alive and now - node.heartbeat_time < NODE_DEAD_AFTER


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _amount(name: str, value: float) -> str:
    if name in BYTES_RESOURCES:
        return human_bytes(value)
    return f"{value:g}"


def resource_usage(node: NodeInfo) -> dict[str, tuple[float, float]]:
    """name -> (used, total), in the node's order of resources."""
    return {name: (total - node.resources_available.get(name, total), total)
            for name, total in node.resources_total.items()}


def format_resources(usage: dict[str, tuple[float, float]]) -> str:
    return ", ".join(f"{name} {_amount(name, used)}/{_amount(name, total)}"
                     for name, (used, total) in usage.items()) or "none"


def format_node(node: NodeInfo, now: float) -> list[str]:
    alive = node_alive(node, now)
    state = "alive" if alive else ("dead" if not node.alive else
                                   f"silent for {now - node.heartbeat_time:.0f}s")
    lines = [f"node {node.node_id[:12]}  {node.node_name} ({node.host})  {state}  raylet pid {node.pid}"]
    if not alive:
        return lines
    store = (f"{human_bytes(node.store_used)} / {human_bytes(node.store_capacity)}"
             f" ({node.num_objects} objects); spilled {human_bytes(node.spilled_bytes)}"
             f" ({node.num_spilled} objects)")
    lines += [
        f"  resources     {format_resources(resource_usage(node))}  (used/total)",
        f"  object store  {store}",
        f"  tasks         {node.tasks_queued} queued, {node.tasks_running} running, "
        f"{node.tasks_finished} finished, {node.tasks_failed} failed",
        f"  workers       {node.workers}",
    ]
    if node.tasks_waiting:
        lines.append(f"  waiting       for resources no live node has now: {', '.join(node.tasks_waiting)}")
    return lines


def cluster_usage(nodes: list[NodeInfo], now: float) -> dict[str, tuple[float, float]]:
    total: dict[str, tuple[float, float]] = {}
    for node in nodes:
        if node_alive(node, now):
            for name, (used, cap) in resource_usage(node).items():
                u, c = total.get(name, (0.0, 0.0))
                total[name] = (u + used, c + cap)
    return total


def actor_waiting(actor: ActorInfo, nodes: list[NodeInfo], now: float) -> str:
    """Why a pending actor has not started: what it needs that no live node has ("" if some has)."""
    need = {name: amount for name, amount in actor.resources.items() if amount > 0}
    if actor.state != "PENDING" or not need:
        return ""
    for node in nodes:
        if node_alive(node, now) and all(node.resources_total.get(name, 0.0) >= amount
                                         for name, amount in need.items()):
            return ""
    wanted = ", ".join(f"{name} {_amount(name, amount)}" for name, amount in need.items())
    return f"waiting for a node with {wanted}: no live node has that"


def format_actors(actors: list[ActorInfo], nodes: list[NodeInfo] | None = None,
                  now: float = 0.0) -> list[str]:
    if not actors:
        return []
    counts: dict[str, int] = {}
    for a in actors:
        counts[a.state] = counts.get(a.state, 0) + 1
    lines = ["", "actors        " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))]
    for a in sorted(actors, key=lambda a: (a.state == "DEAD", a.class_name, a.actor_id)):
        name = f" name={a.namespace}/{a.name}" if a.name else ""
        where = f" pid {a.pid} node {a.node_id[:8]}" if a.state != "DEAD" and a.pid else ""
        extra = f" restarts {a.restarts}/{a.max_restarts}" if a.max_restarts else ""
        lines.append(f"  {a.actor_id}  {a.class_name:<16} {a.state:<10}{name}{where}{extra}"
                     + ("  detached" if a.detached else ""))
        if a.state == "DEAD" and a.death_cause:
            lines.append(f"      died: {a.death_cause.splitlines()[0][:160]}")
        waiting = actor_waiting(a, nodes or [], now)
        if waiting:
            lines.append(f"      {waiting}")
    return lines


def format_status(address: str, nodes: list[NodeInfo], now: float,
                  actors: list[ActorInfo] | None = None) -> str:
    nodes = sorted(nodes, key=lambda n: (not node_alive(n, now), n.start_time))
    alive = sum(node_alive(n, now) for n in nodes)
    lines = [f"zray cluster at {address}: {alive} node{'s' if alive != 1 else ''} alive"
             + (f", {len(nodes) - alive} dead" if len(nodes) > alive else ""),
             f"  resources     {format_resources(cluster_usage(nodes, now))}  (used/total)", ""]
    for node in nodes:
        lines += format_node(node, now)
    lines += format_actors(actors or [], nodes, now)
    return "\n".join(lines)


def status_dict(address: str, nodes: list[NodeInfo], now: float,
                services: list[dict[str, Any]] | None = None,
                actors: list[ActorInfo] | None = None) -> dict[str, Any]:
    """The `zray status --json` document."""
    doc: dict[str, Any] = {
        "address": address,
        "nodes": [{**n.model_dump(), "alive": node_alive(n, now),
                   "resources_used": {k: u for k, (u, _) in resource_usage(n).items()}}
                  for n in nodes],
        "resources": {k: {"used": u, "total": t} for k, (u, t) in cluster_usage(nodes, now).items()},
        "actors": [{**a.model_dump(), "waiting": actor_waiting(a, nodes, now)}
                   for a in actors or []],
    }
    if services is not None:
        doc["services"] = services
    return doc


def format_services(services: list[dict[str, Any]]) -> str:
    """This host's supervised services, one line each, with their restarts."""
    lines = ["", "Services on this host:"]
    for svc in services:
        state = "running" if svc["alive"] else "down"
        restarts = svc.get("restarts", 0)
        extra = f", restarted {restarts}x (last exit {svc.get('last_exit')})" if restarts else ""
        lines.append(f"  {svc['name']:<14} pid {svc['pid']:<8} {state}{extra}")
    return "\n".join(lines)
