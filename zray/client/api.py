"""The public API: `zray.init`, `remote`, `get`, `put`, `wait`, `cancel`, ..."""

from __future__ import annotations

import atexit
import json
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from zray.client.core import CoreClient
from zray.client.local_cluster import SESSION_ROOT, LocalCluster, embedded_wanted
from zray.client.object_ref import ObjectRef
from zray.client.output import LogMonitor
from zray.client.remote_function import RemoteFunction
from zray.common import security
from zray.common.errors import ConfigError, ConnectionFailedError, ZrayError
from zray.common.ids import JobID
from zray.common.messages.tables import JOBS, NODES, JobInfo, NodeInfo
from zray.common.sockets import normalize
from zray.services.gcs.client import GcsClient

CURRENT_CLUSTER_FILE = os.path.join(SESSION_ROOT, "current_cluster.json")
NODE_DEAD_AFTER = 10.0


class _State:
    client: CoreClient | None = None
    cluster: LocalCluster | None = None
    monitor: LogMonitor | None = None
    lock = threading.RLock()


_state = _State()


def is_initialized() -> bool:
    return _state.client is not None


def init(address: str | None = None, *, num_cpus: float | None = None,
         num_gpus: float | None = None, resources: dict[str, float] | None = None,
         object_store_memory: int | None = None, ignore_reinit_error: bool = False,
         log_to_driver: bool = True, _token: str | None = None,
         _cluster: LocalCluster | None = None, **_ignored: Any) -> dict[str, Any]:
    """Start an embedded cluster (no address) or join one ("auto", "host:port").

    Joining over TCP needs the cluster token: `_token`, else $ZRAY_TOKEN, else the
    token file `zray start` wrote on this host (see zray.common.security).
    `_cluster`: the embedded cluster zray.init started already (bootstrap.py);
    this call owns it from now on, and stops it unless it is connected to."""
    with _state.lock:
        if _state.client is not None:
            if _cluster is not None:
                _cluster.stop()  # another thread's init came first
            if ignore_reinit_error:
                return _context_info()
            raise ZrayError("zray.init() was already called; call zray.shutdown() first or pass "
                            "ignore_reinit_error=True")
        if _token is not None:
            security.use_token(_token)
        cluster = None
        if embedded_wanted(address):
            cluster = _cluster or LocalCluster.start(num_cpus, num_gpus, resources,
                                                     object_store_memory)
            gcs_address, raylet_address = cluster.gcs_address, cluster.raylet_address
        else:
            address = address or os.environ["ZRAY_ADDRESS"]
            if any(v is not None for v in (num_cpus, num_gpus, resources, object_store_memory)):
                raise ConfigError("num_cpus/num_gpus/resources/object_store_memory describe a new "
                                  "cluster; they cannot be given when joining one at " + address)
            gcs_address, raylet_address = _find_cluster(address)
        try:
            client = _connect(gcs_address, raylet_address, cluster)
        except BaseException:
            if cluster is not None:
                cluster.stop()
            raise
        _state.client, _state.cluster = client, cluster
        if log_to_driver:
            assert client.job_id is not None
            _state.monitor = LogMonitor(client.ctx, client.log_address, client.job_id.hex())
        return _context_info()


def _connect(gcs_address: str, raylet_address: str, cluster: LocalCluster | None) -> CoreClient:
    gcs = GcsClient(gcs_address, timeout=30.0)
    try:
        deadline = time.monotonic() + 30.0
        while True:
            try:
                gcs.ping(timeout=0.2)
                break
            except ConnectionFailedError:
                if cluster is not None:
                    cluster.check_alive()
                if time.monotonic() > deadline:
                    raise
        job_id = JobID.from_int(gcs.increment("job"))
        gcs.put(JOBS, job_id.hex(), JobInfo(job_id=job_id.hex(), driver_pid=os.getpid(),
                                             host=socket.gethostname(), start_time=time.time(),
                                             code_paths=_code_paths()).model_dump_json().encode())
    finally:
        gcs.close()
    return CoreClient(raylet_address, os.urandom(16), is_driver=True, job_id=job_id)


def _code_paths() -> list[str]:
    """The driver's script folder and working folder, for its workers' sys.path."""
    import sys

    paths = [os.path.abspath(sys.path[0]) if sys.path and sys.path[0] else os.getcwd(), os.getcwd()]
    return list(dict.fromkeys(paths))


def _find_cluster(address: str) -> tuple[str, str]:
    """(GCS address, local raylet address) of a running cluster."""
    if address == "auto":
        try:
            with open(CURRENT_CLUSTER_FILE) as f:
                info = json.load(f)
        except FileNotFoundError:
            raise ConnectionFailedError(
                "init('auto') found no cluster started by `zray start` on this host "
                f"({CURRENT_CLUSTER_FILE} is missing); run `zray start --head` first") from None
        return info["gcs_address"], info["raylet_address"]
    gcs_address = normalize(address)
    gcs = GcsClient(gcs_address, timeout=10.0)
    try:
        nodes = [NodeInfo.model_validate_json(v) for _, v in gcs.scan(NODES)]
    finally:
        gcs.close()
    for node in nodes:
        path = node.local_address.removeprefix("ipc://")
        if node.alive and os.path.exists(path):
            return gcs_address, node.local_address
    raise ConnectionFailedError(f"the cluster at {address} has no raylet on this host; start one "
                                f"with `zray start --address {address}`")


