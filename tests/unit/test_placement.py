"""Raylet placement rules: local first, spill when busy, far inputs or SPREAD, affinity."""

from __future__ import annotations

import dataclasses

from zray.services.raylet.placement import Situation, Where, decide

BASE = Situation(node_id="me", feasible_here=True, free_here=True, queue_len=0, cpus=2,
                 remote_input_bytes=0, local_input_bytes=0, has_peers=True, has_scheduler=True,
                 forwarded=False)


def with_(**changes: object) -> Situation:
    return dataclasses.replace(BASE, **changes)  # type: ignore[arg-type]


def test_local_when_free_or_queue_short() -> None:
    assert decide(BASE) is Where.LOCAL
    assert decide(with_(free_here=False, queue_len=3)) is Where.LOCAL
    assert decide(with_(free_here=False, queue_len=4)) is Where.SPILL
    assert decide(with_(queue_len=4)) is Where.SPILL  # a burst outruns what is free now


def test_alone_or_without_scheduler_everything_stays() -> None:
    busy = with_(free_here=False, queue_len=100)
    assert decide(dataclasses.replace(busy, has_peers=False)) is Where.LOCAL
    assert decide(dataclasses.replace(busy, has_scheduler=False)) is Where.LOCAL
    assert decide(with_(feasible_here=False, has_scheduler=False)) is Where.LOCAL


def test_infeasible_spread_and_far_inputs_spill() -> None:
    assert decide(with_(feasible_here=False)) is Where.SPILL
    assert decide(BASE, strategy="SPREAD") is Where.SPILL
    assert decide(with_(remote_input_bytes=50 << 20)) is Where.SPILL
    assert decide(with_(remote_input_bytes=50 << 20, local_input_bytes=60 << 20)) is Where.LOCAL
    assert decide(with_(remote_input_bytes=1000)) is Where.LOCAL


def test_forwarded_tasks_stay() -> None:
    assert decide(with_(forwarded=True, feasible_here=False), strategy="SPREAD") is Where.LOCAL


def test_affinity() -> None:
    assert decide(BASE, affinity_node="other", affinity_ok=True) is Where.FORWARD
    assert decide(BASE, affinity_node="other", affinity_ok=False) is Where.UNSCHEDULABLE
    assert decide(BASE, affinity_node="other", affinity_soft=True) is Where.LOCAL
    assert decide(with_(feasible_here=False), affinity_node="other", affinity_soft=True) is Where.SPILL
    assert decide(with_(free_here=False, queue_len=50), affinity_node="me") is Where.LOCAL
