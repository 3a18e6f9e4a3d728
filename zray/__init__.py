"""zray: distributed computing for Python in the architecture of the Ray paper."""

from zray.client.api import (
    available_resources,
    cancel,
    cluster_resources,
    get,
    get_runtime_context,
    init,
    is_initialized,
    nodes,
    put,
    remote,
    shutdown,
    wait,
)
from zray.client.object_ref import ObjectRef
from zray.common import errors as exceptions
from zray.common.errors import (
    GetTimeoutError,
    ObjectLostError,
    ObjectStoreFullError,
    TaskCancelledError,
    TaskError,
    WorkerCrashedError,
)

__version__ = "0.1.0"

__all__ = [
    "GetTimeoutError", "ObjectLostError", "ObjectRef", "ObjectStoreFullError",
    "TaskCancelledError", "TaskError", "WorkerCrashedError", "available_resources", "cancel",
    "cluster_resources", "exceptions", "get", "get_runtime_context", "init", "is_initialized",
    "nodes", "put", "remote", "shutdown", "wait",
]
