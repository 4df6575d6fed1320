"""Preparing a batch of canonical records for the silver MERGE (pure polars, no Delta).

The mapping engine hands the silver writer one polars DataFrame per canonical entity. This module
checks it against the input contract, computes each change's *sequence* and folds the batch to one
row per key, so the MERGE (``sinks.delta.silver``) sees no duplicate key.

Sequence
    Changes of one key are ordered by ``(lsn, streamed, tx_id, offset)``: the Debezium LSN first;
    at equal LSN a streamed change beats a snapshot read (``op=r``); then the transaction id (null
    sorts first); the Kafka offset breaks the last ties. The four parts are encoded in one
    fixed-width string (:data:`SEQ`, 61 digits) so that string order is sequence order and every
    guard in the MERGE is one string comparison.

What the silver row of a key must equal: its changes applied one by one in sequence order
    * The row-level state (``op``, ``deleted``, lineage, Kafka position) is that of the newest change.
    * A data field keeps its value when a change does not carry it: fields named in ``unavailable``
      (Debezium's TOAST placeholder), every field of a hard delete (``op=d``: ``before`` holds only
      the key) and of a truncate. So a soft-deleted row keeps its last known values, and a change
      that revives it starts from them.
    * Hence each data field equals the value of the newest change that *carried* it, whatever the
      arrival order: a late change (older than the row) cannot touch the row-level state, but it
      still fills a field whose current value comes from an even older change, e.g. a TOAST field
      that was unknown because the update arrived before the insert. The table stores the sequence
      of the newest change that carried data (:data:`DATA_SEQ`) and, for fields that were ever
      unavailable, the sequence of the change their value comes from (``seq__<field>``, null when it
      is ``data_seq``, ``''`` when no change ever carried the field).
    * A truncate (``op=t``, no key) soft-deletes every key of its source table whose sequence is
      older. It is stored as the table's *watermark* row (key :data:`TRUNCATE_KEY`); keys of the
      batch older than the latest truncate (of the batch or remembered by the table) get a
      synthetic truncate change before folding, and keys only in the table are swept by the MERGE.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import polars as pl

from core.errors import InvalidInputError, TerminalError

UTC_US: Final = pl.Datetime("us", "UTC")

KEY_COLUMNS: Final = ("source_system", "source_table", "source_key")
#: Contract columns of the input (besides the key) with the dtype the writer works with.
INPUT_COLUMNS: Final[Mapping[str, pl.DataType]] = {
    "source_system": pl.String(),
    "source_table": pl.String(),
    "source_key": pl.String(),
    "lsn": pl.Int64(),
    "tx_id": pl.Int64(),
    "source_ts": UTC_US,
    "mapping_version": pl.String(),
    "op": pl.String(),
    "deleted": pl.Boolean(),
    "snapshot": pl.Boolean(),
    "topic": pl.String(),
    "partition": pl.Int32(),
    "offset": pl.Int64(),
    "unavailable": pl.List(pl.String()),
}
#: Columns the input may omit (filled with "nothing unavailable").
OPTIONAL_INPUT: Final = frozenset({"unavailable"})
SEQ: Final = "change_seq"
DATA_SEQ: Final = "data_seq"
APPLIED_AT: Final = "applied_at"
#: The row-level state the newest change decides (stored after the data columns, in this order).
ROW_STATE: Final[Mapping[str, pl.DataType]] = {
    "deleted": pl.Boolean(),
    "op": pl.String(),
    "snapshot": pl.Boolean(),
    "lsn": pl.Int64(),
    "tx_id": pl.Int64(),
    "source_ts": UTC_US,
    "mapping_version": pl.String(),
    "topic": pl.String(),
    "partition": pl.Int32(),
    "offset": pl.Int64(),
    SEQ: pl.String(),
}
#: Everything the table stores after the data columns (per-field ``seq__<field>`` columns follow).
STATE_COLUMNS: Final[Mapping[str, pl.DataType]] = {
    **ROW_STATE,
    DATA_SEQ: pl.String(),
    APPLIED_AT: UTC_US,
}
#: Prefix of the stored per-field provenance columns.
FIELD_SEQ_PREFIX: Final = "seq__"
#: Prefix of helper columns that exist only in the MERGE source.
HELPER_PREFIX: Final = "__gs_"
#: Names a data column may not have.
RESERVED: Final = frozenset(INPUT_COLUMNS) | frozenset(STATE_COLUMNS)
OPS: Final = ("c", "u", "d", "r", "t")
DATA_OPS: Final = ("c", "u", "r")
#: ``source_key`` of a table's truncate watermark row: the latest truncate applied to that source
#: table, so a change that arrives after it but is older is soft-deleted too. PostgreSQL text cannot
#: hold NUL, so no real key starts with it; it sorts before every real key (found by file min stats).
TRUNCATE_KEY: Final = "\x00truncate"

_ROW = f"{HELPER_PREFIX}row"
_LAST = f"{HELPER_PREFIX}last"
_DATA = f"{HELPER_PREFIX}data"


def field_seq(name: str) -> str:
    """The stored column holding the sequence data column ``name``'s value comes from."""
    return f"{FIELD_SEQ_PREFIX}{name}"


