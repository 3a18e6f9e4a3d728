"""The `zray` command: services in the foreground, and start/stop/status of a cluster."""

from __future__ import annotations

import typer

from zray.cli import cluster, observe
from zray.services.gcs.cli import app as gcs_app
from zray.services.global_sched.cli import app as sched_app
from zray.services.raylet.cli import app as raylet_app

app = typer.Typer(help="zray: distributed computing for Python.", no_args_is_help=True)
app.add_typer(gcs_app, name="gcs")
app.add_typer(sched_app, name="global-sched")
app.add_typer(raylet_app, name="raylet")
cluster.register(app)
observe.register(app)


def main() -> None:
    app()
