"""`zray start`, `zray stop`, `zray status`: a long-lived cluster on this host.

`zray start --head` runs a GCS shard, a global scheduler and a raylet as
detached processes; `zray start --address H:P` adds a raylet to a running
cluster. Both record what they started in current_cluster.json (see
cluster_record.py), which `zray.init("auto")`, `zray stop` and `zray status` read.

The head creates the cluster token (zray.common.security), which joining
needs; both keep it in a file only its owner can read, and hand it to their
services in the environment (never on a command line, where `ps` shows it).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from typing import Annotated, Any, NoReturn, Optional

import typer

from zray.cli import cluster_record as rec
from zray.cli.launch import (
    Launch,
    NodeOptions,
    StartFailed,
    advertised_host,
    start_head,
    start_node,
)
from zray.common import security
from zray.common.errors import ConfigError, ZrayError

EXIT_OK = 0
EXIT_FAILED = 1
DEFAULT_PORT = 6379
DASHBOARD_PORT = 8265


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(EXIT_FAILED)


def _parse_resources(text: str) -> dict[str, float]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--resources") from None
    if not isinstance(value, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
        raise typer.BadParameter('expected a JSON object of numbers, e.g. \'{"disk": 2}\'',
                                 param_hint="--resources")
    return {str(k): float(v) for k, v in value.items()}


def _remove_stale(record: rec.ClusterRecord) -> None:
    for path in record.store_dirs + record.session_dirs:
        shutil.rmtree(path, ignore_errors=True)
    rec.remove_record()
    security.remove_token_file()
    typer.echo(f"removed the record of a cluster that no longer runs ({record.gcs_address})")


def start(
    head: Annotated[bool, typer.Option("--head", help="Start a new cluster: GCS, global scheduler, raylet.")] = False,
    address: Annotated[Optional[str], typer.Option(help="Join the cluster whose GCS is at host:port (adds a raylet).")] = None,
    port: Annotated[int, typer.Option(help="GCS port of a head; its PUB socket uses port + 1.")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option(help="Interface the head's GCS and scheduler bind.")] = "127.0.0.1",
    num_cpus: Annotated[Optional[float], typer.Option(help="CPUs this node offers (default: all cores).")] = None,
    num_gpus: Annotated[Optional[float], typer.Option(help="GPUs this node offers (default: detected).")] = None,
    resources: Annotated[str, typer.Option(help='Custom resources as JSON, e.g. \'{"disk": 2}\'.')] = "{}",
    object_store_memory: Annotated[Optional[int], typer.Option(help="Object store capacity in bytes (default: 30% of RAM, at most 90% of /dev/shm free).")] = None,
    spill_dir: Annotated[str, typer.Option(help="Where objects spill when the store is full (default: <session>/spill).")] = "",
    node_name: Annotated[str, typer.Option(help="Name of this node in status (default: host name).")] = "",
    gcs_shards: Annotated[int, typer.Option(min=1, help="GCS shards of a head, each its own process (shard i on port + 2i).")] = 1,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the services to be ready.")] = 30.0,
    metrics_port: Annotated[Optional[int], typer.Option(help="Prometheus metrics: the GCS on this port, the global scheduler on +1, the raylet on +2 (a joining node's raylet on this port); 0 picks free ports. Default: off.")] = None,
    dashboard_port: Annotated[int, typer.Option(help="Port of the head's web dashboard.")] = DASHBOARD_PORT,
    no_dashboard: Annotated[bool, typer.Option("--no-dashboard", help="Do not serve the web dashboard.")] = False,
    token: Annotated[Optional[str], typer.Option(help="Cluster token: the head's (default: a new one), or the one to join with (default: $ZRAY_TOKEN, else this host's token file). Prefer ZRAY_TOKEN: `ps` shows command lines.")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="No token: TCP sockets are neither authenticated nor encrypted, and anyone who reaches them can run code here.")] = False,
) -> None:
    """Start a cluster's head (--head) or add a node to one (--address), in the background."""
    if head == (address is not None):
        _fail("give exactly one of --head (start a new cluster) or --address HOST:PORT (join one)")
    cluster_token = _cluster_token(token, insecure, head, address)
    opts = NodeOptions(num_cpus, num_gpus, _parse_resources(resources), object_store_memory, node_name,
                       spill_dir, metrics_port, None if no_dashboard or not head else dashboard_port)
    _warn_small_shm(object_store_memory)
    with rec.cluster_lock():
        record = rec.read_record()
        if record is not None and not record.live_services():
            _remove_stale(record)
            record = None
        try:
            if address is None:
                _start_head(record, host, port, opts, timeout, gcs_shards, cluster_token)
            else:
                _start_node(record, address, opts, timeout, cluster_token)
        except StartFailed as exc:
            _fail(f"zray start failed: {exc}")


