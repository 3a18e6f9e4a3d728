"""`zray raylet ...`: run a raylet in the foreground."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

app = typer.Typer(help="Raylet: local scheduler, workers and object store of one node.",
                  no_args_is_help=True)



@app.callback()
def _group() -> None:
    """Subcommands run in the foreground, for supervisors and containers."""


@app.command()
def start(
    gcs_address: Annotated[str, typer.Option(envvar="ZRAY_GCS_ADDRESS", help="GCS shard 0, host:port or ipc://path.")],
    num_cpus: Annotated[Optional[float], typer.Option(envvar="ZRAY_NUM_CPUS", help="CPUs to offer (default: all cores).")] = None,
    num_gpus: Annotated[Optional[float], typer.Option(envvar="ZRAY_NUM_GPUS", help="GPUs to offer (default: detected).")] = None,
    resources: Annotated[str, typer.Option(envvar="ZRAY_RESOURCES", help='Custom resources as JSON, e.g. \'{"disk": 2}\'.')] = "{}",
    object_store_memory: Annotated[Optional[int], typer.Option(envvar="ZRAY_OBJECT_STORE_MEMORY", help="Store capacity in bytes (default: 30% of RAM, at most 90% of the store folder's free space).")] = None,
    spill_dir: Annotated[str, typer.Option(envvar="ZRAY_SPILL_DIR", help="Where objects spill when the store is full (default: <session>/spill).")] = "",
    store_full_timeout: Annotated[Optional[float], typer.Option(envvar="ZRAY_STORE_FULL_TIMEOUT", help="Seconds a put or task output waits for store memory before ObjectStoreFullError (default 10).")] = None,
    session_dir: Annotated[str, typer.Option(envvar="ZRAY_SESSION_DIR", help="Folder for sockets and logs.")] = "",
    store_dir: Annotated[str, typer.Option(envvar="ZRAY_STORE_DIR", help="Folder of the shared-memory store (default under /dev/shm).")] = "",
    local_address: Annotated[str, typer.Option(envvar="ZRAY_LOCAL_ADDRESS", help="ipc:// address for this node's drivers and workers.")] = "",
    node_name: Annotated[str, typer.Option(envvar="ZRAY_NODE_NAME", help="Name shown in status (default: host name).")] = "",
    node_address: Annotated[str, typer.Option(envvar="ZRAY_NODE_ADDRESS", help="tcp://host:port other raylets reach this one on, for forwarded tasks and object transfer (port 0: any free port; host 0.0.0.0: this host's address on the route to the GCS, e.g. in a container). Empty: a single-node cluster.")] = "",
    metrics_port: Annotated[Optional[int], typer.Option(envvar="ZRAY_METRICS_PORT", help="Serve Prometheus metrics on this HTTP port (0: any free port; default: off).")] = None,
    log_level: Annotated[str, typer.Option(envvar="ZRAY_LOG_LEVEL")] = "INFO",
) -> None:
    """Run one raylet in the foreground until SIGTERM."""
    from zray.common.config import RayletSettings
    from zray.common.errors import ConfigError
    from zray.common.logs import configure_logging
    from zray.common.sockets import normalize
    from zray.services.raylet.server import Raylet

    try:
        custom = json.loads(resources)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--resources is not JSON: {exc}") from None
    settings = RayletSettings.load(
        gcs_address=normalize(gcs_address), num_cpus=num_cpus, num_gpus=num_gpus,
        resources=custom, object_store_memory=object_store_memory, session_dir=session_dir,
        spill_dir=spill_dir, store_full_timeout=store_full_timeout,
        store_dir=store_dir, local_address=local_address, node_name=node_name,
        address=reachable(normalize(node_address), gcs_address) if node_address else "",
        log_level=log_level, metrics_port=metrics_port)
    configure_logging("raylet", settings.log_level)
    Raylet(settings).run()


def reachable(node_address: str, gcs_address: str) -> str:
    """A wildcard host becomes this host's address on the route to the GCS, the
    one other raylets reach it by (a container knows its name, not its address)."""
    from zray.common.sockets import local_ip_towards, normalize

    if not node_address.startswith(("tcp://0.0.0.0:", "tcp://*:")):
        return node_address
    gcs = normalize(gcs_address)
    host = gcs.removeprefix("tcp://").rsplit(":", 1)[0] if gcs.startswith("tcp://") else "127.0.0.1"
    return f"tcp://{local_ip_towards(host)}:{node_address.rsplit(':', 1)[1]}"


@app.command()
def check(
    address: Annotated[str, typer.Argument(envvar="ZRAY_LOCAL_ADDRESS", help="The raylet's local ipc:// address (default: $ZRAY_LOCAL_ADDRESS).")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 2.0,
) -> None:
    """Exit 0 if the raylet at ADDRESS answers, 1 otherwise."""
    from zray.common.errors import ZrayError
    from zray.common.messages.raylet import RAYLET_TO_CLIENT, NodeStatsReply, NodeStatsRequest
    from zray.common.probe import ask

    try:
        reply = ask(address, NodeStatsRequest(req_id=1), NodeStatsReply, RAYLET_TO_CLIENT, timeout,
                    "raylet")
    except ZrayError as exc:
        typer.echo(f"unhealthy: {exc}", err=True)
        sys.exit(1)
    stats = reply.stats
    typer.echo(f"ok: raylet of node {stats.get('node_name')} ({str(stats.get('node_id'))[:12]}), "
               f"{stats.get('workers')} worker(s)")
