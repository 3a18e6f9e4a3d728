"""`zray gcs ...`: run or check GCS shards in the foreground."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

app = typer.Typer(help="GCS shards: LMDB-backed control state.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Subcommands run in the foreground, for supervisors and containers."""


@app.command()
def start(
    port: Annotated[int, typer.Option(envvar="ZRAY_GCS_PORT", help="TCP port of the request socket; its PUB socket uses port + 1. Run as a group, shard i uses port + 2i.")] = 6379,
    host: Annotated[str, typer.Option(envvar="ZRAY_GCS_HOST", help="Interface to bind.")] = "127.0.0.1",
    address: Annotated[Optional[str], typer.Option(envvar="ZRAY_GCS_ADDRESS", help="Full bind address (tcp:// or ipc://); overrides --host/--port.")] = None,
    advertise_host: Annotated[Optional[str], typer.Option(envvar="ZRAY_GCS_ADVERTISE_HOST", help="Host name others reach this shard by (default: the bound host).")] = None,
    data_dir: Annotated[str, typer.Option(envvar="ZRAY_GCS_DATA_DIR", help="Folder of the LMDB files (kept across restarts).")] = "",
    shards: Annotated[int, typer.Option(envvar="ZRAY_GCS_SHARDS", min=1, help="Number of shards in the GCS.")] = 1,
    shard_index: Annotated[Optional[int], typer.Option(envvar="ZRAY_GCS_SHARD_INDEX", help="Run only this shard (others run elsewhere); default: run all --shards here, each its own process.")] = None,
    head_address: Annotated[Optional[str], typer.Option(envvar="ZRAY_GCS_HEAD_ADDRESS", help="Shard 0's address, where a shard > 0 registers (host:port).")] = None,
    fsync: Annotated[bool, typer.Option("--fsync", envvar="ZRAY_GCS_FSYNC", help="Flush every group commit to disk (survives power loss, not just a killed process).")] = False,
    metrics_port: Annotated[Optional[int], typer.Option(envvar="ZRAY_GCS_METRICS_PORT", help="Serve Prometheus metrics on this HTTP port (0: any free port; a group's shard i on port + i; default: off).")] = None,
    log_level: Annotated[str, typer.Option(envvar="ZRAY_LOG_LEVEL")] = "INFO",
) -> None:
    """Run GCS shards in the foreground until SIGTERM."""
    from zray.common.sockets import normalize
    from zray.services.gcs.group import run_group, run_shard

    base = normalize(address) if address else f"tcp://{host}:{port}"
    advertise = None
    if advertise_host:
        advertise = f"tcp://{advertise_host}:{base.rsplit(':', 1)[1]}"
    if shard_index is not None:
        if not 0 <= shard_index < shards:
            raise typer.BadParameter(f"{shard_index} is outside 0..{shards - 1}", param_hint="--shard-index")
        if shard_index > 0 and not head_address:
            raise typer.BadParameter("a shard other than 0 needs --head-address (shard 0's host:port)",
                                     param_hint="--head-address")
        run_shard(base, shard_index, shards, data_dir, normalize(head_address) if head_address else "",
                  advertise, fsync, log_level, metrics_port)
        return
    run_group(base, shards, data_dir, advertise, fsync, log_level, metrics_port)


@app.command()
def check(
    address: Annotated[str, typer.Argument(help="GCS address, host:port or ipc://path.")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 2.0,
) -> None:
    """Exit 0 if the shard at ADDRESS answers a ping (shard 0: and every shard of
    its map), 1 otherwise."""
    from zray.common.errors import ZrayError
    from zray.services.gcs.client import GcsClient

    try:
        client = GcsClient(address, timeout=timeout)
    except ZrayError as exc:  # e.g. no cluster token for a tcp:// address
        typer.echo(f"unhealthy: {exc}", err=True)
        sys.exit(1)
    try:
        pongs = [client.ping()]
        if pongs[0].shard_index == 0:  # only shard 0 serves the shard map
            pongs += [client.ping(shard=i) for i in range(1, client.num_shards)]
    except ZrayError as exc:
        typer.echo(f"unhealthy: {exc}", err=True)
        sys.exit(1)
    finally:
        client.close()
    for pong in pongs:
        typer.echo(f"ok: shard {pong.shard_index}/{pong.num_shards}, seq {pong.seq}")
