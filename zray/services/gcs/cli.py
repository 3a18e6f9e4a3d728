"""`zray gcs ...`: run or check a GCS shard in the foreground."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

app = typer.Typer(help="GCS shard: LMDB-backed control state.", no_args_is_help=True)



@app.callback()
def _group() -> None:
    """Subcommands run in the foreground, for supervisors and containers."""


@app.command()
def start(
    port: Annotated[int, typer.Option(envvar="ZRAY_GCS_PORT", help="TCP port of the request socket; the PUB socket uses port + 1.")] = 6379,
    host: Annotated[str, typer.Option(envvar="ZRAY_GCS_HOST", help="Interface to bind.")] = "127.0.0.1",
    address: Annotated[Optional[str], typer.Option(envvar="ZRAY_GCS_ADDRESS", help="Full bind address (tcp:// or ipc://); overrides --host/--port.")] = None,
    data_dir: Annotated[str, typer.Option(envvar="ZRAY_GCS_DATA_DIR", help="Folder of the LMDB files (kept across restarts).")] = "",
    shard_index: Annotated[int, typer.Option(envvar="ZRAY_GCS_SHARD_INDEX", help="Index of this shard.")] = 0,
    metrics_port: Annotated[Optional[int], typer.Option(envvar="ZRAY_GCS_METRICS_PORT", help="Serve Prometheus metrics on this HTTP port (0: any free port; default: off).")] = None,
    log_level: Annotated[str, typer.Option(envvar="ZRAY_LOG_LEVEL")] = "INFO",
) -> None:
    """Run one GCS shard in the foreground until SIGTERM."""
    from zray.common.config import GcsSettings
    from zray.common.logs import configure_logging
    from zray.services.gcs.server import GcsShard
    from zray.services.metrics import serve_gcs

    settings = GcsSettings.load(address=address or f"tcp://{host}:{port}", data_dir=data_dir,
                                shard_index=shard_index, log_level=log_level, metrics_port=metrics_port)
    configure_logging(f"gcs[{shard_index}]", settings.log_level)
    shard = GcsShard(settings)
    serve_gcs(shard)
    shard.run()


@app.command()
def check(
    address: Annotated[str, typer.Argument(help="GCS address, host:port or ipc://path.")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 2.0,
) -> None:
    """Exit 0 if the GCS shard answers a ping, 1 otherwise."""
    from zray.common.errors import ZrayError
    from zray.services.gcs.client import GcsClient

    client = GcsClient(address, timeout=timeout)
    try:
        pong = client.ping()
    except ZrayError as exc:
        typer.echo(f"unhealthy: {exc}", err=True)
        sys.exit(1)
    finally:
        client.close()
    typer.echo(f"ok: shard {pong.shard_index}/{pong.num_shards}, seq {pong.seq}")
