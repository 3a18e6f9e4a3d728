"""Starting the services of `zray start` and waiting until they serve.

A head is the GCS shards, one global scheduler and one raylet; a node is one
more raylet. Each `zray start` runs one detached supervisor
(zray.services.supervisor) that starts its services, restarts any that dies
and stops them on `zray stop`. Each raylet gets its own session folder (ipc
sockets, logs) and shared-memory store folder. If a service fails or the
start times out, what was started is stopped and removed again, and
`StartFailed` carries the log tail.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from zray.client.local_cluster import (
    log_path,
    log_tail,
    new_session_dir,
    raylet_args,
    spawn_service,
    stop_session,
    store_dir_for,
)
from zray.common.errors import ZrayError
from zray.common.messages.tables import KV, NODES, SCHEDULERS_PREFIX, NodeInfo
from zray.common.sockets import host_ip, local_ip_towards
from zray.services.gcs.client import GcsClient
from zray.services.gcs.sharding import shard_address
from zray.services.supervisor.state import (
    SPEC_FILE,
    ServiceSpec,
    SupervisorSpec,
    SupervisorState,
    read_state,
    write_json_atomic,
)

POLL_INTERVAL = 0.1
WILDCARDS = ("0.0.0.0",)


class StartFailed(ZrayError):
    """A service of `zray start` died or did not become ready in time."""


@dataclass(frozen=True)
class NodeOptions:
    num_cpus: float | None = None
    num_gpus: float | None = None
    resources: dict[str, float] = field(default_factory=dict)
    object_store_memory: int | None = None
    node_name: str = ""
    spill_dir: str = ""
    # Prometheus exporters: the GCS on this port, the scheduler on +1, the raylet on +2
    # (a joining node's raylet on this port); None: off.
    metrics_port: int | None = None
    # The head's web dashboard port; None: no dashboard.
    dashboard_port: int | None = None


@dataclass
class Launch:
    """Services started by one `zray start`, in start order."""

    session_dir: str
    store_dir: str
    raylet_address: str
    specs: list[ServiceSpec] = field(default_factory=list)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    dashboard_url: str = ""
    warnings: list[str] = field(default_factory=list)

    def log(self, name: str) -> str:
        return log_path(self.session_dir, name)

    def spawn(self, name: str, args: list[str]) -> None:
        """Add a service for the supervisor to run (in this order)."""
        self.specs.append(ServiceSpec(name=name, args=args, log=self.log(name)))

    def start(self) -> None:
        """Start the supervisor, which starts the services."""
        write_json_atomic(os.path.join(self.session_dir, SPEC_FILE),
                          SupervisorSpec(services=self.specs).model_dump_json(indent=2))
        self.procs["supervisor"] = spawn_service(["zray.services.supervisor", self.session_dir],
                                                 self.log("supervisor"), detached=True)

    def state(self) -> SupervisorState | None:
        return read_state(self.session_dir)

    def pid_of(self, name: str) -> int | None:
        state = self.state()
        found = [s.pid for s in state.services if s.name == name and s.alive] if state else []
        return found[0] if found else None

    def check_alive(self) -> None:
        sup = self.procs["supervisor"]
        if sup.poll() is not None:
            name = "supervisor"
            raise StartFailed(f"the supervisor exited with code {sup.returncode} during start; last "
                              f"lines of {self.log(name)}:\n{log_tail(self.log(name))}")
        state = self.state()
        for svc in state.services if state else []:
            if svc.last_exit is not None:  # a restart during start would only repeat the failure
                raise StartFailed(f"{svc.name} exited with code {svc.last_exit} during start; last "
                                  f"lines of {svc.log}:\n{log_tail(svc.log)}")

    def abort(self, timeout: float = 5.0) -> None:
        """Stop everything this launch started and remove its folders."""
        stop_session(list(self.procs.values()), self.session_dir, self.store_dir, timeout)


def bind_problem(host: str, port: int) -> str | None:
    """Why a TCP listener cannot bind host:port, or None when it can."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is in use"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def _new_launch() -> Launch:
    session = new_session_dir()
    return Launch(session_dir=session, store_dir=store_dir_for(session),
                  raylet_address=f"ipc://{session}/sockets/raylet")


def gcs_shard_args(host: str, port: int, index: int, num_shards: int, data_dir: str) -> list[str]:
    base = f"tcp://{host}:{port}"
    args = ["zray.services.gcs", "start", "--address", shard_address(base, index),
            "--data-dir", data_dir, "--shards", str(num_shards), "--shard-index", str(index)]
    advertised = advertised_host(host)
    if advertised != host:
        args += ["--advertise-host", advertised]
    if index:
        args += ["--head-address", f"tcp://{advertised}:{port}"]
    return args


def _spawn_raylet(launch: Launch, gcs_address: str, opts: NodeOptions, raylet_offset: int = 0) -> None:
    # Other raylets reach this one on the interface that routes to the GCS.
    gcs_host = gcs_address.removeprefix("tcp://").rsplit(":", 1)[0]
    node_address = f"tcp://{local_ip_towards(gcs_host)}:0"
    launch.spawn("raylet", raylet_args(
        gcs_address, launch.raylet_address, launch.store_dir, num_cpus=opts.num_cpus,
        num_gpus=opts.num_gpus, resources=opts.resources,
        object_store_memory=opts.object_store_memory, session_dir=launch.session_dir,
        node_name=opts.node_name, spill_dir=opts.spill_dir, node_address=node_address)
        + _metrics_args(opts.metrics_port, raylet_offset))


