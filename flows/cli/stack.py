"""`goldstream stack ...` commands: the local PostgreSQL + Kafka + Kafka Connect/Debezium stack,
plus the demo CRM and ERP HTTP APIs.

Exit codes follow :func:`flows.cli.common.friendly_errors` (2 config, 3 terminal, 4 transient);
``status`` exits 1 when a component is down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cdc import stack
from flows.cli.common import friendly_errors, settings

app = typer.Typer(no_args_is_help=True)
out = Console()


def _echo(line: str) -> None:
    # Plain text, never wrapped: log lines and paths may contain [brackets] rich would read as markup.
    out.print(line, markup=False, highlight=False, soft_wrap=True)


@app.callback()
@friendly_errors
def _root() -> None:
    """Run the local stack: PostgreSQL 15, Kafka (KRaft), Kafka Connect with Debezium, demo CRM/ERP APIs."""
    # Every stack command starts from the same environment: settings.settings() loads the generated
    # CDC password from <state>/secrets.env, so a Connect worker started here inherits it.
    settings()


@app.command()
@friendly_errors
def fetch(
    force: Annotated[bool, typer.Option("--force", help="Download again even if the stamps match.")] = False,
) -> None:
    """Download the Kafka/Connect jars and the Debezium PostgreSQL plugin (Maven Central)."""
    stack.fetch(settings(), echo=_echo, force=force)


@app.command()
@friendly_errors
def up() -> None:
    """Start PostgreSQL, the broker, Kafka Connect, the demo CRM/ERP APIs (fetches if needed). Idempotent."""
    stack.up(settings(), echo=_echo)


@app.command()
@friendly_errors
def down(
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete everything in the state folder (data, logs, jars).")
    ] = False,
) -> None:
    """Stop the demo APIs, Kafka Connect, the broker and PostgreSQL. Idempotent."""
    stack.down(settings(), purge=purge, echo=_echo)


def _short(path: Path) -> str:
    # Paths under the working directory are shown relative: the table stays readable at 80 columns.
    try:
        return os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


@app.command()
@friendly_errors
def status() -> None:
    """Show each component; exit code 1 if any is down."""
    rows = stack.status(settings())
    table = Table(title="goldstream local stack")
    table.add_column("component", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("pid", no_wrap=True, justify="right")
    table.add_column("address", no_wrap=True)
    table.add_column("log", overflow="fold")
    table.add_column("detail", overflow="fold")
    for row in rows:
        state = Text("up", style="green") if row.up else Text("down", style="bold red")
        table.add_row(
            row.component, state, str(row.pid or "-"), row.address, Text(_short(row.log)), Text(row.detail)
        )
    out.print(table)
    if not all(row.up for row in rows):
        raise typer.Exit(1)
