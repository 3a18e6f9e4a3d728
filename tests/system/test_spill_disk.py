"""A full spill disk: a put that needs to spill fails with a clear error
after the configured wait, never an endless retry. The spill folder is a
32 MiB tmpfs mounted by the test (needs root; skipped otherwise)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

import zray
from tests.conftest import short_tmpdir
from tests.system.test_memory import array, cluster, wait_store
from zray.common.errors import ObjectStoreFullError

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def tiny_disk() -> Iterator[str]:
    """A 32 MiB tmpfs for the spill folder (needs root)."""
    path = short_tmpdir("zspill-")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", path],
                          capture_output=True, text=True)
    if done.returncode != 0:
        os.rmdir(path)
        pytest.skip(f"cannot mount a small tmpfs: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)
        os.rmdir(path)


def test_full_spill_disk_fails_within_the_bound(tiny_disk: str) -> None:
    with cluster(ZRAY_STORE_FULL_TIMEOUT="2", ZRAY_SPILL_DIR=tiny_disk):
        kept = [zray.put(array(80, i)) for i in range(2)]  # 160 of 200 MiB
        with pytest.raises(ObjectStoreFullError) as info:
            zray.put(array(80, 9))  # needs a spill of 80 MiB into 32 MiB
        text = str(info.value)
        assert "spilling failed" in text and tiny_disk in text and "--spill-dir" in text, text
        assert [int(zray.get(r, timeout=60)[0]) for r in kept] == [0, 1]
        del kept
        wait_store(lambda n: n["store_used"] == 0, "the store to empty")
    assert not os.listdir(tiny_disk)