def _cluster_token(token: str | None, insecure: bool, head: bool, address: str | None) -> str | None:
    """The token this start uses (None: --insecure), now also in this process's
    environment, which the services it starts inherit."""
    if insecure:
        if token is not None:
            _fail("give --token or --insecure, not both")
        os.environ.pop(security.TOKEN_ENV, None)
        os.environ[security.INSECURE_ENV] = "1"
        security.use_token(None)
        return None
    try:
        if token is not None:
            chosen = security.check_token(token)
        elif head:
            chosen = security.check_token(os.environ.get(security.TOKEN_ENV) or security.new_token())
        else:
            found = security.find_token()
            if found is None:
                _fail(f"joining the cluster at {address} needs its token: pass --token TOKEN or set "
                      f"{security.TOKEN_ENV} (`zray start --head` printed it and keeps it in "
                      f"{security.TOKEN_FILE_NAME} under the head's session root, mode 0600)")
            chosen = found[0]
    except ConfigError as exc:
        _fail(f"zray start: {exc}")
    os.environ[security.TOKEN_ENV] = chosen
    os.environ.pop(security.INSECURE_ENV, None)
    security.use_token(chosen)
    return chosen


def _warn_small_shm(capacity: int | None) -> None:
    from zray.services.raylet.object_store import check_shm, default_capacity

    warning = check_shm("/dev/shm", capacity or default_capacity("/dev/shm"),
                        explicit=capacity is not None)
    if warning:
        typer.echo(f"warning: {warning}", err=True)


def _start_head(record: rec.ClusterRecord | None, host: str, port: int, opts: NodeOptions,
                timeout: float, gcs_shards: int, token: str | None) -> None:
    if record is not None:
        pids = ", ".join(f"{s.name} {s.pid}" for s in record.live_services())
        _fail(f"a zray cluster started by `zray start` already runs on this host (GCS at "
              f"{record.gcs_address}; pids {pids}); run `zray stop` first")
    if token is None:
        typer.echo(f"warning: --insecure: the GCS and scheduler listen on {host} without "
                   "authentication or encryption; anyone who can reach them can run code here",
                   err=True)
    launch = start_head(host, port, opts, timeout, gcs_shards)
    addr = f"{advertised_host(host)}:{port}"
    record = rec.ClusterRecord(
        gcs_address=f"tcp://{addr}", raylet_address=launch.raylet_address, address=addr,
        session_dir=launch.session_dir, head=True, started_at=time.time(),
        services=_services(launch), session_dirs=[launch.session_dir], store_dirs=[launch.store_dir])
    rec.write_record(record)
    for warning in launch.warnings:
        typer.echo(f"warning: {warning}", err=True)
    dashboard = f"  dashboard:                         {launch.dashboard_url}\n" if launch.dashboard_url else ""
    if token is not None:
        path = security.write_token_file(token)
        join = f"zray start --address {addr} --token {token}"
        remote = f"ZRAY_TOKEN={token} python app.py  with zray.init(\"{addr}\")"
        secret = f"  cluster token (keep it secret):    in {path} (mode 0600)\n"
    else:
        join = f"ZRAY_INSECURE=1 zray start --address {addr} --insecure"
        remote = f"ZRAY_INSECURE=1 python app.py  with zray.init(\"{addr}\")"
        secret = "  cluster token:                     none (--insecure)\n"
    typer.echo(f"zray head started: GCS at {addr}; session {launch.session_dir}\n\n"
               f"{dashboard}"
               f"  connect from Python on this host:  zray.init(\"auto\")  or  zray.init(\"{addr}\")\n"
               f"  add a node to this cluster:        {join}\n"
               f"  a driver on another host:          {remote}\n"
               f"{secret}"
               f"  see the cluster:                   zray status\n"
               f"  stop what zray start started here: zray stop")