def helper_provider(i: int) -> str:
    """The MERGE-source helper: sequence of the change data column ``i`` comes from in the batch
    (null: the key's newest data change; ``''``: no change of the batch carried it)."""
    return f"{HELPER_PREFIX}p{i}"


def data_columns(columns: Sequence[str]) -> list[str]:
    """The entity's data columns among ``columns``, in order."""
    return [c for c in columns if c not in RESERVED and not c.startswith((FIELD_SEQ_PREFIX, HELPER_PREFIX))]


def check_data_names(names: Sequence[str]) -> None:
    """Raise :class:`TerminalError` for data column names the writer cannot store."""
    for name in names:
        if name.startswith((HELPER_PREFIX, FIELD_SEQ_PREFIX)) or "`" in name:
            raise TerminalError(
                f"silver: data column {name!r} is not allowed (prefix {HELPER_PREFIX!r} or "
                f"{FIELD_SEQ_PREFIX!r}, or a backtick)"
            )


def delta_dtype(name: str, dtype: pl.DataType) -> pl.DataType:
    """The dtype a data column is stored with: what Delta can hold, timestamps in UTC microseconds.

    Raises :class:`TerminalError` for naive timestamps (the contract is UTC-aware only: a naive one
    would also raise the table protocol to ``timestampNtz``) and for types Delta cannot store.
    """
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            raise TerminalError(f"silver: column {name!r} is a naive Datetime; the contract is UTC-aware")
        return UTC_US
    if isinstance(dtype, pl.Categorical | pl.Enum):
        return pl.String()
    if dtype in (pl.UInt8, pl.UInt16):
        return pl.Int32()
    if dtype in (pl.UInt32, pl.UInt64):
        return pl.Int64()
    if isinstance(dtype, pl.Object | pl.Null):
        if isinstance(dtype, pl.Null):
            return pl.String()
        raise TerminalError(f"silver: column {name!r} has dtype {dtype}, which Delta cannot store")
    if isinstance(dtype, pl.List):
        return pl.List(delta_dtype(name, _instance(dtype.inner)))
    if isinstance(dtype, pl.Struct):
        return pl.Struct(
            [pl.Field(f.name, delta_dtype(f"{name}.{f.name}", _instance(f.dtype))) for f in dtype.fields]
        )
    return dtype


def _instance(dtype: Any) -> pl.DataType:
    out: pl.DataType = dtype() if isinstance(dtype, type) else dtype
    return out


