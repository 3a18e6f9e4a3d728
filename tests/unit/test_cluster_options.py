"""The options of a new embedded cluster are checked before anything starts (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from zray.client.local_cluster import check_options
from zray.common.errors import ConfigError


@pytest.mark.parametrize(("options", "named"), [
    ({"num_cpus": -1}, "num_cpus"),
    ({"num_cpus": "2"}, "num_cpus"),
    ({"num_gpus": float("nan")}, "num_gpus"),
    ({"num_cpus": True}, "num_cpus"),
    ({"object_store_memory": 0}, "object_store_memory"),
    ({"object_store_memory": 1.5e9}, "object_store_memory"),
    ({"resources": {"CPU": 2}}, "num_cpus"),
    ({"resources": {"GPU": 1}}, "num_gpus"),
    ({"resources": {"disk": "big"}}, "'disk'"),
    ({"resources": {"": 1}}, "non-empty"),
    ({"resources": [("disk", 1)]}, "dict"),
])
def test_a_bad_option_is_named(options: dict[str, Any], named: str) -> None:
    values = {"num_cpus": None, "num_gpus": None, "resources": None, "object_store_memory": None}
    with pytest.raises(ConfigError, match=named):
        check_options(**{**values, **options})


def test_good_options_pass() -> None:
    check_options(None, None, None, None)
    check_options(0, 0.5, {"disk": 2, "accel": 0.25}, 1 << 30)
