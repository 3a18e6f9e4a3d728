"""`zray.init`: an embedded cluster's processes start while this process
imports the client library, rather than after it.

Both take about a fifth of a second on a small machine; started first, the
cluster's interpreter and the driver's imports run side by side. Everything
else is `zray.client.api.init`.
"""

from __future__ import annotations

import sys
from typing import Any

from zray.client.local_cluster import LocalCluster, embedded_wanted


def init(address: str | None = None, *, num_cpus: float | None = None,
         num_gpus: float | None = None, resources: dict[str, float] | None = None,
         object_store_memory: int | None = None, ignore_reinit_error: bool = False,
         log_to_driver: bool = True, _token: str | None = None, **_ignored: Any) -> dict[str, Any]:
    """Start an embedded cluster (no address) or join one ("auto", "host:port").

    Joining over TCP needs the cluster token: `_token`, else $ZRAY_TOKEN, else the
    token file `zray start` wrote on this host (see zray.common.security)."""
    cluster = None
    if _starts_embedded(address):
        cluster = LocalCluster.start(num_cpus, num_gpus, resources, object_store_memory)
    try:
        from zray.client import api
    except BaseException:
        if cluster is not None:
            cluster.stop()
        raise
    # api.init owns the cluster from here: it stops one it does not connect to.
    return api.init(address, num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                    object_store_memory=object_store_memory,
                    ignore_reinit_error=ignore_reinit_error, log_to_driver=log_to_driver,
                    _token=_token, _cluster=cluster, **_ignored)


def _starts_embedded(address: str | None) -> bool:
    """Whether init will start an embedded cluster (and is not a repeated call)."""
    if not embedded_wanted(address):
        return False
    api = sys.modules.get("zray.client.api")
    return api is None or not api.is_initialized()
