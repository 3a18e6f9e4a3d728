"""System fixtures: one embedded cluster per module (`zray.init(num_cpus=2)`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import zray_cluster

NUM_CPUS = 2


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, Any]]:
    """A warm two-CPU cluster shared by the tests of one module; shut down after them."""
    with zray_cluster(warm_workers=NUM_CPUS, num_cpus=NUM_CPUS) as info:
        yield info
