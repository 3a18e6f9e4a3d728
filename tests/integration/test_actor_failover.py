"""Two real global scheduler replicas (with their GCS shard) declare a silent
node dead: exactly one of them fails its actors over, restarting the one with
restarts left on a live node with its resources and recording the other dead
with the cause; an actor on a live node is left alone."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import poll_for, short_tmpdir, stop_popen
from tests.integration.conftest import start_gcs
from tests.integration.test_global_sched import Raylet, start_registered_sched
from zray.common.messages.sched import NodeHeartbeat
from zray.common.messages.tables import ACTOR_FAILOVER_PREFIX, ACTORS, KV, ActorInfo
from zray.services.gcs.client import GcsClient

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def replicas(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[GcsClient, list[Raylet], list[str]]]:
    monkeypatch.setenv("ZRAY_SCHED_NODE_TIMEOUT", "0.5")
    folder = short_tmpdir()
    gcs = start_gcs(folder)
    started = []
    try:
        for name in ("s1", "s2"):
            started.append(start_registered_sched(folder, gcs.address, name))
        client = GcsClient(gcs.address, timeout=5.0)
        raylets = [Raylet(address) for address, _, _ in started]
        yield client, raylets, [log for _, _, log in started]
        for r in raylets:
            r.close()
        client.close()
    finally:
        for _, proc, _ in started:
            stop_popen(proc)
        stop_popen(gcs.proc)
        shutil.rmtree(folder, ignore_errors=True)


def heartbeat(raylets: list[Raylet], node_id: str, total: dict[str, float]) -> None:
    """From a node others reach over TCP: only those are watched for silence."""
    for r in raylets:
        r.send(NodeHeartbeat(node_id=node_id, address=f"tcp://127.0.0.1:9/{node_id}",
                             resources_total=total, resources_available=total, queue_len=0,
                             store_used=0, store_capacity=1 << 30))


def test_one_replica_restarts_or_buries_the_actors_of_a_dead_node(
        replicas: tuple[GcsClient, list[Raylet], list[str]]) -> None:
    gcs, raylets, logs = replicas

    def put(actor_id: str, node_id: str, **fields: object) -> None:
        info = ActorInfo.model_validate({"actor_id": actor_id, "class_name": "C", "job_id": "j",
                                         "state": "ALIVE", "node_id": node_id, **fields})
        gcs.put(ACTORS, actor_id, info.model_dump_json().encode())

    def row(actor_id: str) -> ActorInfo:
        raw = gcs.get(ACTORS, actor_id)
        assert raw is not None
        return ActorInfo.model_validate_json(raw)

    put("again", "doomed", max_restarts=2, restarts=1, resources={"box": 1.0})
    put("last", "doomed", max_restarts=0)
    put("elsewhere", "small", max_restarts=1)
    for _ in range(3):
        heartbeat(raylets, "doomed", {"CPU": 1.0, "box": 1.0})
        heartbeat(raylets, "small", {"CPU": 1.0})
        heartbeat(raylets, "boxed", {"CPU": 1.0, "box": 1.0})
    poll_for(lambda: all(r.ping().nodes >= 3 for r in raylets), 10, what="the heartbeats")

    def failed_over() -> bool:
        heartbeat(raylets, "small", {"CPU": 1.0})  # "doomed" falls silent
        heartbeat(raylets, "boxed", {"CPU": 1.0, "box": 1.0})
        return row("again").state != "ALIVE" and row("last").state == "DEAD"

    poll_for(failed_over, 20, interval=0.1, what="the actors of the dead node to fail over")
    again = row("again")
    assert (again.state, again.node_id, again.restarts) == ("RESTARTING", "boxed", 2), again
    last = row("last")
    assert "node doomed died" in last.death_cause and "no restarts left" in last.death_cause, last
    assert row("elsewhere").state == "ALIVE" and row("elsewhere").node_id == "small"
    claim = gcs.get(KV, ACTOR_FAILOVER_PREFIX + "doomed")
    assert claim is not None
    poll_for(lambda: all("node doomed declared dead" in open(log).read() for log in logs), 10,
             what="both replicas to declare the node dead")
    decided = sum(open(log).read().count("of dead node doomed restarts") for log in logs)
    assert decided == 1, [open(log).read()[-2000:] for log in logs]
