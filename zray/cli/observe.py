"""`zray list`, `zray summary`, `zray logs`, `zray timeline`: what a cluster is doing."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Annotated, Any, NoReturn, Optional

import typer

from zray.common.errors import ZrayError

KINDS = ("nodes", "tasks", "actors", "objects", "workers")
ADDRESS_HELP = "GCS host:port (default: the cluster `zray start` runs here)."
FOLLOW_POLL = 0.2


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(1)


def _parse_filter(text: str) -> tuple[str, str, str]:
    for op in ("!=", "="):
        key, sep, value = text.partition(op)
        if sep and key:
            return key.strip(), op, value.strip()
    raise typer.BadParameter(f"expected KEY=VALUE or KEY!=VALUE, got {text!r}", param_hint="--filter")


def list_cmd(
    kind: Annotated[str, typer.Argument(help="nodes, tasks, actors, objects or workers.")],
    state: Annotated[Optional[str], typer.Option(help="Only rows in this state (e.g. RUNNING, PENDING_RESOURCES, ALIVE).")] = None,
    filter_: Annotated[Optional[list[str]], typer.Option("--filter", help="KEY=VALUE or KEY!=VALUE on a row field; repeatable.")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many rows (the newest).")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable rows.")] = False,
    address: Annotated[Optional[str], typer.Option(help=ADDRESS_HELP)] = None,
) -> None:
    """List the cluster's nodes, tasks, actors, objects or workers."""
    from zray.cli.observe_view import format_list
    from zray.util import state as api

    if kind not in KINDS:
        _fail(f"cannot list {kind!r}; choose one of {', '.join(KINDS)}")
    if limit < 0:
        _fail(f"--limit must be >= 0, got {limit}")
    filters = [_parse_filter(f) for f in filter_ or []]
    fetch: Any = {"nodes": api.list_nodes, "tasks": api.list_tasks, "actors": api.list_actors,
                  "objects": api.list_objects, "workers": api.list_workers}[kind]
    try:
        kwargs: dict[str, Any] = {"state": state} if kind != "objects" else {}
        if state is not None and kind == "objects":
            _fail("objects have no state to filter on")
        rows = fetch(address=address, filters=filters, limit=None, **kwargs)
    except ZrayError as exc:
        _fail(f"zray list {kind}: {exc}")
    shown = rows[-limit:] if limit else []
    if as_json:
        json.dump(shown, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        typer.echo(format_list(kind, shown, len(rows)))


def summary(
    what: Annotated[str, typer.Argument(help="What to summarize: tasks.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable counts.")] = False,
    address: Annotated[Optional[str], typer.Option(help=ADDRESS_HELP)] = None,
) -> None:
    """Task counts by function and state."""
    from zray.cli.observe_view import format_summary
    from zray.util.state import summarize_tasks

    if what != "tasks":
        _fail(f"cannot summarize {what!r}; only `zray summary tasks` exists")
    try:
        counts = summarize_tasks(address)
    except ZrayError as exc:
        _fail(f"zray summary tasks: {exc}")
    if as_json:
        json.dump(counts, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        typer.echo(format_summary(counts))


def logs(
    task: Annotated[Optional[str], typer.Option("--task", help="Print the log of the worker that ran this task (id prefix).")] = None,
    actor: Annotated[Optional[str], typer.Option("--actor", help="Print the log of this actor's worker.")] = None,
    worker: Annotated[Optional[str], typer.Option("--worker", help="Print this worker's log.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing what is appended.")] = False,
    tail: Annotated[int, typer.Option(help="Print only the last N lines (0: all).")] = 0,
    address: Annotated[Optional[str], typer.Option(help=ADDRESS_HELP)] = None,
) -> None:
    """List this host's log files, or print one worker's log."""
    from zray.cli.observe_view import format_logs
    from zray.util import state as api

    try:
        if not (task or actor or worker):
            if follow:
                _fail("--follow needs one of --task, --actor or --worker")
            typer.echo(format_logs(api.list_logs(address)))
            return
        path = api.log_path(address, task_id=task, actor_id=actor, worker_id=worker)
    except ZrayError as exc:
        _fail(f"zray logs: {exc}")
    _print_file(path, tail, follow)


def _print_file(path: str, tail: int, follow: bool) -> None:
    out = sys.stdout
    with open(path, errors="replace") as f:
        if tail > 0:
            out.write("".join(f.readlines()[-tail:]))
        else:
            out.write(f.read())
        out.flush()
        if not follow:
            return
        inode = os.fstat(f.fileno()).st_ino
        try:
            while True:
                chunk = f.read()
                if chunk:
                    out.write(chunk)
                    out.flush()
                    continue
                try:
                    rotated = os.stat(path).st_ino != inode
                except FileNotFoundError:
                    rotated = False
                if rotated:  # the worker rotated its log: go on in the new file
                    f.close()
                    f = open(path, errors="replace")  # noqa: SIM115
                    inode = os.fstat(f.fileno()).st_ino
                    continue
                time.sleep(FOLLOW_POLL)
        except KeyboardInterrupt:
            pass
        finally:
            f.close()


def timeline(
    output: Annotated[str, typer.Option("-o", "--output", help="File to write (Chrome Trace Event JSON).")] = "timeline.json",
    minutes: Annotated[float, typer.Option(help="Task runs of the last N minutes.")] = 10.0,
    address: Annotated[Optional[str], typer.Option(help=ADDRESS_HELP)] = None,
) -> None:
    """Write a trace of recent task runs, for chrome://tracing or https://ui.perfetto.dev."""
    from zray.util.state import timeline as build

    try:
        events = build(output, address, minutes)
    except ZrayError as exc:
        _fail(f"zray timeline: {exc}")
    except OSError as exc:
        _fail(f"zray timeline: cannot write {output}: {exc.strerror or exc}")
    slices = sum(1 for e in events if e["ph"] != "M")
    typer.echo(f"wrote {slices} task slices to {output}; open it in https://ui.perfetto.dev "
               "or chrome://tracing")


def register(app: typer.Typer) -> None:
    app.command("list")(list_cmd)
    app.command()(summary)
    app.command()(logs)
    app.command()(timeline)