def _attach_worker(client: CoreClient) -> None:
    """Used by worker processes: the API talks to the worker's own client."""
    _state.client = client


def _client() -> CoreClient:
    client = _state.client
    if client is None:
        raise ZrayError("zray is not initialized; call zray.init() first")
    return client


def _client_or_auto_init() -> CoreClient:
    if _state.client is None:
        init()
    return _client()


def shutdown() -> None:
    with _state.lock:
        client, cluster, monitor = _state.client, _state.cluster, _state.monitor
        _state.client = _state.cluster = _state.monitor = None
        if monitor is not None:
            monitor.stop()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.stop()


atexit.register(shutdown)


def _context_info() -> dict[str, Any]:
    client = _client()
    return {"node_id": client.node_id, "job_id": client.job_id.hex() if client.job_id else None,
            "session_dir": client.session_dir, "address": client.gcs.address}


# tasks and objects ---------------------------------------------------------

def remote(*args: Any, **options: Any) -> Any:
    """Decorator: `@remote` or `@remote(num_cpus=..., ...)` on a function or class."""
    if len(args) == 1 and not options and callable(args[0]):
        return _make_remote(args[0], {})
    if args:
        raise TypeError("@zray.remote takes keyword options only, e.g. @zray.remote(num_cpus=2)")
    return lambda target: _make_remote(target, options)


def _make_remote(target: Any, options: dict[str, Any]) -> Any:
    if isinstance(target, type):
        from zray.client.actor import ActorClass

        return ActorClass(target, options)
    return RemoteFunction(target, options)


def get(refs: ObjectRef | Sequence[ObjectRef], *, timeout: float | None = None) -> Any:
    client = _client()
    if isinstance(refs, ObjectRef):
        return client.get([refs], timeout)[0]
    if not isinstance(refs, (list, tuple)) or not all(isinstance(r, ObjectRef) for r in refs):
        raise TypeError(f"get() takes an ObjectRef or a list of ObjectRefs, got {type(refs).__name__}")
    return client.get(list(refs), timeout)


def put(value: Any) -> ObjectRef:
    return _client().put(value)


def wait(refs: Sequence[ObjectRef], *, num_returns: int = 1, timeout: float | None = None,
         fetch_local: bool = True) -> tuple[list[ObjectRef], list[ObjectRef]]:
    if isinstance(refs, ObjectRef) or not all(isinstance(r, ObjectRef) for r in refs):
        raise TypeError("wait() takes a list of ObjectRefs")
    if len(set(refs)) != len(refs):
        raise ValueError("wait() got duplicate ObjectRefs")
    if not 0 <= num_returns <= len(refs):
        raise ValueError(f"num_returns={num_returns} must be between 0 and len(refs)={len(refs)}")
    return _client().wait(list(refs), num_returns, timeout, fetch_local)


def cancel(ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    if not isinstance(ref, ObjectRef):
        raise TypeError(f"cancel() takes an ObjectRef, got {type(ref).__name__}")
    _client().cancel(ref, force)


# cluster -------------------------------------------------------------------

def _node_infos() -> list[NodeInfo]:
    return [NodeInfo.model_validate_json(v) for _, v in _client().gcs.scan(NODES)]


def _alive(node: NodeInfo) -> bool:
    return node.alive and time.time() - node.heartbeat_time < NODE_DEAD_AFTER


def nodes() -> list[dict[str, Any]]:
    """One dict per node, in Ray's shape."""
    return [{
        "NodeID": n.node_id, "Alive": _alive(n), "NodeManagerAddress": n.host,
        "NodeManagerHostname": n.host, "NodeName": n.node_name, "Resources": n.resources_total,
        "ObjectStoreSocketName": n.store_dir, "RayletSocketName": n.local_address,
    } for n in _node_infos()]


def _sum(key: str) -> dict[str, float]:
    total: dict[str, float] = {}
    for node in _node_infos():
        if _alive(node):
            for name, amount in getattr(node, key).items():
                total[name] = total.get(name, 0.0) + amount
    return total


def cluster_resources() -> dict[str, float]:
    return _sum("resources_total")


def available_resources() -> dict[str, float]:
    return {k: v for k, v in _sum("resources_available").items() if v > 0}


class RuntimeContext:
    def get_node_id(self) -> str:
        return _client().node_id

    def get_job_id(self) -> str:
        return _client().current_task_id.job_id().hex()

    def get_task_id(self) -> str | None:
        client = _client()
        return None if client.is_driver else client.current_task_id.hex()

    def get_actor_id(self) -> str | None:
        return getattr(_client(), "actor_id", None)

    @property
    def node_id(self) -> str:
        return self.get_node_id()

    @property
    def job_id(self) -> str:
        return self.get_job_id()


def get_runtime_context() -> RuntimeContext:
    return RuntimeContext()
