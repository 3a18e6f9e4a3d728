"""Pure decisions about where an actor starts: which constructors are placed
like tasks, and what `zray status` says about an actor that waits."""

from __future__ import annotations

from zray.cli.status_view import actor_waiting
from zray.common.messages.tables import ActorInfo, NodeInfo
from zray.services.raylet.actor_placement import placed_like_a_task


def test_only_the_first_start_on_the_creating_node_is_placed() -> None:
    assert placed_like_a_task("PENDING", 0, forwarded=False)
    assert not placed_like_a_task("PENDING", 0, forwarded=True)  # sent here: starts here
    assert not placed_like_a_task("RESTARTING", 1, forwarded=False)  # restarts where it lives
    assert not placed_like_a_task("PENDING", 1, forwarded=False)


def node(node_id: str, alive: bool = True, **total: float) -> NodeInfo:
    return NodeInfo(node_id=node_id, node_name=node_id, host="h", address="", local_address="",
                    store_dir="", session_dir="", pid=1, alive=alive, start_time=0.0,
                    heartbeat_time=100.0, resources_total=dict(total),
                    resources_available=dict(total))


def test_status_says_what_a_pending_actor_waits_for() -> None:
    pending = ActorInfo(actor_id="a", class_name="C", job_id="j", state="PENDING",
                        resources={"CPU": 0.0, "later": 1.0})
    nodes = [node("n1", CPU=1), node("n2", alive=False, later=1)]
    assert actor_waiting(pending, nodes, now=100.0) == \
        "waiting for a node with later 1: no live node has that"
    assert actor_waiting(pending, [*nodes, node("n3", later=2)], now=100.0) == ""
    alive = pending.model_copy(update={"state": "ALIVE"})
    assert actor_waiting(alive, nodes, now=100.0) == ""
