"""A driver keeps at most ZRAY_SUBMIT_WINDOW plain tasks in flight and holds
the rest; every pattern that names a held task's objects still works."""

from __future__ import annotations

import textwrap

import pytest

from tests.conftest import run_driver

pytestmark = pytest.mark.timeout(150)

DRIVER = textwrap.dedent("""
    import os, time
    import zray
    from zray.util.state import list_tasks

    zray.init(num_cpus=2)
    window = zray.client.api._client().window
    assert window is not None and window.limit == 20, window

    @zray.remote
    def inc(x):
        return x + 1

    @zray.remote
    def wait_file(path):
        while not os.path.exists(path):
            time.sleep(0.01)
        return 1

    @zray.remote
    class Box:
        def read(self, refs):
            return sum(zray.get(refs))

    # The cluster knows only the window's worth of a burst of blocked tasks.
    gate = os.path.join(os.environ["GATE_DIR"], "open")
    blocked = [wait_file.remote(gate) for _ in range(50)]
    assert len(window.held) == 30, len(window.held)
    def known():
        return len(list_tasks(filters=[("name", "=", "wait_file")]))
    deadline = time.monotonic() + 20
    while known() < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert known() == 20, known()
    open(gate, "w").close()
    assert sum(zray.get(blocked, timeout=60)) == 50

    # A burst far past the window, then a chain of held tasks taking held refs.
    refs = [inc.remote(i) for i in range(2_000)]
    chain = refs[-1]
    for _ in range(100):
        chain = inc.remote(chain)
    assert zray.get(chain, timeout=60) == 2_000 + 100
    assert sum(zray.get(refs, timeout=60)) == sum(range(1, 2_001))

    # Fire and forget: results dropped while their tasks are still held.
    for i in range(500):
        inc.remote(i)
    assert zray.get(inc.remote(1), timeout=60) == 2

    # An actor call and a put naming held tasks' objects send those tasks first.
    box = Box.remote()
    held = [inc.remote(i) for i in range(200)]
    assert zray.get(box.read.remote(held[-5:]), timeout=60) == sum(range(196, 201))
    held = [inc.remote(i) for i in range(200)]
    nested = zray.put(held[-3:])
    assert sum(zray.get(zray.get(nested), timeout=60)) == 198 + 199 + 200

    # Cancelling a held task.
    blocked = [wait_file.remote(gate + "-2") for _ in range(40)]
    zray.cancel(blocked[-1])
    try:
        zray.get(blocked[-1], timeout=60)
        raise SystemExit("a cancelled held task returned")
    except zray.TaskCancelledError:
        pass
    open(gate + "-2", "w").close()
    assert sum(zray.get(blocked[:-1], timeout=60)) == 39
    zray.shutdown()
    print("WINDOW-OK")
""")


def test_burst_past_the_window(tmp_path: object) -> None:
    result = run_driver(DRIVER, timeout=140,
                        env={"ZRAY_SUBMIT_WINDOW": "20", "GATE_DIR": str(tmp_path)})
    assert "WINDOW-OK" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
