"""``goldstream match train`` and ``goldstream explain``: the matching model and why a golden record
looks the way it does.

* ``match train`` estimates the Fellegi-Sunter parameters of an entity's matching config
  (``config/matching/<entity>.yaml``: m, u, the prior, term frequencies) from the current,
  non-deleted records of its silver table, prints the weights and writes the config back.
* ``explain <golden_id>`` reads the gold tables and prints the golden record's values with where
  each came from (source, record, survivorship rule, support), its member records, the scored links
  inside the cluster with their per-comparison breakdown, and the MERGED/SPLIT events naming it.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.errors import TerminalError
from core.settings import Settings
from flows.cli.common import friendly_errors, settings
from flows.resolve import (
    MatchingConfig,
    format_weights,
    load_matching_config,
    train_with_report,
    write_matching_config,
)
from flows.resolve.config import Comparison
from sinks.delta.gold import RESERVED, read_crosswalk, read_golden, read_lineage, read_links
from sinks.delta.silver import read_current, silver_path

app = typer.Typer(no_args_is_help=True)
out = Console()

#: The trainer needs two records to form a pair at all; fewer than this many gives rough estimates.
MIN_RECORDS = 2
FEW_RECORDS = 1000

Entity = Annotated[str, typer.Option("--entity", "-e", help="The canonical entity type.")]


def matching_config_path(s: Settings, entity: str) -> Path:
    """``<config_dir>/matching/<entity>.yaml``."""
    return s.config_dir / "matching" / f"{entity}.yaml"


def training_records(delta_root: Path, entity: str, *, max_records: int | None, seed: int) -> pl.DataFrame:
    """The current, non-deleted silver records of ``entity`` (a seeded sample of ``max_records``).

    Raises :class:`TerminalError` when there is no silver table or it holds too few records.
    """
    path = silver_path(delta_root, entity)
    if not (path / "_delta_log").is_dir():
        raise TerminalError(
            f"no silver table for {entity!r} at {path}: run the ingestion flow first (`goldstream run`)"
        )
    records = read_current(path)
    if max_records is not None and records.height > max_records:
        # seeded, so the same silver state and options give the same parameters
        records = records.sample(n=max_records, seed=seed).sort("source_system", "source_table", "source_key")
    if records.height < MIN_RECORDS:
        raise TerminalError(
            f"silver table {path} has {records.height} current record(s); training needs at least "
            f"{MIN_RECORDS} (and thousands for good estimates)"
        )
    return records


@app.command("train")
@friendly_errors
def train_command(
    entity: Entity = "customer",
    max_records: Annotated[
        int | None,
        typer.Option("--max-records", min=1, help="Train on a seeded sample of this many records."),
    ] = None,
    write: Annotated[
        bool, typer.Option("--write/--no-write", help="Write the estimates back to the matching config.")
    ] = True,
) -> None:
    """Estimate m, u, the prior and term frequencies from the entity's silver records (EM, unsupervised)."""
    s = settings()
    path = matching_config_path(s, entity)
    config = load_matching_config(path)
    records = training_records(s.delta_root, entity, max_records=max_records, seed=config.training.seed)
    if records.height < FEW_RECORDS:
        out.print(f"[yellow]only {records.height} records: the estimates will be rough[/yellow]")
    trained, report = train_with_report(records, config)
    trained, kept = keep_unestimated(config, trained)
    if kept:
        out.print(
            f"[yellow]no evidence in the data for {', '.join(kept)} (every level came out with m = u): "
            "their configured m/u are kept[/yellow]"
        )
    out.print(
        f"trained on {report.records} records: {report.u_pairs} random pairs for u, "
        f"{report.candidate_pairs} candidate pairs, match share among candidates "
        f"{report.match_share_of_candidates:.4g}"
    )
    for features, pairs, comparisons in report.sessions:
        name = " + ".join(features) if features else "candidate pairs"
        out.print(f"  EM session {escape(name)}: {pairs} pairs, estimated {', '.join(comparisons)}")
    out.print(format_weights(trained), markup=False, highlight=False)
    if write:
        write_matching_config(trained, path, tf_file=config.term_frequencies.file)
        out.print(f"[green]wrote[/green] {path}")
    else:
        out.print(f"not written (--no-write); {path} is unchanged")


def _uninformative(comparison: Comparison) -> bool:
    """True when every non-null level has m = u: the data said nothing about this comparison
    (e.g. a field no record fills), so its weights are all zero."""
    levels = [lvl for lvl in comparison.levels if not lvl.is_null]
    return all(lvl.m is not None and lvl.u is not None and math.isclose(lvl.m, lvl.u) for lvl in levels)


def keep_unestimated(original: MatchingConfig, trained: MatchingConfig) -> tuple[MatchingConfig, list[str]]:
    """``trained`` with the original comparisons put back where training found no evidence.

    Writing the trainer's uniform m/u back would silently switch such a comparison off until data
    for it arrives; the configured values are the better guess. Returns the names put back.
    """
    before = {c.name: c for c in original.comparisons}
    kept: list[str] = []
    comparisons = []
    for comp in trained.comparisons:
        old = before.get(comp.name)
        if old is not None and _uninformative(comp) and not _uninformative(old):
            kept.append(comp.name)
            comparisons.append(old)
        else:
            comparisons.append(comp)
    if not kept:
        return trained, []
    return trained.model_copy(update={"comparisons": tuple(comparisons)}), kept


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return escape(str(value))


