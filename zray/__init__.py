"""zray: distributed computing for Python in the architecture of the Ray paper.

The public API is loaded on first use, so that services and workers, which
import `zray.*` modules, do not pay for the parts of the library they do not use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "available_resources": "zray.client.api",
    "cancel": "zray.client.api",
    "cluster_resources": "zray.client.api",
    "get": "zray.client.api",
    "get_runtime_context": "zray.client.api",
    "init": "zray.client.bootstrap",
    "is_initialized": "zray.client.api",
    "nodes": "zray.client.api",
    "put": "zray.client.api",
    "remote": "zray.client.api",
    "shutdown": "zray.client.api",
    "wait": "zray.client.api",
    "timeline": "zray.util.state",
    "ObjectRef": "zray.client.object_ref",
    "get_actor": "zray.client.actor",
    "kill": "zray.client.actor",
    "method": "zray.client.actor",
    "ActorDiedError": "zray.common.errors",
    "GetTimeoutError": "zray.common.errors",
    "ObjectLostError": "zray.common.errors",
    "ObjectStoreFullError": "zray.common.errors",
    "OutOfMemoryError": "zray.common.errors",
    "OwnerDiedError": "zray.common.errors",
    "RayletDiedError": "zray.common.errors",
    "TaskCancelledError": "zray.common.errors",
    "TaskError": "zray.common.errors",
    "WorkerCrashedError": "zray.common.errors",
    "exceptions": "zray.common.errors",
    "kv": "zray.client.kv",
}

__all__ = [
    "ActorDiedError", "get_actor", "kill", "method",
    "GetTimeoutError", "ObjectLostError", "ObjectRef", "ObjectStoreFullError",
    "OutOfMemoryError", "OwnerDiedError", "RayletDiedError", "TaskCancelledError", "TaskError",
    "WorkerCrashedError",
    "available_resources", "cancel",
    "cluster_resources", "exceptions", "get", "get_runtime_context", "init", "is_initialized",
    "kv", "nodes", "put", "remote", "shutdown", "timeline", "wait",
]


_MODULES = ("exceptions", "kv")


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'zray' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if name in _MODULES else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:
    from zray.client import kv
    from zray.client.actor import get_actor, kill, method
    from zray.client.api import (
        available_resources,
        cancel,
        cluster_resources,
        get,
        get_runtime_context,
        is_initialized,
        nodes,
        put,
        remote,
        shutdown,
        wait,
    )
    from zray.client.bootstrap import init
    from zray.client.object_ref import ObjectRef
    from zray.common import errors as exceptions
    from zray.common.errors import (
        ActorDiedError,
        GetTimeoutError,
        ObjectLostError,
        ObjectStoreFullError,
        OutOfMemoryError,
        OwnerDiedError,
        RayletDiedError,
        TaskCancelledError,
        TaskError,
        WorkerCrashedError,
    )
    from zray.util.state import timeline
