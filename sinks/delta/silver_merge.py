"""The silver MERGE clauses (delta-rs SQL expressions) for a folded batch.

``sinks.delta.silver_rewrite`` applies the same rules with polars (the rewrite engine); a property
test holds the two to the same result.

Aliases: ``s`` is the folded batch (``silver_batch.fold``), ``t`` the silver table. Sequences are
fixed-width strings, so every "newer" test is a string comparison; ``''`` sorts before every
sequence and stands for "never".

Matched rows (same key):
    * row-level state (``op``, ``deleted``, lineage, Kafka position, ``change_seq``) is taken from
      ``s`` when ``s.change_seq > t.change_seq`` (late and duplicated changes never regress it);
    * each data field takes ``s``'s value when the change that carried it in the batch is newer than
      the one the stored value comes from (``seq__<field>``, else ``data_seq``), so the field always
      holds the value of the newest change that carried it;
    * the row is rewritten only when one of these holds (the update predicate).

Not matched (new key): inserted as folded. Not matched by source (truncates only): rows of the
truncated source table older than the truncate get its row-level state; data stays.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import polars as pl

from sinks.delta.silver_batch import (
    APPLIED_AT,
    DATA_SEQ,
    KEY_COLUMNS,
    ROW_STATE,
    SEQ,
    Folded,
    Truncate,
    field_seq,
    helper_provider,
)

_NULL_STR = "CAST(NULL AS STRING)"


def lit(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def q(name: str) -> str:
    """A quoted column name (names may be keywords, mixed case or hold spaces)."""
    return f"`{name}`"


def ts_lit(value: dt.datetime | None) -> str:
    """A UTC microsecond timestamp literal."""
    if value is None:
        return "CAST(NULL AS TIMESTAMP)"
    iso = value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"arrow_cast({lit(iso)}, 'Timestamp(Microsecond, Some(\"UTC\"))')"


def _int_lit(value: object, sql_type: str) -> str:
    return f"CAST(NULL AS {sql_type})" if value is None else f"CAST({int(str(value))} AS {sql_type})"


@dataclass(frozen=True)
class Clauses:
    """Everything ``DeltaTable.merge`` needs besides the source and the commit properties."""

    predicate: str
    update: dict[str, str]
    update_predicate: str
    insert: dict[str, str]
    sweeps: list[tuple[dict[str, str], str]]
    """``(updates, predicate)`` of each ``when_not_matched_by_source_update``."""


def missing_columns(
    folded: Folded, target: Collection[str], tracked: Collection[str]
) -> dict[str, pl.DataType]:
    """Columns the table must gain before the MERGE: new data fields, and a ``seq__<field>`` for
    fields this batch does not always carry. (They are added with ``alter.add_columns`` first:
    with ``merge_schema`` delta-rs fills a new column from the source as is, ignoring the clauses.)
    """
    out: dict[str, pl.DataType] = {c: folded.rows.schema[c] for c in folded.data if c not in target}
    for i in sorted(folded.partial):
        name = folded.data[i]
        if name not in tracked:
            out[field_seq(name)] = pl.String()
    return out


def scope(folded: Folded) -> str:
    """A target-only filter naming the partitions (and key ranges) the batch can touch.

    delta-rs prunes files with it: a batch of one source table rewrites only that table's files,
    and a batch of keys that are close together (e.g. recent serial ids) only the files holding
    them. A truncated table needs its whole partition (the sweep).
    """
    truncated = {t.table for t in folded.sweeps}
    ranges = (
        folded.rows.group_by("source_system", "source_table")
        .agg(pl.col("source_key").min().alias("lo"), pl.col("source_key").max().alias("hi"))
        .sort("source_system", "source_table")
    )
    parts: list[str] = []
    for system, table, lo, hi in ranges.iter_rows():
        clause = f"t.source_system = {lit(system)} AND t.source_table = {lit(table)}"
        if (system, table) not in truncated:
            clause += f" AND t.source_key >= {lit(lo)} AND t.source_key <= {lit(hi)}"
        parts.append(f"({clause})")
    return " OR ".join(parts)


def sweep(truncate: Truncate, applied_at: dt.datetime) -> tuple[dict[str, str], str]:
    """The ``when_not_matched_by_source_update`` of one truncate: its row-level state, as literals."""
    v = truncate.lineage
    mapping_version = v.get("mapping_version")
    updates = {
        q("deleted"): "true",
        q("op"): "'t'",
        q("snapshot"): "false",
        q("lsn"): _int_lit(v["lsn"], "BIGINT"),
        q("tx_id"): _int_lit(v.get("tx_id"), "BIGINT"),
        q("source_ts"): ts_lit(v.get("source_ts")),  # type: ignore[arg-type]
        q("mapping_version"): _NULL_STR if mapping_version is None else lit(str(mapping_version)),
        q("topic"): lit(str(v["topic"])),
        q("partition"): _int_lit(v["partition"], "INT"),
        q("offset"): _int_lit(v["offset"], "BIGINT"),
        q(SEQ): lit(truncate.seq),
        q(APPLIED_AT): ts_lit(applied_at),
    }
    predicate = (
        f"t.source_system = {lit(truncate.source_system)} AND "
        f"t.source_table = {lit(truncate.source_table)} AND t.{q(SEQ)} < {lit(truncate.seq)}"
    )
    return updates, predicate


def clauses(folded: Folded, target: Mapping[str, object], tracked: Collection[str]) -> Clauses:
    """The MERGE of ``folded`` into a table with data columns ``target`` (name -> dtype), of which
    ``tracked`` have a stored ``seq__<field>`` column. The table has :func:`missing_columns`."""
    s_seq, t_seq = f"s.{q(SEQ)}", f"t.{q(SEQ)}"
    row_new = f"{s_seq} > {t_seq}"
    s_ds = f"s.{q(DATA_SEQ)}"
    t_ds = f"COALESCE(t.{q(DATA_SEQ)}, '')"
    data_new = f"{s_ds} > {t_ds}"
    new_ds = f"CASE WHEN {data_new} THEN {s_ds} ELSE {t_ds} END"

    update = {q(c): f"CASE WHEN {row_new} THEN s.{q(c)} ELSE t.{q(c)} END" for c in ROW_STATE}
    update[q(DATA_SEQ)] = f"CASE WHEN {data_new} THEN {s_ds} ELSE t.{q(DATA_SEQ)} END"
    update[q(APPLIED_AT)] = f"s.{q(APPLIED_AT)}"
    insert = {q(c): f"s.{q(c)}" for c in (*KEY_COLUMNS, *ROW_STATE, DATA_SEQ, APPLIED_AT, *folded.data)}
    conditions = [row_new, data_new]

    for i, name in enumerate(folded.data):
        helper = i in folded.partial
        has_seq = name in tracked
        src, old = f"s.{q(name)}", f"t.{q(name)}"
        if not helper and not has_seq:
            # every change of the batch carried it and the stored value comes from data_seq
            update[q(name)] = f"CASE WHEN {data_new} THEN {src} ELSE {old} END"
            continue
        ps = f"COALESCE(s.{q(helper_provider(i))}, {s_ds})" if helper else s_ds
        pt = f"COALESCE(t.{q(field_seq(name))}, {t_ds})" if has_seq else t_ds
        take = f"{ps} > {pt}"
        conditions.append(take)
        update[q(name)] = f"CASE WHEN {take} THEN {src} ELSE {old} END"
        provenance = f"CASE WHEN {take} THEN {ps} ELSE {pt} END"
        update[q(field_seq(name))] = (
            f"CASE WHEN {provenance} = {new_ds} THEN {_NULL_STR} ELSE {provenance} END"
        )
        ps_insert = f"COALESCE(s.{q(helper_provider(i))}, {s_ds}, '')" if helper else f"COALESCE({s_ds}, '')"
        insert[q(field_seq(name))] = (
            f"CASE WHEN {ps_insert} = COALESCE({s_ds}, '') THEN {_NULL_STR} ELSE {ps_insert} END"
        )

    join = " AND ".join(f"t.{c} = s.{c}" for c in KEY_COLUMNS)
    return Clauses(
        predicate=f"{join} AND ({scope(folded)})",
        update=update,
        update_predicate=" OR ".join(f"({c})" for c in conditions),
        insert=insert,
        sweeps=[sweep(t, folded.applied_at) for t in folded.sweeps],
    )
