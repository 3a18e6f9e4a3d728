"""`zray global-sched ...`: run a global scheduler replica in the foreground."""

from __future__ import annotations

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
                                  log_level=log_level, metrics_port=metrics_port)
    configure_logging("global-sched", settings.log_level)
    sched = GlobalScheduler(settings)
    serve_sched(sched)
    sched.run()
