"""`goldstream stack ...` commands: the local PostgreSQL + Kafka + Kafka Connect/Debezium stack."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cdc import stack
from core.errors import GoldstreamError
from core.settings import Settings, load_settings

app = typer.Typer(no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


def _echo(line: str) -> None:
    # Plain text: log lines and paths may contain [brackets] that rich would read as markup.
    console.print(line, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn goldstream errors into a red message and exit code 1 instead of a traceback."""
    try:
        yield
    except GoldstreamError as exc:
        err_console.print(f"[bold red]error:[/] {type(exc).__name__}", highlight=False)
        err_console.print(str(exc), markup=False, highlight=False)
        raise typer.Exit(1) from exc


def _settings() -> Settings:
    with _errors():
        settings = load_settings()
        stack.load_secrets(settings)
    return settings


@app.callback()
def _root() -> None:
    """Run the local stack: PostgreSQL 15, Kafka (KRaft) and Kafka Connect with Debezium. No Docker."""
    # Every stack command starts from the same environment: the generated CDC password (if any)
    # from <state>/secrets.env, so a Connect worker started here can resolve ${env:...}.
    _settings()


def _run(action: Callable[[Settings], object]) -> None:
    settings = _settings()
    with _errors():
        action(settings)


@app.command()
def fetch(
    force: bool = typer.Option(False, "--force", help="Download again even if the stamps match the pom."),
) -> None:
    """Download the Kafka/Connect jars and the Debezium PostgreSQL plugin (Maven Central)."""
    _run(lambda s: stack.fetch(s, echo=_echo, force=force))


@app.command()
def up() -> None:
    """Start PostgreSQL, the Kafka broker and Kafka Connect (fetches first if needed). Idempotent."""
    _run(lambda s: stack.up(s, echo=_echo))


@app.command()
def down(
    purge: bool = typer.Option(
        False, "--purge", help="Also delete everything in the state folder (data, logs, jars, secrets)."
    ),
) -> None:
    """Stop Kafka Connect, the broker and PostgreSQL. Idempotent."""
    _run(lambda s: stack.down(s, purge=purge, echo=_echo))


@app.command()
def status() -> None:
    """Show each component; exit code 1 if any is down."""
    settings = _settings()
    with _errors():
        rows = stack.status(settings)
    table = Table(title="goldstream local stack")
    for column in ("component", "state", "pid", "address", "log", "detail"):
        table.add_column(column, overflow="fold")
    for row in rows:
        state = "[green]up[/]" if row.up else "[red]down[/]"
        table.add_row(
            row.component, state, str(row.pid or "-"), row.address, Text(str(row.log)), Text(row.detail)
        )
    console.print(table)
    if not all(row.up for row in rows):
        raise typer.Exit(1)
