"""``goldstream dlq list|replay``: inspect quarantined messages and re-drive them after a fix."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from flows.cli.common import friendly_errors, settings
from flows.dlq_replay import KafkaPublisher, plan_replay, replay
from sinks.delta.quarantine import QuarantineFilter, quarantine_path, read_quarantine

app = typer.Typer(no_args_is_help=True)
out = Console()

Stages = Annotated[
    list[str] | None, typer.Option("--stage", "-s", help="Only this stage (decode, mapping, ...).")
]
Reasons = Annotated[
    list[str] | None, typer.Option("--reason", "-r", help="Only this reason (malformed_json, ...).")
]
Topics = Annotated[
    list[str] | None, typer.Option("--topic", "-t", help="Only messages from this source topic.")
]
Root = Annotated[
    Path | None,
    typer.Option("--delta-root", help="Read the quarantine table here instead of settings.delta_root."),
]

_PREVIEW = 60


def _filter(
    stage: list[str] | None, reason: list[str] | None, topic: list[str] | None, *, replayed: bool
) -> QuarantineFilter:
    return QuarantineFilter(
        tuple(stage or ()), tuple(reason or ()), tuple(topic or ()), include_replayed=replayed
    )


def _root(root: Path | None) -> Path:
    return root if root is not None else settings().delta_root


def _one_line(text: str | None) -> str:
    if text is None:
        return "(null: tombstone)"
    flat = " ".join(text.split())
    return flat if len(flat) <= _PREVIEW else flat[: _PREVIEW - 1] + "…"


@app.command("list")
@friendly_errors
def list_command(
    stage: Stages = None,
    reason: Reasons = None,
    topic: Topics = None,
    include_replayed: Annotated[
        bool, typer.Option("--all", "-a", help="Also rows already replayed.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="Rows to show (0: all).")] = 50,
    root: Root = None,
) -> None:
    """Show quarantined messages: stage, reason, source position, a preview of the value."""
    delta_root = _root(root)
    columns = [
        "stage",
        "reason",
        "detail",
        "topic",
        "partition",
        "offset",
        "quarantined_at",
        "replayed",
        "value_preview",
    ]
    rows = read_quarantine(
        delta_root, _filter(stage, reason, topic, replayed=include_replayed), columns=columns
    )
    if rows.height == 0:
        out.print(f"no quarantined messages match under {quarantine_path(delta_root)}")
        return
    counts = Table("stage", "reason", "topic", "rows", title="quarantined messages")
    for st, rs, tp, n in (
        rows.group_by("stage", "reason", "topic").len().sort("stage", "reason", "topic").iter_rows()
    ):
        counts.add_row(st, rs, tp, str(n))
    out.print(counts)
    shown = rows if limit == 0 else rows.head(limit)
    detail = Table("stage", "reason", "position", "quarantined at", "replayed", "detail / value")
    for r in shown.iter_rows(named=True):
        detail.add_row(
            r["stage"],
            r["reason"],
            f"{r['topic']}[{r['partition']}]@{r['offset']}",
            r["quarantined_at"].strftime("%Y-%m-%d %H:%M:%S"),
            "yes" if r["replayed"] else "no",
            f"{_one_line(r['detail'])}\n[dim]{_one_line(r['value_preview'])}[/dim]",
        )
    out.print(detail)
    if shown.height < rows.height:
        out.print(f"{shown.height} of {rows.height} rows shown (--limit 0 shows all)")


@app.command("replay")
@friendly_errors
def replay_command(
    stage: Stages = None,
    reason: Reasons = None,
    topic: Topics = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be re-sent; send nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    root: Root = None,
) -> None:
    """Re-publish quarantined messages (original key and value) to their source topic, then mark them
    replayed; the dataflow processes them again. Already-replayed rows are never sent again."""
    s = settings()  # the Kafka bootstrap, and the delta root unless given
    delta_root = root if root is not None else s.delta_root
    plan = plan_replay(delta_root, _filter(stage, reason, topic, replayed=False))
    if plan.unsendable.height:
        out.print(
            f"[yellow]{plan.unsendable.height} row(s) have neither key nor value: nothing to re-send[/yellow]"
        )
    if not plan.messages:
        out.print("nothing to replay: no un-replayed quarantined messages match")
        return
    counts = Table("stage", "reason", "topic", "rows", title="to replay" + (" (dry run)" if dry_run else ""))
    for st, rs, tp, n in plan.counts().iter_rows():
        counts.add_row(st, rs, tp, str(n))
    out.print(counts)
    topics = plan.rows["topic"].n_unique()
    what = f"{len(plan.messages)} message(s) ({plan.rows.height} quarantine row(s)) to {topics} topic(s)"
    if dry_run:
        out.print(f"dry run: would re-publish {what}")
        return
    if not yes and not typer.confirm(f"Re-publish {what}?"):
        raise typer.Exit(1)
    publisher = KafkaPublisher(s.kafka.bootstrap_servers)
    try:
        with Progress(
            TextColumn("re-publishing"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            console=Console(stderr=True),
            transient=True,
        ) as progress:
            task = progress.add_task("replay", total=len(plan.messages))
            report = replay(delta_root, plan, publisher, on_batch=lambda n: progress.advance(task, n))
    finally:
        publisher.close()
    out.print(
        f"[green]re-published {report.sent} message(s)[/green],"
        f" marked {report.marked} quarantine row(s) replayed"
    )


def register(root: typer.Typer) -> None:
    """Add ``goldstream dlq``."""
    root.add_typer(app, name="dlq", help="Quarantined messages: list them, replay them after a fix.")