def _start_node(record: rec.ClusterRecord | None, address: str, opts: NodeOptions,
                timeout: float, token: str | None) -> None:
    from zray.common.sockets import normalize

    gcs_address = normalize(address)
    if record is not None and record.gcs_address != gcs_address:
        _fail(f"this host already runs services of the cluster at {record.gcs_address}; "
              f"`zray stop` them before joining {address}")
    launch = start_node(gcs_address, opts, timeout)
    if record is None:
        record = rec.ClusterRecord(
            gcs_address=gcs_address, raylet_address=launch.raylet_address,
            address=gcs_address.removeprefix("tcp://"), session_dir=launch.session_dir,
            head=False, started_at=time.time())
    record.services += _services(launch)
    record.session_dirs.append(launch.session_dir)
    record.store_dirs.append(launch.store_dir)
    rec.write_record(record)
    if token is not None:
        security.write_token_file(token)  # for zray.init("auto") and `zray status` here
    typer.echo(f"zray node started: raylet pid {launch.pid_of('raylet')} joined the cluster at "
               f"{address}; session {launch.session_dir}")


def _services(launch: Launch) -> list[rec.ServiceRecord]:
    return [rec.service_record(name, proc.pid, launch.log(name)) for name, proc in launch.procs.items()]


def stop(
    timeout: Annotated[float, typer.Option(help="Seconds each stage may take before SIGKILL.")] = 10.0,
) -> None:
    """Stop what `zray start` started on this host and remove its session folders."""
    with rec.cluster_lock():
        record = rec.read_record()
        if record is None:
            rec.remove_record()  # an unreadable file, if any
            typer.echo("no zray cluster started by `zray start` runs on this host")
            return
        for service, what in rec.terminate(record.services, timeout):
            typer.echo(f"{service.name} (pid {service.pid}): {what}")
        for path in record.store_dirs + record.session_dirs:
            shutil.rmtree(path, ignore_errors=True)
        rec.remove_record()
        security.remove_token_file()
        typer.echo(f"removed {len(record.session_dirs)} session folder(s) and "
                   f"{len(record.store_dirs)} object store folder(s)")


def status(
    address: Annotated[Optional[str], typer.Option(help="GCS host:port (default: the cluster `zray start` runs here).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output, with this host's services.")] = False,
) -> None:
    """Nodes of a cluster: liveness, resources, object store, tasks and workers."""
    from zray.cli.status_view import format_services, format_status, status_dict
    from zray.common.messages.tables import ACTORS, NODES, ActorInfo, NodeInfo
    from zray.services.gcs.client import GcsClient

    record = rec.read_record()
    gcs_address = _gcs_address(address, record)
    gcs = GcsClient(gcs_address, timeout=3.0)
    try:
        nodes = [NodeInfo.model_validate_json(v) for _, v in gcs.scan(NODES)]
        actors = [ActorInfo.model_validate_json(v) for _, v in gcs.scan(ACTORS)]
    except ZrayError as exc:
        _fail(f"no zray cluster is reachable at {gcs_address}: {exc}")
    finally:
        gcs.close()
    now = time.time()
    services = _service_docs(record) if record and record.gcs_address == gcs_address else []
    if not as_json:
        typer.echo(format_status(gcs_address, nodes, now, actors))
        if services:
            typer.echo(format_services(services))
        return
    json.dump(status_dict(gcs_address, nodes, now, services, actors), sys.stdout, indent=2)
    sys.stdout.write("\n")


