"""``goldstream maintain``: compact, checkpoint and vacuum every Delta table under the delta root.

The writers maintain their own tables after enough commits (``MaintenancePolicy``); this command is
for the rest: a table whose writer stopped, a catch-up after an outage, or a scheduled run. It visits
the bronze tables (one per source table), the silver tables (one per entity), the gold tables that
exist and the quarantine table, one after the other, and prints what each run did.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.errors import ConfigError, TerminalError, TransientError
from flows.cli.common import friendly_errors, settings
from sinks.delta.maintenance import LAYERS, MaintenanceReport, TableRef, find_tables, maintain

out = Console()


def select_tables(
    tables: list[TableRef], *, layers: list[str] | None = None, patterns: list[str] | None = None
) -> list[TableRef]:
    """The tables of the given layers whose name matches one of ``patterns``.

    A pattern is a shell glob on the table's name (``silver/*``, ``bronze/shop/*``), or a plain word
    that matches a name containing it (``customers``).
    """
    chosen = [t for t in tables if not layers or t.layer in layers]
    if patterns:
        chosen = [
            t
            for t in chosen
            if any(
                fnmatch.fnmatchcase(t.name, p) if any(c in p for c in "*?[") else p in t.name
                for p in patterns
            )
        ]
    return chosen


def _row(ref: TableRef, report: MaintenanceReport) -> list[str]:
    removed = report.compaction.get("numFilesRemoved")
    added = report.compaction.get("numFilesAdded")
    return [
        ref.name,
        f"{report.files_before} -> {report.files_after}",
        f"{removed} -> {added}" if removed is not None else "-",
        "-" if report.checkpoint_version is None else f"v{report.checkpoint_version}",
        str(report.vacuumed_files),
        f"{report.seconds:.2f}",
        "[green]ok[/green]",
    ]


def maintain_command(
    layer: Annotated[
        list[str] | None,
        typer.Option("--layer", "-l", help=f"Only this layer ({', '.join(LAYERS)}, other); repeatable."),
    ] = None,
    table: Annotated[
        list[str] | None,
        typer.Option(
            "--table",
            "-t",
            help="Only tables whose name matches (glob like 'silver/*', or a word); repeatable.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Change nothing: list the tables and count what vacuum would delete."),
    ] = False,
    compact: Annotated[bool, typer.Option("--compact/--no-compact", help="Compact small files.")] = True,
    vacuum: Annotated[
        bool, typer.Option("--vacuum/--no-vacuum", help="Delete files no version needs.")
    ] = True,
    root: Annotated[
        Path | None,
        typer.Option("--delta-root", help="Maintain the tables here instead of settings.delta_root."),
    ] = None,
) -> None:
    """Compact, checkpoint and vacuum the Delta tables (bronze, silver, gold, quarantine).

    Vacuum keeps what the table's ``delta.deletedFileRetentionDuration`` says readers may need.
    """
    unknown = sorted(set(layer or []) - {*LAYERS, "other"})
    if unknown:
        raise ConfigError(f"unknown layer(s) {unknown}: choose from {', '.join((*LAYERS, 'other'))}")
    delta_root = root if root is not None else settings().delta_root
    found = find_tables(delta_root)
    tables = select_tables(found, layers=layer, patterns=table)
    if not tables:
        what = (
            "no Delta tables" if not found else f"none of the {len(found)} Delta tables matches the filters"
        )
        out.print(f"{what} under {delta_root}")
        return
    summary = Table(title=f"maintain {delta_root}{' (dry run: nothing changed)' if dry_run else ''}")
    summary.add_column("table", overflow="fold")  # long names wrap; the numbers stay whole
    summary.add_column("files", no_wrap=True)
    summary.add_column("compacted", no_wrap=True)
    summary.add_column("checkpoint", no_wrap=True)
    summary.add_column("would vacuum" if dry_run else "vacuumed", justify="right", no_wrap=True)
    summary.add_column("s", justify="right", no_wrap=True)
    summary.add_column("status", no_wrap=True)
    failures: list[str] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("maintaining", total=len(tables))
        for ref in tables:
            progress.update(task, description=f"maintaining {ref.name}")
            try:
                report = maintain(ref.path, compact=compact, vacuum=vacuum, dry_run=dry_run, layer=ref.layer)
            except (TransientError, TerminalError) as exc:
                failures.append(f"{ref.name}: {exc}")
                summary.add_row(ref.name, *["-"] * 5, "[red]failed[/red]")
            else:
                summary.add_row(*_row(ref, report))
            progress.advance(task)
    out.print(summary)
    if failures:
        # the others are done; a failed table is usually a concurrent commit: run again
        raise TransientError(f"{len(failures)} of {len(tables)} table(s) failed:\n" + "\n".join(failures))


def register(app: typer.Typer) -> None:
    """Add ``goldstream maintain``."""
    app.command("maintain")(friendly_errors(maintain_command))
