"""Pure decisions about actors whose node died: the global scheduler's restart
or death verdict, and where a raylet sends a call to an actor."""

from __future__ import annotations

from zray.common.messages.tables import ActorInfo
from zray.services.global_sched.actor_failover import decide
from zray.services.global_sched.policy import NodeLoad
from zray.services.raylet.actor_routes import Route, retries_call, route


def actor(**fields: object) -> ActorInfo:
    base: dict[str, object] = {"actor_id": "a1", "class_name": "C", "job_id": "j", "state": "ALIVE",
                               "node_id": "dead", "max_restarts": 1}
    return ActorInfo.model_validate({**base, **fields})


def node(node_id: str, **total: float) -> NodeLoad:
    return NodeLoad(node_id, f"tcp://{node_id}", dict(total), dict(total))


def test_restarts_on_a_live_node_with_the_resources() -> None:
    new = decide(actor(resources={"gpu_box": 1.0}), "dead", "no heartbeat",
                 [node("dead", gpu_box=1), node("small", CPU=1), node("big", CPU=1, gpu_box=1)])
    assert (new.state, new.node_id, new.restarts, new.pid) == ("RESTARTING", "big", 1, 0)


def test_dead_when_restarts_are_used_up_naming_the_node() -> None:
    new = decide(actor(restarts=1), "dead", "no heartbeat for 1.2s", [node("other", CPU=1)])
    assert new.state == "DEAD"
    assert "node dead died (no heartbeat for 1.2s)" in new.death_cause
    assert "no restarts left (used 1 of max_restarts=1)" in new.death_cause
    assert decide(actor(max_restarts=0), "dead", "x", [node("other")]).state == "DEAD"


def test_infinite_restarts() -> None:
    new = decide(actor(restarts=50, max_restarts=-1), "dead", "x", [node("other")])
    assert (new.state, new.restarts) == ("RESTARTING", 51)


def test_dead_when_no_node_has_the_resources() -> None:
    new = decide(actor(resources={"GPU": 1.0}), "dead", "x", [node("other", CPU=4)])
    assert new.state == "DEAD" and "no node has resources {'GPU': 1.0}" in new.death_cause


def test_actors_of_one_node_spread() -> None:
    nodes = [node("n1", CPU=1), node("n2", CPU=1)]
    placed = {decide(actor(actor_id=f"a{i}"), "dead", "x", nodes).node_id for i in range(2)}
    assert placed == {"n1", "n2"}


def test_routes() -> None:
    def alive(n: str) -> bool:
        return n == "live"

    assert route(None, "me", alive) is Route.UNKNOWN
    assert route(actor(state="DEAD"), "me", alive) is Route.DEAD
    assert route(actor(node_id="me", state="RESTARTING"), "me", alive) is Route.HERE
    assert route(actor(node_id="live"), "me", alive) is Route.FORWARD
    assert route(actor(node_id="dead"), "me", alive) is Route.WAIT  # no decision yet
    assert route(actor(node_id="", state="PENDING"), "me", alive) is Route.WAIT


def test_call_retries() -> None:
    assert not retries_call(0, 0)
    assert retries_call(0, 1) and not retries_call(1, 1)
    assert retries_call(99, -1)
