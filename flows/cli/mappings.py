"""``goldstream mappings ...``: validate the canonical mappings and write their documentation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from core.errors import ConfigError, TransientError
from core.settings import Settings
from flows.canonical import Mapping, MappingSet, compile_mappings, mapping_document
from flows.canonical.live import COLUMNS_SQL, REPLICA_IDENTITY_SQL, LiveColumn, compare
from flows.cli.common import friendly_errors, settings

app = typer.Typer(no_args_is_help=True)
out = Console()


def _live_problems(s: Settings, mappings: MappingSet) -> list[str]:
    import psycopg

    from cdc.pg import admin_dsn

    problems: list[str] = []
    by_db: dict[str, list[Mapping]] = {}
    for m in mappings:
        by_db.setdefault(m.database, []).append(m)
    for db, ms in sorted(by_db.items()):
        try:
            conn = psycopg.connect(admin_dsn(s, db), connect_timeout=5)
        except psycopg.OperationalError as exc:
            raise TransientError(f"cannot reach database {db!r}: {exc}") from exc
        with conn:
            for m in ms:
                rows = conn.execute(COLUMNS_SQL, (m.schema, m.table)).fetchall()
                ident = conn.execute(REPLICA_IDENTITY_SQL, (m.schema, m.table)).fetchone()
                columns = [LiveColumn(name, dtype, precision) for name, dtype, precision in rows]
                problems += compare(m, columns, None if ident is None else str(ident[0]))
    return problems


@app.command("check")
@friendly_errors
def check(
    live: Annotated[
        bool, typer.Option("--live", help="Also compare source columns with the live databases' catalogs.")
    ] = False,
) -> None:
    """Validate every mapping file (transforms, fields, hooks); with --live, against the databases too."""
    s = settings()
    mappings = compile_mappings(s.config_dir)
    table = Table("source table", "entity", "fields", "key", "version")
    for m in mappings:
        table.add_row(
            f"{m.system}.{m.source_table}", m.entity, str(len(m.fields)), ", ".join(m.key), m.version_tag
        )
    out.print(table)
    if live:
        problems = _live_problems(s, mappings)
        if problems:
            raise ConfigError("the mappings do not match the live databases:\n" + "\n".join(problems))
        out.print(f"[green]ok[/green] {len(mappings)} mapping(s) match the live databases")
    else:
        out.print(f"[green]ok[/green] {len(mappings)} mapping(s) valid")


@app.command("doc")
@friendly_errors
def doc(
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the Markdown here (default: stdout).")
    ] = None,
) -> None:
    """Write the mapping document (Markdown): per mapping, source, canonical field, rule, null handling."""
    s = settings()
    text = mapping_document(compile_mappings(s.config_dir))
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        out.print(f"wrote {output}")
