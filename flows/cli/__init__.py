"""The ``goldstream`` command line: the one entry point for users.

Each command group lives in its own module and is registered here.
"""

from __future__ import annotations

import typer

from flows.cli import connectors, demo, mappings, run, stack

app = typer.Typer(
    name="goldstream",
    help="CDC streaming: Debezium -> Kafka -> Bytewax -> Delta Lake golden records.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(stack.app, name="stack", help="The local stack: PostgreSQL, Kafka (KRaft), Connect + Debezium.")
app.add_typer(connectors.app, name="connectors", help="Debezium connector configs <-> Kafka Connect.")
app.add_typer(demo.app, name="demo", help="Demo source systems: seed and load generation.")
app.add_typer(mappings.app, name="mappings", help="Canonical mappings: validate, write the mapping doc.")
app.command("run")(run.run)


def main() -> None:
    """Console-script entry point."""
    app()
