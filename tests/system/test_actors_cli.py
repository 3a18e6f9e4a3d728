"""Actors on a cluster started with `zray start --head`: detached actors outlive
their driver, the other actors of a driver die with its job, and `zray status`
lists them.

The cluster's record lives under a temporary ZRAY_SESSION_ROOT, so that it
neither sees nor disturbs a cluster someone else started on this host; drivers
and CLI commands run in their own interpreters with that root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, poll_for
from tests.system.clusters import PRELUDE, Head, free_port_pair, started_cluster  # noqa: F401  (shared)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    """`zray start --head` with two CPUs; `zray stop` after the module, then no
    process of its session may be left."""
    with started_cluster("zs-", ["--num-cpus", "2"]) as h:
        yield h


def test_detached_actor_outlives_its_driver_and_the_others_die(head: Head) -> None:
    first = head.driver("""
        zray.init("auto")
        keeper = Counter.options(name="keeper", namespace="svc", lifetime="detached").remote(10)
        local = Counter.options(name="local").remote(0)
        assert zray.get([keeper.incr.remote(), local.incr.remote()], timeout=30) == [11, 1]
        print(json.dumps({"keeper": keeper.actor_id, "local": local.actor_id}))
    """)
    ids = json.loads(first.stdout.strip().splitlines()[-1])

    def local_dead() -> dict[str, dict[str, Any]]:
        actors = head.actors()
        return actors if actors.get("local", {}).get("state") == "DEAD" else {}

    actors = poll_for(local_dead, 30, interval=0.2, what="the driver's non-detached actor to die",
                      on_timeout=lambda: json.dumps(head.actors(), indent=1))
    assert actors["local"]["actor_id"] == ids["local"]
    assert "job" in actors["local"]["death_cause"]
    assert actors["keeper"]["actor_id"] == ids["keeper"]
    assert actors["keeper"]["state"] == "ALIVE"
    assert actors["keeper"]["detached"] is True
    assert actors["keeper"]["namespace"] == "svc"

    second = head.driver("""
        zray.init("auto")
        keeper = zray.get_actor("keeper", namespace="svc")
        print(zray.get(keeper.incr.remote(), timeout=30))  # the state the first driver left
        for name, namespace in (("keeper", None), ("local", None)):
            try:
                zray.get_actor(name, namespace=namespace)
                print("found", name)
            except ValueError:
                print("missing", name)
        zray.kill(keeper)
        try:
            zray.get(keeper.incr.remote(), timeout=30)
        except zray.ActorDiedError as exc:
            print("killed:", str(exc).splitlines()[0])
    """)
    lines = second.stdout.strip().splitlines()
    assert lines[0] == "12"
    assert lines[1:3] == ["missing keeper", "missing local"]  # keeper is in namespace "svc"
    assert lines[3].startswith("killed:") and "zray.kill" in lines[3]
    poll_for(lambda: head.actors()["keeper"]["state"] == "DEAD", 30, interval=0.2,
             what="the killed detached actor to be DEAD in zray status")


def test_actor_of_a_driver_that_exits_abruptly_dies(head: Head) -> None:
    # No atexit, no shutdown: the raylet notices the driver's process is gone.
    head.driver("""
        zray.init("auto")
        orphan = Counter.options(name="orphan").remote(0)
        assert zray.get(orphan.incr.remote(), timeout=30) == 1
        sys.stdout.flush()
        os._exit(0)
    """)
    poll_for(lambda: head.actors().get("orphan", {}).get("state") == "DEAD", 30, interval=0.2,
             what="the actor of a vanished driver to die",
             on_timeout=lambda: json.dumps(head.actors(), indent=1))
    assert "job" in head.actors()["orphan"]["death_cause"]


def test_status_lists_actors_with_state_and_name(head: Head) -> None:
    # A driver that keeps its actors alive until the test has read the status.
    release = os.path.join(head.root, "status-read")
    ready = os.path.join(head.root, "status-actors-ready")
    body = f"""
        import pathlib, time
        zray.init("auto")
        shown = Counter.options(name="shown", namespace="ops").remote(0)
        gone = Counter.options(name="gone").remote(0)
        zray.get([shown.incr.remote(), gone.incr.remote()], timeout=30)
        zray.kill(gone)
        try:
            zray.get(gone.incr.remote(), timeout=30)
        except zray.ActorDiedError:
            pass
        pathlib.Path({ready!r}).touch()
        deadline = time.monotonic() + 60
        while not os.path.exists({release!r}) and time.monotonic() < deadline:
            time.sleep(0.02)
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1", **head.env)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    driver = subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(body)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        poll_for(lambda: os.path.exists(ready) or driver.poll() is not None, 60,
                 what="the status driver to create its actors")
        assert driver.poll() is None, f"the driver exited:\n{driver.communicate()[0]}"

        def both_states() -> dict[str, dict[str, Any]]:
            actors = head.actors()
            states = (actors.get("shown", {}).get("state"), actors.get("gone", {}).get("state"))
            return actors if states == ("ALIVE", "DEAD") else {}

        actors = poll_for(both_states, 30, interval=0.2, what="zray status to show ALIVE and DEAD",
                          on_timeout=lambda: json.dumps(head.actors(), indent=1))
        shown, gone = actors["shown"], actors["gone"]
        assert shown["namespace"] == "ops" and shown["class_name"] == "Counter"
        assert shown["pid"] > 0 and not shown["detached"]
        assert gone["namespace"] == "default"
        assert "zray.kill" in gone["death_cause"]

        text = head.cli("status")
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        shown_line = next(line for line in lines if shown["actor_id"] in line)
        assert "ALIVE" in shown_line and "name=ops/shown" in shown_line
        assert f"pid {shown['pid']}" in shown_line
        gone_index = next(i for i, line in enumerate(lines) if gone["actor_id"] in line)
        assert "DEAD" in lines[gone_index] and "name=default/gone" in lines[gone_index]
        assert "zray.kill" in lines[gone_index + 1]  # the "died:" line under it
    finally:
        open(release, "w").close()
        try:
            driver.wait(60)
        except subprocess.TimeoutExpired:
            driver.kill()
            driver.wait(10)
    poll_for(lambda: head.actors()["shown"]["state"] == "DEAD", 30, interval=0.2,
             what="the status driver's actor to die with its job")