def _values_table(row: dict[str, Any], attributes: list[str]) -> Table:
    table = Table("field", "value", "source", "record", "rule", "group", "support", title="values")
    provenance = {p["field"]: p for p in row["provenance"] or []}
    for name in attributes:
        p = provenance.get(name)
        if row[name] is None and p is None:
            continue
        if p is None:
            table.add_row(name, _text(row[name]), "", "", "", "", "")
            continue
        table.add_row(
            name,
            _text(row[name]),
            _text(p["source"]),
            _text(p["record_id"]),
            _text(p["rule"]),
            _text(p["group"]),
            f"{p['support']:.2f}",
        )
    return table


def _members_table(members: list[str], crosswalk: pl.DataFrame) -> Table:
    table = Table("record", "source", "table", "key", "score", "since", title="members")
    entries = {r["record_id"]: r for r in crosswalk.iter_rows(named=True)}
    for rid in members:
        e = entries.get(rid)
        if e is None:  # the crosswalk lags or was not written: still name the member
            table.add_row(_text(rid), "", "", "", "", "")
            continue
        score = "" if e["score"] is None else f"{e['score']:.4f}"
        table.add_row(
            _text(rid),
            _text(e["source_system"]),
            _text(e["source_table"]),
            _text(e["source_key"]),
            score,
            _text(e["since"]),
        )
    return table


def _links_table(links: pl.DataFrame) -> Table:
    table = Table("a", "b", "weight", "probability", "comparisons", title="links")
    for link in links.iter_rows(named=True):
        parts = [f"{c['comparison']}={c['level']} ({c['weight']:+.2f})" for c in link["comparisons"] or []]
        table.add_row(
            _text(link["a"]),
            _text(link["b"]),
            f"{link['weight']:+.2f}",
            f"{link['probability']:.6f}",
            escape(", ".join(parts)),
        )
    return table


def _lineage_table(events: pl.DataFrame) -> Table:
    table = Table("at", "event", "golden id", "others", "cause", title="lineage")
    for e in events.iter_rows(named=True):
        cause = e["cause"]["record_id"] if e["cause"] else ""
        table.add_row(
            _text(e["at"]), e["kind"], _text(e["golden_id"]), _text(", ".join(e["others"])), _text(cause)
        )
    return table


def _golden_of_record(delta_root: Path, entity: str, record_id: str) -> str | None:
    """The golden id a source record belongs to (or last belonged to, if deleted), per the crosswalk."""
    rows = read_crosswalk(delta_root, entity).filter(pl.col("record_id") == record_id)
    if rows.height == 0 or rows["golden_id"][0] is None:
        return None
    row = rows.row(0, named=True)
    note = " (the record is deleted: the golden id it last belonged to)" if row["deleted"] else ""
    out.print(f"record {escape(record_id)} -> golden id {escape(row['golden_id'])}{note}")
    return str(row["golden_id"])


def explain_golden(delta_root: Path, entity: str, golden_id: str) -> None:
    """Print the explanation of ``golden_id`` (or of the golden record a record id belongs to);
    :class:`TerminalError` when it is unknown or retired."""
    found = read_golden(delta_root, entity, golden_id)
    if found.height == 0 and golden_id.count(":") >= 2:  # a record id: system:schema.table:key
        owner = _golden_of_record(delta_root, entity, golden_id)
        if owner is not None:
            golden_id, found = owner, read_golden(delta_root, entity, owner)
    if found.height == 0:
        raise TerminalError(f"unknown golden id {golden_id!r} for entity {entity!r}")
    row = found.row(0, named=True)
    if row["golden_status"] == "retired":
        if row["merged_into"]:
            raise TerminalError(
                f"golden id {golden_id!r} was retired at version {row['version']}: merged into "
                f"{row['merged_into']!r} (goldstream explain {row['merged_into']})"
            )
        raise TerminalError(
            f"golden id {golden_id!r} was retired at version {row['version']}: no records left"
        )
    attributes = [c for c in found.columns if c not in RESERVED]
    members = list(row["members"] or [])
    out.print(
        f"[bold]{entity} {escape(golden_id)}[/bold] version {row['version']} ({row['golden_status']}), "
        f"{len(members)} member(s), updated {_text(row['golden_updated_at'])}"
    )
    if row["split_from"]:
        out.print(f"split from {escape(row['split_from'])}")
    if row["merged_from"]:
        out.print(f"merged from {escape(', '.join(row['merged_from']))}")
    out.print(_values_table(row, attributes))
    out.print(_members_table(members, read_crosswalk(delta_root, entity, golden_id)))
    links = read_links(delta_root, entity, golden_id)
    if links.height:
        out.print(_links_table(links))
    else:
        out.print("no links (a single record, or members joined by a steward override)")
    events = read_lineage(delta_root, entity, golden_id)
    if events.height:
        out.print(_lineage_table(events))


@friendly_errors
def explain_command(
    golden_id: Annotated[
        str, typer.Argument(help="The golden id to explain, or a record id (system:schema.table:key).")
    ],
    entity: Entity = "customer",
) -> None:
    """Why a golden record looks as it does: values with provenance, members, links, lineage."""
    explain_golden(settings().delta_root, entity, golden_id)


def register(root: typer.Typer) -> None:
    """Add ``goldstream match train`` and ``goldstream explain``."""
    root.add_typer(app, name="match", help="Entity matching: train the model from silver.")
    root.command("explain")(explain_command)
