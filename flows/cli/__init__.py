"""The ``goldstream`` command line: the one entry point for users.

Each command group lives in its own module of this package. The core groups are registered here by
name; any other module of the package that defines ``register(app: typer.Typer) -> None`` adds its
commands itself (so a new command group is one new file).
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

from flows.cli import connectors, demo, mappings, run, stack

_CORE = {"common", "connectors", "demo", "mappings", "run", "stack", "__main__"}

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


def _register_plugins() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name in _CORE:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(app)


_register_plugins()


def main() -> None:
    """Console-script entry point."""
    app()