def _metrics_args(port: int | None, offset: int) -> list[str]:
    if port is None:
        return []
    return ["--metrics-port", str(port + offset if port else 0)]


def advertised_host(host: str) -> str:
    """The address others use for a service bound to `host` (a wildcard means this host's IP)."""
    return host_ip() if host in WILDCARDS else host


def start_head(host: str, port: int, opts: NodeOptions, timeout: float,
               gcs_shards: int = 1) -> Launch:
    """GCS shards on tcp://host:port.. (shard i on port + 2i, its PUB on the
    next port), a global scheduler, a raylet."""
    ports = range(port, port + 2 * gcs_shards)
    for p in ports:
        problem = bind_problem(host, p)
        if problem:
            raise StartFailed(f"{problem} (the GCS needs ports {port}-{ports[-1]}); stop what "
                              "holds it or choose another --port or --host")
    first = opts.metrics_port or 0
    for p in range(first, first + 3) if first else ():
        problem = bind_problem(host, p)
        if problem:
            raise StartFailed(f"{problem} (metrics use ports {first} to {first + 2}); "
                              "choose another --metrics-port")
    gcs_address = f"tcp://{advertised_host(host)}:{port}"
    launch = _new_launch()
    with _undone_on_failure(launch):
        data_dir = os.path.join(launch.session_dir, "gcs")
        for index in range(gcs_shards):
            # Metrics ports: shard 0 on +0, the scheduler +1, the raylet +2, shard i > 0 on +2+i.
            launch.spawn("gcs" if index == 0 else f"gcs-{index}",
                         gcs_shard_args(host, port, index, gcs_shards, data_dir)
                         + _metrics_args(opts.metrics_port, 2 + index if index else 0))
        launch.spawn("global-sched", ["zray.services.global_sched", "start",
                                      "--gcs-address", gcs_address,
                                      "--address", f"tcp://{advertised_host(host)}:0"]
                     + _metrics_args(opts.metrics_port, 1))
        _spawn_raylet(launch, gcs_address, opts, raylet_offset=2)
        if opts.dashboard_port is not None:
            _spawn_dashboard(launch, gcs_address, host, opts.dashboard_port)
        launch.start()
        wait_ready(launch, gcs_address, timeout)
    return launch


def _spawn_dashboard(launch: Launch, gcs_address: str, host: str, port: int) -> None:
    """A taken dashboard port does not fail the start (the cluster works without it)."""
    problem = bind_problem(host, port)
    if problem:
        launch.warnings.append(f"the dashboard is not served: {problem}; give --dashboard-port "
                               "to choose another, or --no-dashboard")
        return
    launch.spawn("dashboard", ["zray.dashboard", "--gcs-address", gcs_address, "--host", host,
                               "--port", str(port)])
    launch.dashboard_url = f"http://{advertised_host(host)}:{port}/"


def start_node(gcs_address: str, opts: NodeOptions, timeout: float) -> Launch:
    """One more raylet for the cluster whose GCS is at gcs_address."""
    gcs = GcsClient(gcs_address, timeout=min(timeout, 5.0))
    try:
        gcs.ping()
    except ZrayError as exc:
        raise StartFailed(f"no zray GCS answers at {gcs_address}: {exc}") from None
    finally:
        gcs.close()
    launch = _new_launch()
    with _undone_on_failure(launch):
        _spawn_raylet(launch, gcs_address, opts)
        launch.start()
        wait_ready(launch, gcs_address, timeout)
    return launch


@contextlib.contextmanager
def _undone_on_failure(launch: Launch) -> Iterator[None]:
    """A start that fails part-way stops what it started and removes its folders."""
    try:
        yield
    except BaseException:
        launch.abort()
        raise


def wait_ready(launch: Launch, gcs_address: str, timeout: float) -> None:
    """Until the GCS answers, the raylet's node record is alive and the global
    scheduler (when this launch started one) has registered."""
    deadline = time.monotonic() + timeout
    wants_sched = any(spec.name == "global-sched" for spec in launch.specs)
    gcs = GcsClient(gcs_address, timeout=1.0)
    try:
        while True:
            launch.check_alive()
            with contextlib.suppress(ZrayError):
                gcs.ping(timeout=0.5)
                nodes = [NodeInfo.model_validate_json(v) for _, v in gcs.scan(NODES)]
                raylet_up = any(n.alive and n.local_address == launch.raylet_address for n in nodes)
                sched_pid = launch.pid_of("global-sched")
                sched_up = not wants_sched or sched_pid is not None and any(
                    json.loads(v).get("pid") == sched_pid
                    for _, v in gcs.scan(KV, prefix=SCHEDULERS_PREFIX))
                if raylet_up and sched_up:
                    return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {spec.log}\n{log_tail(spec.log, 10)}" for spec in launch.specs)
                raise StartFailed(f"services did not become ready within {timeout:g}s:\n{tails}")
            time.sleep(POLL_INTERVAL)
    finally:
        gcs.close()
