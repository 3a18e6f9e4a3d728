"""`zray raylet start --node-address`: a wildcard host stands for the address
on the route to the GCS (what a raylet in a container binds and announces)."""

from __future__ import annotations

from zray.services.raylet.cli import reachable


def test_a_concrete_address_is_kept() -> None:
    assert reachable("tcp://10.1.2.3:6400", "gcs0:6379") == "tcp://10.1.2.3:6400"


def test_a_wildcard_becomes_the_address_towards_the_gcs() -> None:
    assert reachable("tcp://0.0.0.0:6400", "127.0.0.1:6379") == "tcp://127.0.0.1:6400"
    assert reachable("tcp://*:0", "tcp://localhost:6379") == "tcp://127.0.0.1:0"
    assert reachable("tcp://0.0.0.0:6400", "ipc:///tmp/gcs") == "tcp://127.0.0.1:6400"
