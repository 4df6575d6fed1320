"""The ``goldstream`` command line: the one entry point for users.

Each command group lives in its own module of this package and is listed in :data:`COMMANDS` with
its one-line help. A module is imported only when one of its commands runs (or its own ``--help``
is asked for): the modules pull in the mapping engine, the resolver, Delta and Kafka clients, and
importing all of them cost ~3 s before any command, ``goldstream --help`` included.

A module exposes its commands either as ``app`` (a :class:`typer.Typer` group, registered under
the listed name) or through ``register(root: typer.Typer) -> None`` (commands and groups it adds
itself); adding a command group is one new module and one :data:`COMMANDS` line.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer
from typer._click.core import Command, Context  # typer 0.29 carries its own click
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """Where a top-level command comes from: ``module``, and its help in ``goldstream --help``."""

    module: str
    help: str


#: Top-level commands, in the order ``goldstream --help`` lists them.
COMMANDS: dict[str, LazyCommand] = {
    "stack": LazyCommand("stack", "The local stack: PostgreSQL, Kafka (KRaft), Connect + Debezium."),
    "connectors": LazyCommand("connectors", "Debezium connector configs <-> Kafka Connect."),
    "demo": LazyCommand("demo", "Demo source systems: seed and load generation."),
    "mappings": LazyCommand("mappings", "Canonical mappings: validate, write the mapping doc."),
    "run": LazyCommand(
        "run", "Run a dataflow until interrupted (Ctrl-C stops it; a restart resumes from recovery)."
    ),
    "maintain": LazyCommand(
        "maintain", "Compact, checkpoint and vacuum the Delta tables (bronze, silver, gold, quarantine)."
    ),
    "dlq": LazyCommand("dlq", "Quarantined messages: list them, replay them after a fix."),
    "match": LazyCommand("match", "Entity matching: train the model from silver."),
    "explain": LazyCommand(
        "match", "Why a golden record looks as it does: values with provenance, members, links, lineage."
    ),
    "sync": LazyCommand("sync", "Golden records -> CRM/ERP: dry-run plan, replay the retry ledger."),
}


def load_command(name: str) -> Command:
    """The real click command of a top-level ``name`` (imports its module)."""
    entry = COMMANDS[name]
    module: Any = importlib.import_module(f"{__name__}.{entry.module}")
    holder = typer.Typer()
    holder.callback()(lambda: None)  # a callback makes typer build a group even for one command
    register = getattr(module, "register", None)
    if callable(register):
        register(holder)
    elif hasattr(module, "app"):
        holder.add_typer(module.app, name=name, help=entry.help)
    else:
        holder.command(name)(getattr(module, name))
    group = typer.main.get_command(holder)
    command: Command | None = getattr(group, "commands", {}).get(name)
    if command is None:
        raise RuntimeError(f"{entry.module} does not define the command {name!r}")
    return command


class LazyGroup(TyperGroup):
    """The root group: lists :data:`COMMANDS` from their static help, imports one when it runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: dict[str, Command] = {}

    def list_commands(self, ctx: Context) -> list[str]:
        """Every top-level command, in :data:`COMMANDS` order."""
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        """The loaded command, else a stand-in carrying its help (None for an unknown name)."""
        if cmd_name in self._loaded:
            return self._loaded[cmd_name]
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        # For listing only (help, completion of the name): the real one is loaded by
        # resolve_command, when the command (or its own --help) is what the user asked for.
        return TyperCommand(cmd_name, help=entry.help, short_help=entry.help)

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        """Import the command the arguments name before click looks it up."""
        name = args[0] if args else None
        if name in COMMANDS and name not in self._loaded:
            self._loaded[name] = load_command(name)
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="goldstream",
    cls=LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """CDC streaming: Debezium -> Kafka -> Bytewax -> Delta Lake golden records."""


def main() -> None:
    """Console-script entry point."""
    app()