def _cast(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Expr:
    current = frame.schema[name]
    if current == dtype:
        return pl.col(name)
    if isinstance(dtype, pl.Datetime) and isinstance(current, pl.Datetime):
        if current.time_zone is None:
            raise TerminalError(f"silver: column {name!r} is a naive Datetime; the contract is UTC-aware")
        return pl.col(name).dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    return pl.col(name).cast(dtype, strict=True)


def normalize(records: pl.DataFrame, target: Mapping[str, pl.DataType] | None = None) -> pl.DataFrame:
    """``records`` with the contract columns in their exact dtypes and data columns Delta-ready.

    ``target`` maps data columns the table already has to their stored dtype; a record column of
    another dtype is cast to it. Raises :class:`TerminalError` when a contract column is missing or
    a column cannot be cast (the mapping output does not match the contract or the table).
    """
    missing = [c for c in INPUT_COLUMNS if c not in records.columns and c not in OPTIONAL_INPUT]
    if missing:
        raise TerminalError(f"silver: input lacks contract columns {missing}")
    frame = records
    if "unavailable" not in frame.columns:
        frame = frame.with_columns(pl.lit([], dtype=pl.List(pl.String())).alias("unavailable"))
    check_data_names([c for c in frame.columns if c not in RESERVED])
    names = data_columns(frame.columns)
    exprs: list[pl.Expr] = []
    try:
        for name, dtype in INPUT_COLUMNS.items():
            exprs.append(_cast(frame, name, dtype).alias(name))
        for name in names:
            want = target.get(name) if target is not None else None
            dtype = want if want is not None else delta_dtype(name, frame.schema[name])
            exprs.append(_cast(frame, name, dtype).alias(name))
        out = frame.select(exprs)
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as exc:
        raise TerminalError(f"silver: input does not fit the contract or the table schema: {exc}") from exc
    return out.with_columns(
        (pl.col("deleted").fill_null(False) | pl.col("op").is_in(["d", "t"])).alias("deleted"),
        pl.col("snapshot").fill_null(False),
        pl.col("unavailable").fill_null([]),
    )


def invalid_reason() -> pl.Expr:
    """Per row, why it breaks the contract (null when it is fine)."""
    return (
        pl.when(~pl.col("op").is_in(OPS) | pl.col("op").is_null())
        .then(pl.lit("unknown op"))
        .when(pl.col("source_system").is_null() | pl.col("source_table").is_null())
        .then(pl.lit("null source_system or source_table"))
        .when(pl.col("source_key").is_null() & (pl.col("op") != "t"))
        .then(pl.lit("null source_key on a change that is not a truncate"))
        .when(pl.col("lsn").is_null() | (pl.col("lsn") < 0))
        .then(pl.lit("null or negative lsn"))
        .when(pl.col("tx_id") < 0)
        .then(pl.lit("negative tx_id"))
        .when(pl.col("topic").is_null() | pl.col("partition").is_null() | (pl.col("partition") < 0))
        .then(pl.lit("null topic or partition"))
        .when(pl.col("offset").is_null() | (pl.col("offset") < 0))
        .then(pl.lit("null or negative offset"))
        .otherwise(pl.lit(None, dtype=pl.String()))
    )


def split_invalid(records: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split ``records`` into rows that keep the contract and the rest (with a ``reason`` column),
    e.g. to quarantine the rest before :meth:`SilverWriter.apply`. Both come back normalized."""
    tagged = normalize(records).with_columns(invalid_reason().alias("reason"))
    bad = tagged.filter(pl.col("reason").is_not_null())
    return tagged.filter(pl.col("reason").is_null()).drop("reason"), bad


def raise_if_invalid(records: pl.DataFrame) -> None:
    """Raise :class:`InvalidInputError` naming the first bad row, if any row breaks the contract."""
    bad = records.select(invalid_reason().alias("reason"), "topic", "partition", "offset").filter(
        pl.col("reason").is_not_null()
    )
    if bad.height:
        first = bad.row(0, named=True)
        raise InvalidInputError(
            first["reason"],
            detail=f"{bad.height} row(s), first at {first['topic']}[{first['partition']}]@{first['offset']}",
        )


def sequence() -> pl.Expr:
    """The change's sequence as a fixed-width string: ``lsn|streamed|tx_id+1|offset`` (61 chars)."""
    streamed = (pl.col("op") != "r") & ~pl.col("snapshot")
    return pl.concat_str(
        pl.col("lsn").cast(pl.String).str.zfill(20),
        pl.when(streamed).then(pl.lit("1")).otherwise(pl.lit("0")),
        (pl.col("tx_id") + 1).fill_null(0).cast(pl.String).str.zfill(20),
        pl.col("offset").cast(pl.String).str.zfill(20),
    )


@dataclass(frozen=True)
class Truncate:
    """A truncate of one source table: the latest of a batch, or the one the table remembers."""

    source_system: str
    source_table: str
    lineage: Mapping[str, object]
    """The truncate's values of :data:`ROW_STATE` (``deleted`` true, ``op`` t)."""

    @property
    def seq(self) -> str:
        """The truncate's sequence."""
        return str(self.lineage[SEQ])

    @property
    def table(self) -> tuple[str, str]:
        """``(source_system, source_table)``."""
        return (self.source_system, self.source_table)


@dataclass(frozen=True)
class Folded:
    """A batch folded to one row per key, ready for the MERGE."""

    rows: pl.DataFrame
    """Keys, data columns, :data:`ROW_STATE`, :data:`DATA_SEQ` (the key's newest data change in the
    batch, null if none), :data:`APPLIED_AT` and the ``__gs_p<i>`` helpers."""
    data: tuple[str, ...]
    """The data columns of ``rows`` (in order); helper ``i`` belongs to ``data[i]``."""
    partial: frozenset[int]
    """Indices of data columns some data change of the batch did not carry (they have a helper)."""
    sweeps: tuple[Truncate, ...]
    """Truncates of the batch newer than what the table remembers: their older rows are swept."""
    superseded: int
    """Changes whose row-level state a later change of the same key in the batch replaced."""
    applied_at: dt.datetime


def latest_truncates(truncates: pl.DataFrame) -> dict[tuple[str, str], Truncate]:
    """The latest truncate per source table among ``truncates`` (rows with :data:`SEQ`)."""
    latest = truncates.sort(SEQ).group_by("source_system", "source_table", maintain_order=True).last()
    out: dict[tuple[str, str], Truncate] = {}
    for row in latest.iter_rows(named=True):
        lineage = {c: row[c] for c in ROW_STATE}
        lineage.update(deleted=True, op="t", snapshot=False)
        t = Truncate(row["source_system"], row["source_table"], lineage)
        out[t.table] = t
    return out


def _with_truncates(
    records: pl.DataFrame, remembered: Mapping[tuple[str, str], Truncate]
) -> tuple[pl.DataFrame, tuple[Truncate, ...]]:
    """Truncates become watermark rows; keys older than their table's latest truncate get it too."""
    is_truncate = pl.col("op") == "t"
    in_batch: dict[tuple[str, str], Truncate] = {}
    keyed = records
    if records.select(is_truncate.any()).item():
        in_batch = latest_truncates(records.filter(is_truncate))
        keyed = records.with_columns(
            pl.when(is_truncate)
            .then(pl.lit(TRUNCATE_KEY))
            .otherwise(pl.col("source_key"))
            .alias("source_key")
        )
    effective = dict(remembered)
    for table, t in in_batch.items():
        if table not in effective or t.seq > effective[table].seq:
            effective[table] = t
    sweeps = tuple(t for table, t in in_batch.items() if effective[table] is t)
    if effective:
        latest = pl.DataFrame(
            [
                {"source_system": t.source_system, "source_table": t.source_table, **t.lineage}
                for t in effective.values()
            ],
            schema={"source_system": pl.String(), "source_table": pl.String(), **dict(ROW_STATE)},
        )
        keys = keyed.filter(pl.col("source_key") != TRUNCATE_KEY).select(KEY_COLUMNS).unique()
        synthetic = keys.join(latest, on=["source_system", "source_table"], how="inner")
        if synthetic.height:
            no_fields = pl.lit([], dtype=pl.List(pl.String())).alias("unavailable")
            keyed = pl.concat([keyed, synthetic.with_columns(no_fields)], how="diagonal")
    return keyed, sweeps


def fold(
    records: pl.DataFrame,
    *,
    applied_at: dt.datetime,
    remembered: Mapping[tuple[str, str], Truncate] | None = None,
) -> Folded:
    """Fold normalized, valid ``records`` (with :data:`SEQ`) to one row per key.

    ``remembered`` holds the latest truncate the table has already applied per source table (its
    watermark row): a change older than it is folded as if that truncate followed it, because it
    did (the change arrived late, e.g. from another Kafka partition than the truncate's).
    """
    data = tuple(data_columns(records.columns))
    own_rows = records.filter(pl.col("op") != "t").height
    keyed, sweeps = _with_truncates(records, remembered or {})

    is_data = pl.col("op").is_in(DATA_OPS)
    named = set(keyed.filter(is_data)["unavailable"].explode().drop_nulls().unique().to_list())
    partial = sorted(i for i, c in enumerate(data) if c in named)

    keyed = keyed.sort([*KEY_COLUMNS, SEQ]).with_row_index(_ROW)
    groups = keyed.group_by(KEY_COLUMNS, maintain_order=True).agg(
        pl.col(_ROW).last().alias(_LAST),
        pl.col(_ROW).filter(is_data).last().alias(_DATA),
        *[
            pl.col(_ROW)
            .filter(is_data & ~pl.col("unavailable").list.contains(data[i]))
            .last()
            .alias(f"{HELPER_PREFIX}i{i}")
            for i in partial
        ],
    )
    last, newest_data = groups[_LAST], groups[_DATA]
    seqs = keyed[SEQ]
    rows = keyed.select(*KEY_COLUMNS, *ROW_STATE).gather(last)
    data_seq = seqs.gather(newest_data)
    columns: list[pl.Series] = [keyed[c].gather(newest_data) for c in data]
    columns.append(data_seq.alias(DATA_SEQ))
    for i in partial:
        idx = groups[f"{HELPER_PREFIX}i{i}"]
        columns[i] = keyed[data[i]].gather(idx)
        provider = seqs.gather(idx)
        helper = pl.select(
            pl.when(provider.is_null())
            .then(pl.lit(""))
            .when(provider == data_seq)
            .then(None)
            .otherwise(provider)
        ).to_series()
        columns.append(helper.alias(helper_provider(i)))
    rows = rows.with_columns(*columns, pl.lit(applied_at, dtype=UTC_US).alias(APPLIED_AT))
    # a key's row-level winner is one of its own changes, or a truncate (synthetic or watermark row)
    winners = rows.select((pl.col("op") != "t").sum()).item()
    return Folded(
        rows=rows,
        data=data,
        partial=frozenset(partial),
        sweeps=sweeps,
        superseded=own_rows - int(winners),
        applied_at=applied_at,
    )