def memory(
    address: Annotated[Optional[str], typer.Option(help="GCS host:port (default: the cluster `zray start` runs here).")] = None,
    limit: Annotated[int, typer.Option(help="How many of the largest objects to list per node.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The largest live objects on each node of this host, and who keeps them alive."""
    from zray.cli.memory_view import format_memory, query_objects
    from zray.cli.status_view import node_alive

    if limit < 0:
        raise typer.BadParameter("must be 0 or more", param_hint="--limit")
    nodes = _nodes(address)
    now = time.time()
    docs: list[dict[str, Any]] = []
    lines: list[str] = []
    for node in nodes:
        if not node_alive(node, now) or not node.local_address.startswith("ipc://"):
            continue
        path = node.local_address.removeprefix("ipc://")
        if not os.path.exists(path):
            continue  # a raylet on another host: its socket is not reachable from here
        try:
            reply = query_objects(node, limit)
        except ZrayError as exc:
            _fail(str(exc))
        docs.append({"node_id": node.node_id, "store_used": node.store_used,
                     "store_capacity": node.store_capacity, "spilled_bytes": node.spilled_bytes,
                     "num_objects": reply.total,
                     "objects": [o.model_dump() for o in reply.objects]})
        lines += format_memory(node, reply)
    if as_json:
        json.dump({"nodes": docs}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        typer.echo("\n".join(lines) or "no node of this cluster runs on this host")


def _gcs_address(address: str | None, record: rec.ClusterRecord | None) -> str:
    """The GCS to ask: --address, else the cluster `zray start` runs here."""
    from zray.common.sockets import normalize

    if address:
        return normalize(address)
    if record is not None:
        return record.gcs_address
    _fail("no zray cluster is running on this host (start one with `zray start --head`), "
          "and no --address was given")


def _nodes(address: str | None) -> list[Any]:
    from zray.common.messages.tables import NODES, NodeInfo
    from zray.services.gcs.client import GcsClient

    record = rec.read_record()
    gcs_address = _gcs_address(address, record)
    gcs = GcsClient(gcs_address, timeout=3.0)
    try:
        return [NodeInfo.model_validate_json(v) for _, v in gcs.scan(NODES)]
    except ZrayError as exc:
        _fail(f"no zray cluster is reachable at {gcs_address}: {exc}")
    finally:
        gcs.close()


def _service_docs(record: rec.ClusterRecord) -> list[dict[str, Any]]:
    """This host's services: the supervisors `zray start` ran and what they run."""
    from zray.services.supervisor.state import read_state

    docs: list[dict[str, Any]] = []
    for sup in record.services:
        alive = sup.process() is not None
        docs.append({"name": sup.name, "pid": sup.pid, "alive": alive, "log": sup.log, "restarts": 0})
        state = read_state(os.path.dirname(os.path.dirname(sup.log)))
        for svc in state.services if state and alive else []:
            docs.append({"name": svc.name, "pid": svc.pid, "alive": svc.alive, "log": svc.log,
                         "restarts": svc.restarts, "last_exit": svc.last_exit,
                         "supervisor_pid": sup.pid})
    return docs


def token(
    new: Annotated[bool, typer.Option("--new", help="Print a new random token instead (for services started without `zray start`).")] = False,
) -> None:
    """Print the cluster token of this host's cluster ($ZRAY_TOKEN, else the file `zray start` wrote)."""
    if new:
        typer.echo(security.new_token())
        return
    try:
        found = security.find_token()
    except ConfigError as exc:
        _fail(str(exc))
    if found is None:
        _fail(f"no cluster token here: {security.TOKEN_ENV} is not set and {security.token_file()} "
              "does not exist (`zray start` writes it)")
    typer.echo(found[0])


def register(app: typer.Typer) -> None:
    app.command()(start)
    app.command()(token)
    app.command()(stop)
    app.command()(status)
    app.command()(memory)
