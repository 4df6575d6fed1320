"""``goldstream sync ...``: the propagation of golden records to the CRM and ERP APIs.

* ``sync plan``: a dry run -- what the propagation flow would send (reads the golden topic from the
  earliest offset, plans against what was pushed; no API is called); rows go to
  ``<delta_root>/sync/plan`` and a summary is printed;
* ``sync replay``: re-drive the retry ledger (terminal failures) after a fix.

The dataflow itself runs as ``goldstream run propagate`` (``python -m flows.propagate``).
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flows.cli.common import friendly_errors, settings
from flows.propagate.commands import plan_operations, replay_ledger

app = typer.Typer(no_args_is_help=True)
out = Console()

Targets = Annotated[list[str] | None, typer.Option("--target", "-t", help="target name (repeatable)")]


@app.command("plan")
@friendly_errors
def plan(
    target: Targets = None,
    show: Annotated[int, typer.Option(help="print at most this many operations")] = 20,
    write: Annotated[bool, typer.Option(help="write the rows to <delta_root>/sync/plan")] = True,
) -> None:
    """Dry run: the operations the propagation flow would send now, without calling the APIs."""
    rows = plan_operations(settings(), targets=target, write=write)
    counts = Counter((r.target, r.operation) for r in rows)
    summary = Table("target", "operation", "count")
    for (t, o), n in sorted(counts.items()):
        summary.add_row(t, o, str(n))
    out.print(summary)
    if show:
        detail = Table("target", "golden id", "version", "operation", "fields", "note")
        for r in rows[:show]:
            detail.add_row(
                r.target,
                r.golden_id,
                str(r.version),
                r.operation,
                ",".join(r.fields),
                r.reason or (r.other or ""),
            )
        out.print(detail)


@app.command("replay")
@friendly_errors
def replay(target: Targets = None) -> None:
    """Re-drive the retry ledger: terminal failures are planned and sent again."""
    results = replay_ledger(settings(), targets=target)
    if not results:
        out.print("the retry ledger has no open entries")
        return
    table = Table("target", "open", "resolved", "still failing", "undecodable")
    for r in results:
        table.add_row(r.target, str(r.entries), str(r.resolved), str(r.still_failing), str(r.undecodable))
    out.print(table)
    if any(r.still_failing for r in results):
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    """Add ``goldstream sync``."""
    root.add_typer(app, name="sync", help="Golden records -> CRM/ERP: dry-run plan, replay the retry ledger.")
