"""`zray global-sched ...`: run a global scheduler replica in the foreground."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

app = typer.Typer(help="Global scheduler: places tasks that raylets spill over.", no_args_is_help=True)



@app.callback()
def _group() -> None:
    """Subcommands run in the foreground, for supervisors and containers."""


@app.command()
def start(
    gcs_address: Annotated[str, typer.Option(envvar="ZRAY_GCS_ADDRESS", help="GCS shard 0, host:port or ipc://path.")],
    address: Annotated[str, typer.Option(envvar="ZRAY_SCHED_ADDRESS", help="Bind address (tcp://host:port, port 0 picks one; or ipc://path).")] = "tcp://127.0.0.1:0",
    advertise_host: Annotated[str, typer.Option(envvar="ZRAY_SCHED_ADVERTISE_HOST", help="Host name raylets reach this replica by, when --address binds a wildcard such as 0.0.0.0 (default: the bound host).")] = "",
    metrics_port: Annotated[Optional[int], typer.Option(envvar="ZRAY_SCHED_METRICS_PORT", help="Serve Prometheus metrics on this HTTP port (0: any free port; default: off).")] = None,
    log_level: Annotated[str, typer.Option(envvar="ZRAY_LOG_LEVEL")] = "INFO",
) -> None:
    """Run one global scheduler replica in the foreground until SIGTERM."""
    from zray.common.config import SchedSettings
    from zray.common.logs import configure_logging
    from zray.common.sockets import normalize
    from zray.services.global_sched.server import GlobalScheduler
    from zray.services.metrics import serve_sched

    settings = SchedSettings.load(env_prefix="ZRAY_SCHED_", gcs_address=normalize(gcs_address), address=address,
                                  advertise_host=advertise_host, log_level=log_level, metrics_port=metrics_port)
    configure_logging("global-sched", settings.log_level)
    sched = GlobalScheduler(settings)
    serve_sched(sched)
    sched.run()


@app.command()
def check(
    address: Annotated[str, typer.Argument(help="Replica address, host:port or ipc://path.")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 2.0,
) -> None:
    """Exit 0 if the global scheduler at ADDRESS answers a ping, 1 otherwise."""
    from zray.common.errors import ZrayError
    from zray.common.messages.sched import SCHED_REPLIES, SchedPing, SchedPong
    from zray.common.probe import ask
    from zray.common.sockets import normalize

    try:
        reply = ask(normalize(address), SchedPing(req_id=1), SchedPong, SCHED_REPLIES, timeout,
                    "global scheduler")
    except ZrayError as exc:
        typer.echo(f"unhealthy: {exc}", err=True)
        sys.exit(1)
    typer.echo(f"ok: global scheduler at {address}, {reply.nodes} node(s) heartbeating")
