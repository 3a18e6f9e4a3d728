"""Global placement policy: feasibility, availability, least expected wait, locality."""

from __future__ import annotations

import pytest

from zray.services.global_sched.policy import (
    TASK_SECONDS,
    TRANSFER_BYTES_PER_SECOND,
    NodeLoad,
    charge,
    dead_nodes_to_forget,
    expected_wait,
    fits,
    place,
    place_spread,
)

pytestmark = pytest.mark.timeout(10)


def node(node_id: str, cpus: float = 2.0, free: float | None = None, queue: int = 0,
         alive: bool = True, **custom: float) -> NodeLoad:
    total = {"CPU": cpus, **custom}
    available = dict(total, CPU=cpus if free is None else free)
    return NodeLoad(node_id, f"addr-{node_id}", total, available, queue_len=queue, alive=alive)


def chosen(request: dict[str, float], nodes: list[NodeLoad],
           arg_bytes: dict[str, int] | None = None) -> str:
    node = place(request, nodes, arg_bytes)
    assert node is not None, "no node chosen"
    return node.node_id


def test_fits() -> None:
    assert fits({"CPU": 1}, {"CPU": 1})
    assert not fits({"CPU": 1, "GPU": 1}, {"CPU": 4})
    assert fits({"GPU": 0}, {"CPU": 4})


def test_no_nodes() -> None:
    assert place({"CPU": 1}, []) is None


def test_infeasible_everywhere() -> None:
    assert place({"GPU": 1}, [node("a"), node("b")]) is None
    assert place({"CPU": 3}, [node("a", cpus=2)]) is None


def test_dead_nodes_are_never_chosen() -> None:
    assert place({"CPU": 1}, [node("a", alive=False)]) is None
    assert chosen({"CPU": 1}, [node("a", alive=False), node("b", queue=50)]) == "b"


def test_custom_resource_selects_the_node() -> None:
    nodes = [node("a"), node("b", special=1.0)]
    assert chosen({"CPU": 1, "special": 1}, nodes) == "b"


def test_available_now_beats_feasible_later() -> None:
    busy = node("a", free=0.0, queue=0)
    free = node("b", free=2.0, queue=5)
    assert chosen({"CPU": 1}, [busy, free]) == "b"


def test_all_busy_falls_back_to_feasible() -> None:
    nodes = [node("a", free=0.0, queue=3), node("b", free=0.0, queue=1)]
    assert chosen({"CPU": 1}, nodes) == "b"


def test_least_queue_wins() -> None:
    nodes = [node("a", queue=7), node("b", queue=2), node("c", queue=4)]
    assert chosen({"CPU": 1}, nodes) == "b"


def test_inputs_keep_a_busy_node_in_the_running() -> None:
    busy_with_input = node("a", free=0.0, queue=0)
    free = node("b", free=2.0, queue=0)
    assert chosen({"CPU": 1}, [busy_with_input, free], {"a": 50_000_000}) == "a"
    assert chosen({"CPU": 1}, [busy_with_input, free], {"a": 1_000}) == "b"


def test_locality_counts_bytes_to_move() -> None:
    nodes = [node("a", queue=5), node("b", queue=0)]
    # 100 MB of inputs on a: moving them costs more than a's queue.
    assert chosen({"CPU": 1}, nodes, {"a": 100_000_000}) == "a"
    # A few bytes do not outweigh the queue.
    assert chosen({"CPU": 1}, nodes, {"a": 10}) == "b"


def test_expected_wait() -> None:
    n = node("a", queue=4)
    assert expected_wait(n, {}) == pytest.approx(4 * TASK_SECONDS)
    assert expected_wait(n, {"a": 10**9, "b": 2 * 10**9}) == \
        pytest.approx(4 * TASK_SECONDS + 2 * 10**9 / TRANSFER_BYTES_PER_SECOND)


def test_ties_are_broken_deterministically() -> None:
    nodes = [node("b"), node("a"), node("c")]
    assert chosen({"CPU": 1}, nodes) == "a"
    assert chosen({"CPU": 1}, list(reversed(nodes))) == "a"


def test_policy_is_pure() -> None:
    nodes = [node("a", queue=1), node("b", queue=2)]
    before = [(n.queue_len, dict(n.available)) for n in nodes]
    place({"CPU": 1}, nodes, {"b": 5})
    assert [(n.queue_len, dict(n.available)) for n in nodes] == before


def placed_burst(n: int, nodes: list[NodeLoad], spread: bool) -> list[str]:
    """Place n one-CPU tasks between two heartbeats, charging each as the scheduler does."""
    counts: dict[str, int] = {}
    out = []
    for _ in range(n):
        target = place_spread({"CPU": 1}, nodes, counts) if spread else place({"CPU": 1}, nodes)
        assert target is not None
        counts[target.node_id] = counts.get(target.node_id, 0) + 1
        charge(target, {"CPU": 1})
        out.append(target.node_id)
    return out


def test_charge_takes_the_request_off_availability() -> None:
    n = node("a", cpus=2, special=1)
    charge(n, {"CPU": 1, "special": 1, "GPU": 0})
    assert (n.queue_len, n.available) == (1, {"CPU": 1, "special": 0})


def test_spread_burst_reaches_a_node_its_last_heartbeat_called_busy() -> None:
    nodes = [node("head", cpus=1, free=0), node("n2", cpus=1), node("n3", cpus=1)]
    assert sorted(set(placed_burst(6, nodes, spread=True))) == ["head", "n2", "n3"]


def test_spread_burst_is_even() -> None:
    nodes = [node("a", cpus=1), node("b", cpus=1), node("c", cpus=1)]
    burst = placed_burst(9, nodes, spread=True)
    assert sorted(burst.count(x) for x in "abc") == [3, 3, 3]


def test_default_burst_fills_free_nodes_before_queueing() -> None:
    nodes = [node("a", cpus=1), node("b", cpus=2), node("c", cpus=1, free=0)]
    assert sorted(placed_burst(3, nodes, spread=False)) == ["a", "b", "b"]


def test_dead_nodes_beyond_the_newest_are_forgotten() -> None:
    dead = [("a", 3.0), ("b", 1.0), ("c", 2.0), ("d", 4.0)]
    assert dead_nodes_to_forget(dead, keep=2) == ["c", "b"]
    assert dead_nodes_to_forget(dead, keep=4) == []
    assert dead_nodes_to_forget([], keep=0) == []
